package main

import (
	"bytes"
	"errors"
	"os/exec"
	"strconv"
	"strings"
	"testing"

	"github.com/virtbridge/virtbridge/internal/journal"
	"github.com/virtbridge/virtbridge/internal/testenv/journaltest"
	"github.com/virtbridge/virtbridge/internal/testenv/netnstest"
)

// TestReleaseNamespaceHost: `virtbridge apply` hands uplink0 over to br0
// (kernel path), `virtbridge release br0` gives it back: the addresses,
// the routes of every table and the rules are as before the handoff, br0
// is gone, each change printed and journaled (op release, source cli),
// with the note that the configuration still declares br0; exit 0. With a
// VM tap in it the bridge stays, named with its taps. A missing bridge:
// exit 1 naming it; no bridge argument: exit 2; --help: exit 0.
func TestReleaseNamespaceHost(t *testing.T) {
	j := journaltest.Require(t)
	bins := buildDoctor(t)
	h := newDoctorHostIn(t, bins, netnstest.New(t, "vbqr"), "bridges:\n  br0: {uplink: uplink0}\n", doctorEmptyNode)
	h.ns.Script(t, `
		ip route add default via 10.77.0.1 dev uplink0 metric 100
		ip route add default via 10.77.0.1 dev uplink0 table 100
		ip rule add pref 100 from 10.77.0.2 lookup 100
		ip rule add pref 200 iif uplink0 lookup 100
		ip neigh add 10.77.0.9 lladdr 52:54:00:aa:bb:09 nud permanent dev uplink0`)
	state := func() string {
		return h.ns.Run(t, "ip", "addr", "show", "dev", "uplink0") + h.ns.Run(t, "ip", "route", "show", "table", "all") +
			h.ns.Run(t, "ip", "rule", "show") + h.ns.Run(t, "ip", "neigh", "show", "nud", "permanent")
	}
	before := state()
	if code, _, errOut, _ := h.apply(t); code != 0 {
		t.Fatalf("apply: exit %d: %s", code, errOut)
	}
	h.checkLinks(t, "br0 bridge addrs=[10.77.0.2/24]\nuplink0 master=br0")

	code, out, errOut, pid := h.cli(t, "release", "--config", h.cfg, "br0")
	t.Logf("release:\n%s%s", out, errOut)
	if code != 0 || errOut != "" {
		t.Fatalf("release: exit %d, stderr %q; want 0 and nothing", code, errOut)
	}
	for _, want := range []string{`changed: address-moved 10.77.0.2/24: "br0" -> "uplink0"`, `changed: uplink-released uplink0: "br0" -> ""`,
		"changed: bridge-deleted br0", "note: " + h.cfg + " still declares bridge br0", "create: on_demand"} {
		if !strings.Contains(out, want) {
			t.Errorf("release printed no %q:\n%s", want, out)
		}
	}
	h.checkLinks(t, "br0 missing\nuplink0 addrs=[10.77.0.2/24]")
	requireSameText(t, before, state())
	entries := j.WaitEntries(t, 3, "_PID="+strconv.Itoa(pid), journal.FieldOp+"=release", journal.FieldSource+"=cli",
		journal.FieldMessageID+"="+journal.IDHostChange)
	var journaled []string
	for _, e := range entries {
		journaled = append(journaled, e[journal.FieldChange]+" "+e[journal.FieldObject])
	}
	if !strings.Contains(strings.Join(journaled, "\n"), "uplink-released uplink0") || !strings.Contains(strings.Join(journaled, "\n"), "bridge-deleted br0") {
		t.Errorf("journaled %q; want uplink0 released and br0 deleted among them", journaled)
	}

	if code, _, errOut, _ := h.apply(t); code != 0 {
		t.Fatalf("second apply: exit %d: %s", code, errOut)
	}
	h.ns.Script(t, "ip tuntap add vnet0 mode tap\nip link set vnet0 master br0")
	code, out, errOut, _ = h.cli(t, "release", "--config", h.cfg, "br0")
	if code != 0 || !strings.Contains(out, "bridge br0 kept: VM taps vnet0 are still in it") || strings.Contains(out, "bridge-deleted") {
		t.Errorf("release with a tap: exit %d, stdout %q, stderr %q; want 0 and br0 kept for vnet0", code, out, errOut)
	}
	h.checkLinks(t, "br0 bridge\nuplink0 addrs=[10.77.0.2/24]\nvnet0 master=br0")

	if code, out, errOut, _ := h.cli(t, "release", "--config", h.cfg, "br9"); code != 1 || out != "" || !strings.Contains(errOut, `"br9"`) {
		t.Errorf("release of a missing bridge: exit %d, stdout %q, stderr %q; want 1 naming br9", code, out, errOut)
	}
	if code, _, _, _ := h.cli(t, "release", "--config", h.cfg); code != 2 {
		t.Errorf("release without bridge: exit %d, want 2", code)
	}
	if code, _, errOut, _ := h.cli(t, "release", "--help"); code != 0 || !strings.Contains(errOut, "usage: virtbridge release") {
		t.Errorf("release --help: exit %d, %q", code, errOut)
	}
}

func requireSameText(t *testing.T, before, after string) {
	t.Helper()
	if before != after {
		t.Errorf("not as before the handoff:\nbefore:\n%s\nafter:\n%s", before, after)
	}
}

// cli runs `virtbridge ARGS` inside the namespace and returns its exit
// status, stdout, stderr and pid.
func (h *doctorHost) cli(t *testing.T, args ...string) (int, string, string, int) {
	t.Helper()
	cmd := exec.Command("ip", append([]string{"netns", "exec", h.ns.Name, h.bins.cli}, args...)...)
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL=C",
		"VIRTBRIDGE_RUN_DIR=" + h.dir, "VIRTBRIDGE_STATE_DIR=" + h.dir, "VIRTBRIDGE_LOG_DIR=" + h.dir}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatal(err)
	}
	return cmd.ProcessState.ExitCode(), out.String(), errb.String(), cmd.Process.Pid
}
