package main

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/virtbridge/virtbridge/internal/journal"
	"github.com/virtbridge/virtbridge/internal/testenv/journaltest"
	"github.com/virtbridge/virtbridge/internal/testenv/netnstest"
)

func TestMain(m *testing.M) {
	if os.Getenv(envFleetHost) != "" {
		os.Exit(fleetHostMain()) // a host of TestWhoAcrossHosts
	}
	os.Exit(journaltest.Main(m))
}

// journaldTime is when journald received entry e.
func journaldTime(t *testing.T, e map[string]string) time.Time {
	t.Helper()
	us, err := strconv.ParseInt(e["__REALTIME_TIMESTAMP"], 10, 64)
	if err != nil {
		t.Fatalf("entry without __REALTIME_TIMESTAMP: %v", e)
	}
	return time.UnixMicro(us)
}

// fixtureCall is one captured hook call with its tap names replaced, so
// that test packages running at the same time never share a tap name in
// the shared journal.
type fixtureCall struct {
	args  []string
	stdin string
}

func loadCall(t *testing.T, shape, call string, taps map[string]string) fixtureCall {
	t.Helper()
	base := filepath.Join("..", "..", "testdata", "hook", shape, call)
	args, err := os.ReadFile(base + ".args")
	if err != nil {
		t.Fatal(err)
	}
	xml, err := os.ReadFile(base + ".xml")
	if err != nil {
		t.Fatal(err)
	}
	s := string(xml)
	for from, to := range taps {
		s = strings.ReplaceAll(s, "'"+from+"'", "'"+to+"'")
	}
	return fixtureCall{strings.Split(strings.TrimSpace(string(args)), "\n"), s}
}

// TestJournalAndWho drives the real hook, inside a namespace, through a VM
// with two NICs started and stopped, then a second VM taking one of its tap
// names; journald must hold every field, and `virtbridge who` must name the
// right VM now and at a past moment.
func TestJournalAndWho(t *testing.T) {
	j := journaltest.Require(t)
	ns := netnstest.New(t, "vbjr")
	dir := t.TempDir()
	hook := filepath.Join(dir, "virtbridge-hook")
	if out, err := exec.Command("go", "build", "-o", hook, "../hook").CombinedOutput(); err != nil {
		t.Fatalf("building the hook: %v\n%s", err, out)
	}
	cfg := filepath.Join(dir, "virtbridge.yaml")
	if err := os.WriteFile(cfg, []byte("bridges:\n  br-a: {}\n  br-b: {}\nfirewall: {backend: none}\nsysctl: {ip_forward: leave}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	env := []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL=C", "VIRTBRIDGE_CONFIG=" + cfg,
		"VIRTBRIDGE_RUN_DIR=" + dir, "VIRTBRIDGE_STATE_DIR=" + dir, "VIRTBRIDGE_LOG_DIR=" + dir}
	runHook := func(c fixtureCall) {
		t.Helper()
		cmd := exec.Command("ip", append([]string{"netns", "exec", ns.Name, hook}, c.args...)...)
		cmd.Env, cmd.Stdin = env, strings.NewReader(c.stdin)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("hook %v: %v\n%s", c.args, err, out)
		}
	}
	b := make([]byte, 3)
	rand.Read(b)
	suffix := hex.EncodeToString(b)
	tapA, tapB := "vbj"+suffix+"a", "vbj"+suffix+"b"
	taps := map[string]string{"vnet0": tapA, "vnet1": tapB}

	// web: two NICs on br-a and br-b; libvirt creates the taps in the
	// bridges, with the guest MAC's first octet made fe.
	runHook(loadCall(t, "two-nics", "01-prepare-begin", taps))
	ns.Script(t, fmt.Sprintf(`
		ip tuntap add %[1]s mode tap
		ip link set %[1]s address fe:54:00:aa:02:01 master br-a up
		ip tuntap add %[2]s mode tap
		ip link set %[2]s address fe:54:00:aa:02:02 master br-b up`, tapA, tapB))
	runHook(loadCall(t, "two-nics", "03-started-begin", taps))
	attachedAt := time.Now()
	time.Sleep(20 * time.Millisecond)
	runHook(loadCall(t, "two-nics", "04-stopped-end", taps))
	runHook(loadCall(t, "two-nics", "05-release-end", taps))
	gapAt := time.Now()
	time.Sleep(20 * time.Millisecond)
	// db: one NIC, given the tap name web had on br-a. (libvirt deleted
	// web's tap at stop and makes db's anew; tapB is left as a stray.)
	ns.Run(t, "ip", "link", "del", tapA)
	runHook(loadCall(t, "one-nic", "01-prepare-begin", map[string]string{"vnet0": tapA}))
	ns.Script(t, fmt.Sprintf("ip tuntap add %[1]s mode tap\nip link set %[1]s address fe:54:00:aa:01:01 master br-a up", tapA))
	runHook(loadCall(t, "one-nic", "03-started-begin", map[string]string{"vnet0": tapA}))

	entries := j.WaitEntries(t, 5, "SYSLOG_IDENTIFIER=virtbridge", "VIRTBRIDGE_TAP="+tapA, "VIRTBRIDGE_TAP="+tapB)
	var got []string
	for _, e := range entries {
		got = append(got, fmt.Sprintf("%s %s %s %s %s %s %s %s %s", e["MESSAGE_ID"], e["PRIORITY"], e["VIRTBRIDGE_OP"],
			e["VIRTBRIDGE_VM"], e["VIRTBRIDGE_UUID"], e["VIRTBRIDGE_TAP"], e["VIRTBRIDGE_MAC"], e["VIRTBRIDGE_BRIDGE"], e["VIRTBRIDGE_SOURCE"]))
	}
	const webUUID, dbUUID = "5b0c0000-0000-4000-8000-000000000002", "5b0c0000-0000-4000-8000-000000000001"
	want := []string{
		journal.IDAttached + " 6 started two-nics " + webUUID + " " + tapA + " 52:54:00:aa:02:01 br-a hook",
		journal.IDAttached + " 6 started two-nics " + webUUID + " " + tapB + " 52:54:00:aa:02:02 br-b hook",
		journal.IDDetached + " 6 stopped two-nics " + webUUID + " " + tapA + " 52:54:00:aa:02:01 br-a hook",
		journal.IDDetached + " 6 stopped two-nics " + webUUID + " " + tapB + " 52:54:00:aa:02:02 br-b hook",
		journal.IDAttached + " 6 started one-nic " + dbUUID + " " + tapA + " 52:54:00:aa:01:01 br-a hook",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("journal:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	msg := entries[0]["MESSAGE"]
	if want := fmt.Sprintf(`%s attached: vm "two-nics" (uuid %s) mac 52:54:00:aa:02:01 on bridge br-a`, tapA, webUUID); msg != want {
		t.Errorf("MESSAGE = %q, want %q", msg, want)
	}
	if alias := ns.Run(t, "ip", "-d", "link", "show", tapA); !strings.Contains(alias, "alias vm:one-nic uuid:"+dbUUID) {
		t.Errorf("tap alias does not name the VM now on it:\n%s", alias)
	}

	// virtbridge who, through the CLI entry point, reading the same store.
	t.Setenv("VIRTBRIDGE_STATE_DIR", dir)
	t.Setenv("VIRTBRIDGE_LOG_DIR", dir)
	who := func(args ...string) (int, string) {
		var out, errb bytes.Buffer
		code := run(append([]string{"who"}, args...), nil, &out, &errb)
		return code, out.String() + errb.String()
	}
	if code, out := who(tapA); code != 0 || !strings.Contains(out, `vm "one-nic" (uuid `+dbUUID+`) mac 52:54:00:aa:01:01 on bridge br-a`) {
		t.Errorf("who %s now: exit %d %q", tapA, code, out)
	}
	if code, out := who(tapA, "--at", attachedAt.Format(time.RFC3339Nano)); code != 0 || !strings.Contains(out, `vm "two-nics"`) {
		t.Errorf("who %s at the time web ran: exit %d %q", tapA, code, out)
	}
	if code, out := who(tapA, "--at", gapAt.Format(time.RFC3339Nano)); code != exitFound || !strings.Contains(out, "detached") {
		t.Errorf("who %s between the two VMs: exit %d %q, want 1 and a detached answer", tapA, code, out)
	}
	// Nobody owns tapB now: who names web, from its attach until its
	// detach, the times of the journal's records.
	since, until := journaldTime(t, entries[1]), journaldTime(t, entries[3])
	if code, out := who(tapB); code != exitFound || !strings.Contains(out, fmt.Sprintf(
		`no VM owns tap %q now; its last owner was vm "two-nics" (uuid %s) mac 52:54:00:aa:02:02 on bridge br-b, attached %s, detached %s [journald]`,
		tapB, webUUID, since.Format(journal.TimeLayout), until.Format(journal.TimeLayout))) {
		t.Errorf("who %s now (nobody): exit %d %q", tapB, code, out)
	}
	var jsonOut, errb bytes.Buffer
	code := run([]string{"who", tapB, "--json"}, nil, &jsonOut, &errb)
	var none struct {
		Tap, VM, UUID, MAC, Bridge, Source string
		Since                              *time.Time
		LastOwner                          *struct {
			VM, UUID, MAC, Bridge, Source string
			Since, Until                  time.Time
		} `json:"last_owner"`
	}
	if err := json.Unmarshal(jsonOut.Bytes(), &none); err != nil || code != exitFound {
		t.Fatalf("who %s --json: exit %d, %v in %q (stderr %q)", tapB, code, err, jsonOut.String(), errb.String())
	}
	if l := none.LastOwner; none.Tap != tapB || none.VM != "" || none.Since != nil || l == nil || l.VM != "two-nics" || l.UUID != webUUID ||
		l.MAC != "52:54:00:aa:02:02" || l.Bridge != "br-b" || l.Source != "journald" || !l.Since.Equal(since) || !l.Until.Equal(until) {
		t.Errorf("who %s --json (nobody):\n%s", tapB, jsonOut.String())
	}
	if code, out := who(tapA, "--json"); code != 0 || !strings.Contains(out, `"vm": "one-nic"`) {
		t.Errorf("who --json: exit %d %q", code, out)
	}

	// virtbridge status, run in the namespace: brctl show with names.
	cli := filepath.Join(dir, "virtbridge")
	if out, err := exec.Command("go", "build", "-o", cli, ".").CombinedOutput(); err != nil {
		t.Fatalf("building the CLI: %v\n%s", err, out)
	}
	cmd := exec.Command("ip", "netns", "exec", ns.Name, cli, "status", "--config", cfg)
	cmd.Env = env
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("status: %v\n%s", err, out)
	}
	for _, want := range []string{
		"br-a: up, mtu 1500, stp off, forward delay 0s",
		fmt.Sprintf("%-15s vm %q (uuid %s) mac 52:54:00:aa:01:01", tapA, "one-nic", dbUUID),
		fmt.Sprintf("%-15s tuntap, no VM recorded", tapB),
		"uplink:    none",
	} {
		if !strings.Contains(string(out), want) {
			t.Errorf("status lacks %q:\n%s", want, out)
		}
	}
}
