package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/virtbridge/virtbridge/internal/doctor"
	"github.com/virtbridge/virtbridge/internal/store"
	"github.com/virtbridge/virtbridge/internal/testenv/netnstest"
)

// saysFix reports whether a finding's advice is to run `virtbridge doctor
// --fix` (alone, or after a step of the operator's).
func saysFix(f doctor.Finding) bool {
	return f.Status != doctor.OK && strings.Contains(f.Fix, "virtbridge doctor --fix")
}

// fixCase breaks a namespace host one way. want are the checks that must
// advise `virtbridge doctor --fix` on the broken host. After a bare --fix
// no finding that said --fix fixes it (fixable) may remain; then, when the
// advice asks for a step of the operator's first (follow), the step is
// taken and --fix run again; after that no finding may advise --fix.
type fixCase struct {
	name   string
	cfg    string
	node   string
	setup  string                        // commands in the namespace
	store  []store.Entry                 // the mapping store, if any
	raw    string                        // ports.json as is, instead of store
	want   []string                      // checks advising --fix before
	follow func(*testing.T, *doctorHost) // the operator's step the advice asks for
	after  func(*testing.T, doctorRun)   // more to check after --fix
}

// TestDoctorFixAdviceIsTrue: every finding that says "run `virtbridge
// doctor --fix`" is gone after --fix (issue 14 #3). Each case breaks a
// namespace host the how-to's way, checks that the doctor advises --fix
// for the expected checks, runs --fix and the doctor again, and requires
// that no finding advising --fix remains. Every check that can advise
// --fix in internal/doctor has a case: bridge-exists, bridge-up,
// bridge-stp, uplink-enslaved, host-addresses, mtu, sysctl, forward,
// forward-path, docker, firewall-rules, vm-tap, port, stale-mapping, store.
func TestDoctorFixAdviceIsTrue(t *testing.T) {
	bins := buildDoctor(t)
	web1 := doctorDomainNode("web1", "52:54:00:12:00:01", "br-a")
	since := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, tc := range []fixCase{
		{name: "the how-to's broken host", cfg: doctorBrA,
			want: []string{"bridge-exists", "sysctl", "forward", "forward-path", "firewall-rules"}},
		{name: "uplink not enslaved", cfg: doctorBrA, setup: "ip link add br-a type bridge\nip link set br-a up",
			want: []string{"uplink-enslaved"}},
		{name: "address left on the enslaved uplink", cfg: doctorBrA,
			setup: "ip link add br-a type bridge\nip link set br-a up\nip link set uplink0 master br-a",
			want:  []string{"host-addresses"}},
		{name: "address left, move_addresses false", cfg: "bridges:\n  br-a: {uplink: uplink0, move_addresses: false}\n",
			setup: "ip link add br-a type bridge\nip link set br-a up\nip link set uplink0 master br-a",
			want:  []string{"host-addresses"},
			follow: func(t *testing.T, h *doctorHost) {
				h.write(t, "virtbridge.yaml", "bridges:\n  br-a: {uplink: uplink0, move_addresses: true}\n")
			}},
		{name: "bridge down", cfg: doctorBrA, setup: "ip link add br-a type bridge\nip link set uplink0 master br-a",
			want: []string{"bridge-up"}},
		{name: "stp with the kernel's delay", cfg: doctorBrA,
			setup: "ip link add br-a type bridge stp_state 1 forward_delay 1500\nip link set br-a up\nip link set uplink0 master br-a",
			want:  []string{"bridge-stp"}},
		{name: "mtu other than configured", cfg: "bridges:\n  br-a: {uplink: uplink0, mtu: 1400}\n",
			setup: "ip link add br-a type bridge\nip link set br-a up\nip link set uplink0 master br-a",
			want:  []string{"mtu"}},
		{name: "bridge-nf-call other than configured", cfg: "bridges:\n  br-a: {uplink: uplink0}\nsysctl: {ip_forward: 1, bridge_nf_call_iptables: 0}\n",
			want: []string{"sysctl"}},
		{name: "docker", cfg: doctorBrA, setup: dockerScript("iptables") + dockerScript("ip6tables"),
			want: []string{"docker", "forward", "forward-path", "firewall-rules"}},
		{name: "a running VM's tap out of its missing bridge", cfg: doctorBrA, node: web1,
			setup: "ip tuntap add dev testnet0 mode tap\nip link set testnet0 address fe:54:00:12:00:01",
			want:  []string{"vm-tap", "bridge-exists"}},
		{name: "a running VM's tap not recorded", cfg: doctorBrA, node: web1,
			setup: "ip link add br-a type bridge\nip link set br-a up\nip link set uplink0 master br-a\n" +
				"ip tuntap add dev testnet0 mode tap\nip link set testnet0 address fe:54:00:12:00:01 master br-a",
			want: []string{"port"}},
		{name: "a tap recorded for the wrong VM", cfg: doctorBrA, node: web1,
			setup: "ip link add br-a type bridge\nip link set br-a up\nip link set uplink0 master br-a\n" +
				"ip tuntap add dev testnet0 mode tap\nip link set testnet0 address fe:54:00:12:00:01 master br-a",
			store: []store.Entry{{UUID: "6695eb01-f6a4-8304-79aa-97f2502e1099", VM: "old", MAC: "52:54:00:12:00:99", Tap: "testnet0", Bridge: "br-a", Since: since}},
			want:  []string{"port"}},
		{name: "a tap recorded for a VM that is gone", cfg: doctorBrA,
			setup: "ip link add br-a type bridge\nip link set br-a up\nip link set uplink0 master br-a\n" +
				"ip tuntap add dev vnet9 mode tap\nip link set vnet9 master br-a",
			store: []store.Entry{{UUID: "6695eb01-f6a4-8304-79aa-97f2502e1099", VM: "old", MAC: "52:54:00:12:00:99", Tap: "vnet9", Bridge: "br-a", Since: since}},
			want:  []string{"port"}},
		{name: "a mapping of a tap that is gone", cfg: doctorBrA,
			store: []store.Entry{{UUID: "6695eb01-f6a4-8304-79aa-97f2502e1099", VM: "old", MAC: "52:54:00:12:00:99", Tap: "vnet7", Bridge: "br-a", Since: since}},
			want:  []string{"stale-mapping"}},
		{name: "a VM's tap name on a tap of another MAC", cfg: doctorBrA, node: web1,
			setup: "ip link add br-a type bridge\nip link set br-a up\nip link set uplink0 master br-a\n" +
				"ip tuntap add dev testnet0 mode tap\nip link set testnet0 address 02:00:00:00:00:01 master br-a",
			want: []string{}},
		{name: "a corrupt mapping store", cfg: doctorBrA, raw: "{not json\n",
			want: []string{"store"}},
		{name: "uplink missing", cfg: "bridges:\n  br-a: {uplink: eth9}\nsysctl: {ip_forward: 1}\n",
			want: []string{"bridge-exists", "sysctl", "firewall-rules", "forward"},
			follow: func(t *testing.T, h *doctorHost) {
				h.ns.Script(t, "ip link add eth9 type veth peer name eth9p\nip link set eth9 up")
			}},
		{name: "a veth holds the bridge's name", cfg: doctorBrA, setup: "ip link add br-a type veth peer name br-a-peer",
			want:   []string{"sysctl", "forward", "firewall-rules"},
			follow: func(t *testing.T, h *doctorHost) { h.ns.Script(t, "ip link del br-a") }},
		{name: "the uplink enslaved to another bridge", cfg: doctorBrA,
			setup: "ip link add br-x type bridge\nip link set uplink0 master br-x",
			want:  []string{"bridge-exists", "sysctl", "forward", "firewall-rules"},
			follow: func(t *testing.T, h *doctorHost) {
				h.ns.Script(t, "ip link add uplink1 type veth peer name upstream1\nip link set uplink1 up")
				h.write(t, "virtbridge.yaml", "bridges:\n  br-a: {uplink: uplink1}\nsysctl: {ip_forward: 1}\n")
			}},
	} {
		t.Run(tc.name, func(t *testing.T) { fixAdvice(t, bins, tc) })
	}
}

func fixAdvice(t *testing.T, bins doctorBins, tc fixCase) {
	node := tc.node
	if node == "" {
		node = doctorEmptyNode
	}
	h := newDoctorHost(t, bins, tc.cfg, node)
	h.ns.Script(t, tc.setup)
	switch {
	case tc.raw != "":
		h.write(t, "ports.json", tc.raw)
	case tc.store != nil:
		h.write(t, "ports.json", string(store.Marshal(tc.store)))
	}
	before := h.json(t)
	var advised []string
	for _, f := range before.doc.Findings {
		if saysFix(f) {
			advised = append(advised, f.Check)
		}
	}
	for _, c := range tc.want {
		if !slices.Contains(advised, c) {
			t.Errorf("the broken host has no %s finding advising `virtbridge doctor --fix`:\n%s", c, before)
		}
	}
	fixed := h.json(t, "--fix")
	again := h.json(t)
	for _, r := range []struct {
		what string
		run  doctorRun
	}{{"--fix", fixed}, {"the doctor after --fix", again}} {
		for _, f := range r.run.doc.Findings {
			if f.Status != doctor.OK && f.Fixable {
				t.Errorf("%s: a finding said --fix fixes it, yet it remains: %s %s %s: %s (fix: %s)", r.what, f.Status, f.Check, f.Object, f.Message, f.Fix)
			}
		}
	}
	if tc.follow != nil {
		tc.follow(t, h)
		fixed = h.json(t, "--fix")
		again = h.json(t)
	}
	for _, r := range []struct {
		what string
		run  doctorRun
	}{{"--fix", fixed}, {"the doctor after --fix", again}} {
		for _, f := range r.run.doc.Findings {
			if saysFix(f) {
				t.Errorf("%s still advises --fix: %s %s %s: %s (fix: %s)", r.what, f.Status, f.Check, f.Object, f.Message, f.Fix)
			}
		}
	}
	if t.Failed() {
		t.Logf("before:\n%s\nafter --fix:\n%s", before, fixed)
	}
	if tc.after != nil {
		tc.after(t, again)
	}
}

func dockerScript(ipt string) string {
	return strings.ReplaceAll(`
		IPT -F FORWARD
		IPT -N DOCKER
		IPT -N DOCKER-USER
		IPT -A DOCKER-USER -j RETURN
		IPT -A FORWARD -j DOCKER-USER
		IPT -A FORWARD -o docker0 -j DOCKER
		IPT -P FORWARD DROP
`, "IPT", ipt)
}

// TestDoctorFixCannot: a --fix that can do nothing (the uplink does not
// exist yet) does not say "Fixed (0 changes)": it says it fixed nothing,
// what it could not fix, why and what to do first, naming the config it
// was given, and exits 2 (issue 14 #7).
func TestDoctorFixCannot(t *testing.T) {
	bins := buildDoctor(t)
	h := newDoctorHost(t, bins, "bridges:\n  br-a: {uplink: eth9}\nsysctl: {ip_forward: 1}\n", doctorEmptyNode)
	code, text := h.run(t, "--fix")
	head, _, _ := strings.Cut(text, "\nInstall\n")
	// The sysctls and the firewall do not wait for the bridge (they are
	// the host's, as at virtbridged's start): they are fixed; the bridge
	// is not, and that is said, not hidden in a count.
	_, notFixed, _ := strings.Cut(head, "\nNot fixed")
	want := " (1):\n" +
		"  bridge br-a: uplink eth9 of bridge br-a does not exist in this network namespace\n" +
		"        fix: make eth9 exist, or correct the uplink of bridge br-a at " + h.cfg + ":2 (see `ip link`), then run `virtbridge doctor --fix` again\n"
	if code != 2 || !strings.HasPrefix(head, "Fixed (") || !strings.Contains(head, "sysctl-changed net.ipv4.ip_forward") || notFixed != want {
		t.Errorf("exit %d, want 2; --fix said:\n%s\nwant the sysctl fixed and Not fixed%s", code, head, want)
	}
	for _, s := range []string{
		"  warn br-a: does not exist yet\n",
		"fix: first make eth9 exist, or correct the uplink of bridge br-a at " + h.cfg + ":2 (see `ip link`), then run `virtbridge doctor --fix`\n",
	} {
		if !strings.Contains(text, s) {
			t.Errorf("the report after --fix lacks %q:\n%s", s, text)
		}
	}
	r := h.json(t, "--fix")
	if r.code != 2 || r.doc.Fix == nil || len(r.doc.Fix.NotFixed) != 1 || r.doc.Fix.NotFixed[0].Object != "bridge br-a" {
		t.Errorf("--fix --json: exit %d, fix %+v; want exit 2 and br-a not fixed", r.code, r.doc.Fix)
	}

	// Once the uplink is there, --fix fixes it all and says so.
	h.ns.Script(t, "ip link add eth9 type veth peer name eth9p\nip link set eth9 up")
	code, text = h.run(t, "--fix")
	if code != 0 || !strings.HasPrefix(text, "Fixed (") || strings.Contains(text, "Not fixed") {
		t.Errorf("exit %d after the uplink appeared:\n%s", code, text)
	}
	code, text = h.run(t, "--fix")
	if code != 0 || !strings.HasPrefix(text, "No change needed: what virtbridge fixes was already right.\n") {
		t.Errorf("exit %d on a fixed host:\n%s", code, text)
	}
}

// TestDoctorFixRecycledNamespace is issue 14 #2 as an operator saw it:
// `virtbridge doctor --fix` in a namespace that got the inode number of a
// deleted one (whose --fix left a firewall state in the same run
// directory), at the same nf_tables generation, left FORWARD rejecting
// bridged frames while the state vouched for virtbridge's rules. After
// --fix, FORWARD must accept them.
func TestDoctorFixRecycledNamespace(t *testing.T) {
	bins := buildDoctor(t)
	runDir := t.TempDir() // the machine's /run/virtbridge, shared by the namespaces
	var h *doctorHost
	var gen uint32
	deadline := time.Now().Add(3 * time.Minute)
	for round := 1; ; round++ {
		first := newDoctorHost(t, bins, doctorBrA, doctorEmptyNode)
		first.runDir = runDir
		first.json(t, "--fix").requireClean(t, "the first namespace after --fix")
		gen = recordedGeneration(t, filepath.Join(runDir, "firewall.state"))
		ino := first.ns.Inode(t)
		first.ns.Delete(t)
		ns, tries, ok := netnstest.Recycle(t, "vbdr", ino, 20*time.Second)
		if ok {
			t.Logf("round %d: namespace inode %d handed out again to %s after %d tries", round, ino, ns.Name, tries)
			h = newDoctorHostIn(t, bins, ns, doctorBrA, doctorEmptyNode)
			h.runDir = runDir
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("round %d: namespace inode %d not handed out again in %d tries", round, ino, tries)
		}
		t.Logf("round %d: inode %d taken by another namespace; starting over", round, ino)
	}
	h.json(t).expect(t, 2, "forward", "iptables-nft FORWARD", doctor.Fail, "REJECT")
	h.ns.PadGeneration(t, gen)
	t.Logf("nf_tables generation brought to %d, as recorded", gen)
	fixed := h.json(t, "--fix")
	fixed.expect(t, 0, "forward", "iptables-nft FORWARD", doctor.OK, "virtbridge's jump")
	fixed.expect(t, 0, "forward", "ip6tables-nft FORWARD", doctor.OK, "virtbridge's jump")
	fixed.requireClean(t, "the recycled namespace after --fix")
}

// recordedGeneration reads the nf_tables generation from a firewall state
// file.
func recordedGeneration(t *testing.T, path string) uint32 {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var st struct {
		Gen   uint32 `json:"gen"`
		GenOK bool   `json:"gen_ok"`
	}
	if err := json.Unmarshal(b, &st); err != nil || !st.GenOK {
		t.Fatalf("firewall state %s: %v: %s", path, err, b)
	}
	return st.Gen
}
