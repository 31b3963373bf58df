package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/virtbridge/virtbridge/internal/doctor"
	"github.com/virtbridge/virtbridge/internal/store"
	"github.com/virtbridge/virtbridge/internal/testenv/netnstest"
)

// doctorBins are the built virtbridge and virtbridge-hook: the doctor
// runs as its own process inside a test namespace, as an operator runs it.
type doctorBins struct{ cli, hook string }

func buildDoctor(t *testing.T) doctorBins {
	t.Helper()
	netnstest.RequireRoot(t)
	for _, tool := range []string{"go", "iptables", "ip6tables", "iptables-nft", "sysctl"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("skipped: needs %s (Debian: golang, iptables, procps)", tool)
		}
	}
	dir := t.TempDir()
	b := doctorBins{cli: filepath.Join(dir, "virtbridge"), hook: filepath.Join(dir, "virtbridge-hook")}
	for out, pkg := range map[string]string{b.cli: ".", b.hook: "../hook"} {
		if msg, err := exec.Command("go", "build", "-o", out, pkg).CombinedOutput(); err != nil {
			t.Fatalf("building %s: %v\n%s", pkg, err, msg)
		}
	}
	return b
}

// doctorHost is a namespace playing a hypervisor, with virtbridge's hook
// installed in a hooks directory of its own, its own run/state/log
// directories, and libvirt's test driver serving the domains of a node
// file (libvirt's API, without a daemon).
type doctorHost struct {
	bins doctorBins
	ns   *netnstest.NS
	dir  string
	cfg  string
	uri  string
	// runDir is the doctor's VIRTBRIDGE_RUN_DIR (the firewall state and
	// the host lock); "" is dir.
	runDir string
}

// doctorEmptyNode is a libvirt test driver node without domains.
const doctorEmptyNode = "<node/>\n"

// newDoctorHost starts from the broken host of the classic how-to: the
// uplink holds the host's address, ip_forward is 0, bridged frames pass
// iptables, FORWARD drops by policy and rejects with a trailing rule, and
// ip6tables FORWARD drops by policy.
func newDoctorHost(t *testing.T, bins doctorBins, cfg, node string) *doctorHost {
	t.Helper()
	return newDoctorHostIn(t, bins, netnstest.New(t, "vbdr"), cfg, node)
}

// newDoctorHostIn is newDoctorHost in the namespace ns.
func newDoctorHostIn(t *testing.T, bins doctorBins, ns *netnstest.NS, cfg, node string) *doctorHost {
	t.Helper()
	h := &doctorHost{bins: bins, ns: ns, dir: t.TempDir()}
	h.ns.Script(t, `
		ip link add uplink0 type veth peer name upstream0
		ip link set uplink0 up
		ip link set upstream0 up
		ip addr add 10.77.0.2/24 dev uplink0
		sysctl -qw net.ipv4.ip_forward=0
		sysctl -qw net.bridge.bridge-nf-call-iptables=1
		sysctl -qw net.bridge.bridge-nf-call-ip6tables=1
		iptables -P FORWARD DROP
		iptables -A FORWARD -j REJECT --reject-with icmp-host-prohibited
		ip6tables -P FORWARD DROP`)
	hooks := filepath.Join(h.dir, "hooks")
	if err := os.MkdirAll(hooks, 0o755); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(bins.hook)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(hooks, "qemu"), b, 0o755); err != nil {
		t.Fatal(err)
	}
	h.cfg = filepath.Join(h.dir, "virtbridge.yaml")
	h.write(t, "virtbridge.yaml", cfg)
	h.write(t, "node.xml", node)
	h.uri = "test://" + filepath.Join(h.dir, "node.xml")
	return h
}

func (h *doctorHost) write(t *testing.T, name, content string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(h.dir, name), []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// run runs `virtbridge doctor ARGS` inside the namespace and returns its
// exit status and output.
func (h *doctorHost) run(t *testing.T, args ...string) (int, string) {
	t.Helper()
	argv := append([]string{"netns", "exec", h.ns.Name, h.bins.cli, "doctor",
		"--config", h.cfg, "--hooks-dir", filepath.Join(h.dir, "hooks"), "--uri", h.uri}, args...)
	cmd := exec.Command("ip", argv...)
	runDir := h.runDir
	if runDir == "" {
		runDir = h.dir
	}
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL=C",
		"VIRTBRIDGE_RUN_DIR=" + runDir, "VIRTBRIDGE_STATE_DIR=" + h.dir, "VIRTBRIDGE_LOG_DIR=" + h.dir}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatal(err)
	}
	if errb.Len() > 0 {
		t.Logf("doctor stderr: %s", errb.String())
	}
	return cmd.ProcessState.ExitCode(), out.String()
}

// doctorRun is one --json run.
type doctorRun struct {
	code int
	doc  doctor.JSON
}

func (h *doctorHost) json(t *testing.T, args ...string) doctorRun {
	t.Helper()
	code, out := h.run(t, append([]string{"--json"}, args...)...)
	var r doctorRun
	r.code = code
	if err := json.Unmarshal([]byte(out), &r.doc); err != nil {
		t.Fatalf("doctor --json printed no JSON (%v):\n%s", err, out)
	}
	return r
}

// finding returns the finding of check about object, failing the test
// when there is none.
func (r doctorRun) finding(t *testing.T, check, object string) doctor.Finding {
	t.Helper()
	for _, f := range r.doc.Findings {
		if f.Check == check && f.Object == object {
			return f
		}
	}
	t.Fatalf("no %s finding about %s:\n%s", check, object, r)
	return doctor.Finding{}
}

func (r doctorRun) expect(t *testing.T, code int, check, object string, st doctor.Status, says ...string) doctor.Finding {
	t.Helper()
	if r.code != code {
		t.Errorf("exit status %d, want %d:\n%s", r.code, code, r)
	}
	f := r.finding(t, check, object)
	if f.Status != st {
		t.Errorf("%s %s: %s, want %s: %s", check, object, f.Status, st, f.Message)
	}
	all := f.Message + " | " + f.Why + " | " + f.Fix
	for _, s := range says {
		if !strings.Contains(all, s) {
			t.Errorf("%s %s: %q does not say %q", check, object, all, s)
		}
	}
	return f
}

func (r doctorRun) String() string {
	var b strings.Builder
	for _, f := range r.doc.Findings {
		b.WriteString("  " + string(f.Status) + " " + f.Check + " " + f.Object + ": " + f.Message + "\n")
	}
	if r.doc.Fix != nil {
		b.WriteString("  fix errors: " + strings.Join(r.doc.Fix.Errors, "; ") + "\n")
	}
	return b.String()
}

// problems lists the findings that are not ok.
func (r doctorRun) problems() []doctor.Finding {
	var out []doctor.Finding
	for _, f := range r.doc.Findings {
		if f.Status != doctor.OK {
			out = append(out, f)
		}
	}
	return out
}

// requireClean fails unless every finding is ok and the exit status 0.
func (r doctorRun) requireClean(t *testing.T, what string) {
	t.Helper()
	if r.code != 0 || len(r.problems()) > 0 {
		t.Fatalf("%s: exit %d, want a clean report:\n%s", what, r.code, r)
	}
}

const doctorBrA = "bridges:\n  br-a: {uplink: uplink0}\nsysctl: {ip_forward: 1}\n"

// TestDoctorNetns provokes each host-side problem in a namespace of its
// own, checks the doctor's finding and exit status, and, where virtbridge
// owns the fix, that --fix makes the check pass.
func TestDoctorNetns(t *testing.T) {
	bins := buildDoctor(t)
	for _, tc := range []struct {
		name string
		run  func(*testing.T, doctorBins)
	}{
		{"the how-to's broken host, fixed", doctorHowTo},
		{"uplink not enslaved", doctorUplinkNotEnslaved},
		{"addresses left on the enslaved uplink", doctorAddressesLeft},
		{"bridge down", doctorBridgeDown},
		{"stp with the kernel's 15 s forward delay", doctorSTP},
		{"bridge mtu above the uplink's", doctorMTU},
		{"a veth holds the bridge's name", doctorNotABridge},
		{"uplink missing and config invalid", doctorUplinkMissing},
		{"bridge-nf-call off", doctorNFCallOff},
		{"docker", doctorDocker},
		{"forward path through iptables-nft and native tables", doctorForwardPath},
		{"legacy rules virtbridge does not keep", doctorLegacy},
		{"a stale tap in a managed bridge", doctorStaleTap},
		{"a running VM's tap out of its bridge", doctorVMTap},
		{"a guest MAC in the fe: range, over the libvirt API", doctorFeMAC},
	} {
		t.Run(tc.name, func(t *testing.T) { tc.run(t, bins) })
	}
}

// doctorHowTo: the how-to's broken host fails on FORWARD in both families;
// --fix makes it all ok, a second --fix changes nothing, and the human
// output is grouped by section without colours on a pipe.
func doctorHowTo(t *testing.T, bins doctorBins) {
	h := newDoctorHost(t, bins, doctorBrA, doctorEmptyNode)
	r := h.json(t)
	r.expect(t, 2, "forward", "iptables-nft FORWARD", doctor.Fail, "rule 1 (-A FORWARD -j REJECT --reject-with icmp-host-prohibited)", "no DHCP lease")
	r.expect(t, 2, "forward", "ip6tables-nft FORWARD", doctor.Fail, "policy DROP", "neighbour discovery")
	r.expect(t, 2, "bridge-exists", "br-a", doctor.Warn, "does not exist yet")
	r.expect(t, 2, "sysctl", "net.ipv4.ip_forward", doctor.Warn, "0; the config says 1")
	r.expect(t, 2, "firewall-rules", "VIRTBRIDGE-FWD", doctor.Warn, "FORWARD has no jump")
	r.expect(t, 2, "hook", filepath.Join(h.dir, "hooks", "qemu"), doctor.OK, "virtbridge's hook")
	r.expect(t, 2, "daemon", "libvirtd", doctor.OK, "neither libvirtd nor virtqemud")

	fixed := h.json(t, "--fix")
	if fixed.doc.Fix == nil || len(fixed.doc.Fix.Changes) == 0 || len(fixed.doc.Fix.Errors) > 0 {
		t.Fatalf("--fix reported %+v", fixed.doc.Fix)
	}
	fixed.requireClean(t, "after --fix")
	fixed.expect(t, 0, "host-addresses", "br-a", doctor.OK, "10.77.0.2/24")
	again := h.json(t, "--fix")
	if len(again.doc.Fix.Changes) != 0 {
		t.Errorf("a second --fix changed %v", again.doc.Fix.Changes)
	}

	code, text := h.run(t)
	for _, s := range []string{"Install\n", "Config\n", "Bridges\n", "Forwarding\n", "VMs\n", "Taps\n", "\nall ok: 0 failure(s), 0 warning(s)"} {
		if !strings.Contains(text, s) {
			t.Errorf("human output lacks %q:\n%s", s, text)
		}
	}
	if code != 0 || strings.Contains(text, "\x1b[") {
		t.Errorf("exit %d, colours on a pipe:\n%q", code, text)
	}
}

// doctorUplinkNotEnslaved: a bridge without its uplink has no way out.
func doctorUplinkNotEnslaved(t *testing.T, bins doctorBins) {
	h := newDoctorHost(t, bins, doctorBrA, doctorEmptyNode)
	h.ns.Script(t, "ip link add br-a type bridge\nip link set br-a up")
	h.json(t).expect(t, 2, "uplink-enslaved", "uplink0", doctor.Fail, "not enslaved to br-a", "no way out", "doctor --fix")
	h.json(t, "--fix").expect(t, 0, "uplink-enslaved", "uplink0", doctor.OK)
}

// doctorAddressesLeft: an enslaved uplink that kept the host address: --fix
// moves it to the bridge.
func doctorAddressesLeft(t *testing.T, bins doctorBins) {
	h := newDoctorHost(t, bins, doctorBrA, doctorEmptyNode)
	h.ns.Script(t, "ip link add br-a type bridge\nip link set br-a up\nip link set uplink0 master br-a")
	h.json(t).expect(t, 2, "host-addresses", "uplink0", doctor.Fail, "10.77.0.2/24", "doctor --fix")
	h.json(t, "--fix").expect(t, 0, "host-addresses", "br-a", doctor.OK, "on the bridge: 10.77.0.2/24")
}

// doctorBridgeDown: a managed bridge set down.
func doctorBridgeDown(t *testing.T, bins doctorBins) {
	h := newDoctorHost(t, bins, doctorBrA, doctorEmptyNode)
	h.json(t, "--fix").requireClean(t, "fixed")
	h.ns.Script(t, "ip link set br-a down")
	h.json(t).expect(t, 2, "bridge-up", "br-a", doctor.Fail, "down", "forwards nothing")
	h.json(t, "--fix").expect(t, 0, "bridge-up", "br-a", doctor.OK)
}

// doctorSTP: STP with the kernel default delay silences new taps; fixable
// when the config says otherwise, a warning left alone when it asks for it.
func doctorSTP(t *testing.T, bins doctorBins) {
	h := newDoctorHost(t, bins, doctorBrA, doctorEmptyNode)
	h.json(t, "--fix").requireClean(t, "fixed")
	h.ns.Script(t, "ip link set br-a type bridge stp_state 1 forward_delay 1500")
	h.json(t).expect(t, 1, "bridge-stp", "br-a", doctor.Warn, "stp on, forward delay 15 s", "silent for ~30 s")
	h.json(t, "--fix").expect(t, 0, "bridge-stp", "br-a", doctor.OK, "stp off")
	// Configured that way, it stays a warning virtbridge leaves alone.
	h.write(t, "virtbridge.yaml", "bridges:\n  br-a: {uplink: uplink0, stp: true, forward_delay: 15}\n")
	h.json(t, "--fix")
	f := h.json(t).expect(t, 1, "bridge-stp", "br-a", doctor.Warn, "(as configured)", "stp: false")
	if f.Fixable {
		t.Error("a configured delay is not virtbridge's to change")
	}
}

// doctorMTU: a bridge MTU above the uplink's drops big frames; the config's
// MTU is re-applied by --fix.
func doctorMTU(t *testing.T, bins doctorBins) {
	h := newDoctorHost(t, bins, doctorBrA, doctorEmptyNode)
	h.json(t, "--fix").requireClean(t, "fixed")
	h.ns.Script(t, "ip link set br-a mtu 9000")
	h.json(t).expect(t, 2, "mtu", "br-a", doctor.Fail, "mtu 9000, larger than uplink uplink0's 1500", "mtu: 1500")
	h.write(t, "virtbridge.yaml", "bridges:\n  br-a: {uplink: uplink0, mtu: 1500}\n")
	h.json(t).expect(t, 1, "mtu", "br-a", doctor.Warn, "the config says 1500")
	h.json(t, "--fix").expect(t, 0, "mtu", "br-a", doctor.OK)
}

// doctorNotABridge: a link of another kind holds the bridge's name: --fix
// refuses and says why.
func doctorNotABridge(t *testing.T, bins doctorBins) {
	h := newDoctorHost(t, bins, doctorBrA, doctorEmptyNode)
	h.ns.Script(t, "ip link add br-a type veth peer name br-a-peer")
	h.json(t).expect(t, 2, "bridge-kind", "br-a", doctor.Fail, "is a veth link, not a bridge", "ip link del br-a")
	r := h.json(t, "--fix")
	r.expect(t, 2, "bridge-kind", "br-a", doctor.Fail)
	if len(r.doc.Fix.Errors) == 0 || !strings.Contains(r.doc.Fix.Errors[0], "not a bridge") {
		t.Errorf("--fix did not say why it could not fix br-a: %v", r.doc.Fix.Errors)
	}
}

// doctorUplinkMissing: a missing uplink names the config line; an invalid
// config fails at file:line and --fix does nothing.
func doctorUplinkMissing(t *testing.T, bins doctorBins) {
	h := newDoctorHost(t, bins, "bridges:\n  br-a: {uplink: eth9}\n", doctorEmptyNode)
	h.json(t).expect(t, 2, "uplink-exists", "eth9", doctor.Fail, "no such link", h.cfg+":2")
	h.write(t, "virtbridge.yaml", "bridges:\n  br-a: {uplink: uplink0, stp: maybe}\n")
	r := h.json(t, "--fix")
	r.expect(t, 2, "config", h.cfg+":2", doctor.Fail, "stp must be true or false", "check-config")
	if r.doc.Fix != nil {
		t.Errorf("--fix acted on an invalid config: %+v", r.doc.Fix)
	}
}

// doctorNFCallOff: with bridge-nf-call off, FORWARD is not judged.
func doctorNFCallOff(t *testing.T, bins doctorBins) {
	h := newDoctorHost(t, bins, doctorBrA, doctorEmptyNode)
	h.ns.Script(t, "sysctl -qw net.bridge.bridge-nf-call-iptables=0\nsysctl -qw net.bridge.bridge-nf-call-ip6tables=0")
	r := h.json(t)
	r.expect(t, 1, "bridge-nf-call", "net.bridge.bridge-nf-call-iptables", doctor.OK, "bypass iptables")
	for _, f := range r.doc.Findings {
		if f.Check == "forward" {
			t.Errorf("FORWARD judged though bridged frames bypass it: %+v", f)
		}
	}
}

// doctorDocker: Docker's chains and DROP policies in both families; --fix
// jumps from DOCKER-USER too.
func doctorDocker(t *testing.T, bins doctorBins) {
	h := newDoctorHost(t, bins, doctorBrA, doctorEmptyNode)
	for _, ipt := range []string{"iptables", "ip6tables"} {
		h.ns.Script(t, strings.ReplaceAll(`
			IPT -F FORWARD
			IPT -N DOCKER
			IPT -N DOCKER-USER
			IPT -A DOCKER-USER -j RETURN
			IPT -A FORWARD -j DOCKER-USER
			IPT -A FORWARD -o docker0 -j DOCKER
			IPT -P FORWARD DROP`, "IPT", ipt))
	}
	r := h.json(t)
	r.expect(t, 2, "forward", "ip6tables-nft FORWARD", doctor.Fail, "neighbour discovery", "Docker sets this DROP policy for ip6tables too")
	r.expect(t, 2, "docker", "iptables-nft DOCKER-USER", doctor.Warn, "does not jump to virtbridge's chain", "DOCKER-USER")
	fixed := h.json(t, "--fix")
	fixed.requireClean(t, "after --fix")
	fixed.expect(t, 0, "docker", "ip6tables-nft DOCKER-USER", doctor.OK, "keeps bridged frames accepted")
}

// doctorMixedRuleset is a host where bridged frames cross an
// administrator's inet filter forward chain that drops by policy at
// priority -10, iptables-nft's FORWARD (newDoctorHost's DROP policy and
// REJECT rule) and a table named like Docker 29's that drops what goes out
// to br-*.
const doctorMixedRuleset = `table inet filter {
	chain forward {
		type filter hook forward priority -10; policy drop;
		ct state established,related accept
	}
}
table ip docker-bridges {
	chain filter-FORWARD {
		type filter hook forward priority filter; policy accept;
		oifname "br-*" drop
	}
}
`

// doctorForwardPath: bridge-nf-call=0 is recommended on the bare host and
// advised against once a table of Docker's is there. The doctor lists, for br-a, every forward chain its
// bridged frames cross in hook priority order, in --json and in text, and
// names the first that drops them; --fix lets them through the
// administrator's and iptables' chains, and Docker's table, left alone, is
// then the first (and only) one that drops them.
func doctorForwardPath(t *testing.T, bins doctorBins) {
	h := newDoctorHost(t, bins, doctorBrA, doctorEmptyNode)
	const nfObj = "net.bridge.bridge-nf-call-iptables/ip6tables"
	h.json(t).expect(t, 2, "br-netfilter", nfObj, doctor.OK, "nothing found on this host relies", "bridge_nf_call_iptables: 0")
	h.write(t, "ruleset.nft", doctorMixedRuleset)
	h.ns.Run(t, "nft", "-f", filepath.Join(h.dir, "ruleset.nft"))
	r := h.json(t)
	if f := r.expect(t, 2, "br-netfilter", nfObj, doctor.OK, "keep 1/1", "Docker (its chains or tables)", "icc=false"); f.Fix != "" {
		t.Errorf("0 recommended with Docker's table present: %s", f.Fix)
	}
	f := r.expect(t, 2, "forward-path", "br-a", doctor.Fail,
		"4 of the 4 forward chain(s)", "the first, in hook priority order, is nft inet filter forward (policy drop)",
		"doctor --fix", "then also iptables-nft FORWARD, ip6tables-nft FORWARD, nft ip docker-bridges filter-FORWARD")
	wantPath(t, f.Path,
		"drop nft inet filter forward (administrator, inet, -10): policy drop",
		"drop iptables-nft FORWARD (iptables-nft, ipv4, 0): rule 1 (-A FORWARD -j REJECT --reject-with icmp-host-prohibited)",
		"drop ip6tables-nft FORWARD (iptables-nft, ipv6, 0): policy DROP",
		`drop nft ip docker-bridges filter-FORWARD (docker, ipv4, 0): chain filter-FORWARD rule handle 2: oifname "br-*" drop`)
	if _, text := h.run(t); !strings.Contains(text, "        1. drop nft inet filter forward (administrator, inet, priority -10): policy drop\n") {
		t.Errorf("the text output does not list the path:\n%s", text)
	}

	fixed := h.json(t, "--fix")
	f = fixed.expect(t, 2, "forward-path", "br-a", doctor.Fail, "1 of the 4", "is nft ip docker-bridges filter-FORWARD", "Docker's table is Docker's")
	wantPath(t, f.Path,
		`pass nft inet filter forward (administrator, inet, -10): a rule accepts them first`,
		"pass iptables-nft FORWARD (iptables-nft, ipv4, 0): virtbridge's jump (rule 1) accepts",
		"pass ip6tables-nft FORWARD (iptables-nft, ipv6, 0): virtbridge's jump (rule 1) accepts",
		`drop nft ip docker-bridges filter-FORWARD (docker, ipv4, 0): chain filter-FORWARD rule handle 2: oifname "br-*" drop`)
}

func wantPath(t *testing.T, path []doctor.Hop, want ...string) {
	t.Helper()
	var got []string
	for _, h := range path {
		got = append(got, fmt.Sprintf("%s %s (%s, %s, %d): %s", h.Verdict, h.Chain, h.Owner, h.Family, h.Priority, h.At))
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("forward path:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// doctorLegacy: a legacy DROP policy while virtbridge keeps its rules in
// nf_tables: a packet passes both, and the fix is the operator's.
func doctorLegacy(t *testing.T, bins doctorBins) {
	if _, err := exec.LookPath("iptables-legacy"); err != nil {
		t.Skip("skipped: needs iptables-legacy")
	}
	h := newDoctorHost(t, bins, doctorBrA+"firewall: {backend: iptables-nft}\n", doctorEmptyNode)
	h.ns.Script(t, "iptables-legacy -P FORWARD DROP")
	r := h.json(t, "--fix")
	r.expect(t, 2, "forward", "iptables-legacy FORWARD", doctor.Fail, "policy DROP", "iptables-legacy -I FORWARD -m physdev --physdev-is-bridged -j ACCEPT")
	r.expect(t, 2, "forward", "iptables-nft FORWARD", doctor.OK, "virtbridge's jump")
}

// doctorStaleTap: a tap in a managed bridge that no VM owns is reported,
// never removed.
func doctorStaleTap(t *testing.T, bins doctorBins) {
	h := newDoctorHost(t, bins, doctorBrA, doctorEmptyNode)
	h.json(t, "--fix").requireClean(t, "fixed")
	h.ns.Script(t, "ip tuntap add dev vnet9 mode tap\nip link set vnet9 master br-a")
	f := h.json(t, "--fix").expect(t, 1, "port", "vnet9", doctor.Warn, "tuntap port in br-a that belongs to no running VM", "ip link del vnet9")
	if f.Fixable {
		t.Error("nobody's tap is not virtbridge's to remove")
	}
}

// doctorVMTap: a running VM (libvirt test driver) whose tap is out of its
// missing bridge: --fix creates the bridge, puts the tap back and records
// it.
func doctorVMTap(t *testing.T, bins doctorBins) {
	// The test driver names the running domain's tap testnet0; it gets the
	// MAC libvirt gives a tap.
	h := newDoctorHost(t, bins, doctorBrA, doctorDomainNode("web1", "52:54:00:12:00:01", "br-a"))
	h.ns.Script(t, "ip tuntap add dev testnet0 mode tap\nip link set testnet0 address fe:54:00:12:00:01")
	r := h.json(t)
	r.expect(t, 2, "vm-tap", "testnet0", doctor.Fail, "tap of vm web1 (NIC 52:54:00:12:00:01) is not in bridge br-a (its master: none)")
	r.expect(t, 2, "bridge-exists", "br-a", doctor.Fail, "running VMs use it: web1")
	h.json(t, "--fix").requireClean(t, "after --fix") // the bridge, then the tap put in it
	s, err := store.Read(filepath.Join(h.dir, "ports.json"))
	if err != nil {
		t.Fatal(err)
	}
	if e, ok := s.ByTap("testnet0"); !ok || e.VM != "web1" || e.Bridge != "br-a" {
		t.Errorf("the mapping store has %+v for testnet0, want web1 on br-a", e)
	}
}

// doctorFeMAC: a guest MAC in the taps' fe: range, read over the libvirt API.
func doctorFeMAC(t *testing.T, bins doctorBins) {
	h := newDoctorHost(t, bins, doctorBrA, doctorDomainNode("web2", "fe:54:00:12:00:02", "br-a"))
	r := h.json(t)
	r.expect(t, 2, "vm-mac", "web2 NIC fe:54:00:12:00:02", doctor.Fail, "starts with fe:", "virsh edit web2")
}

// doctorDomainNode is a test driver node with one running domain with a NIC
// on bridge; the domain's UUID ends in its MAC's last octet.
func doctorDomainNode(name, mac, bridge string) string {
	return `<node>
  <domain type='test'>
    <name>` + name + `</name>
    <uuid>6695eb01-f6a4-8304-79aa-97f2502e10` + mac[len(mac)-2:] + `</uuid>
    <memory>65536</memory>
    <os><type>hvm</type></os>
    <devices>
      <interface type='bridge'>
        <mac address='` + mac + `'/>
        <source bridge='` + bridge + `'/>
      </interface>
    </devices>
  </domain>
</node>
`
}
