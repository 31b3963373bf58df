package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/virtbridge/virtbridge/internal/testenv/netnstest"
)

// hypervisor is a namespace playing the host, with its uplink NIC joined
// by a veth pair to an "upstream" namespace.
type hypervisor struct {
	hv, up *netnstest.NS
	dir    string // config, run, state and log dirs of the hook
	// journald lets the hook reach the journald of the test process
	// (journaltest); otherwise it is hidden and the hook journals to its
	// fallback file in dir, whatever other test packages run meanwhile.
	journald bool
}

// newHypervisor builds the broken host of the classic how-to: the uplink
// holds the host's addresses and default routes, ip_forward is 0,
// bridge-nf-call-iptables is 1, FORWARD drops by policy and a trailing
// REJECT rule.
func newHypervisor(t *testing.T, cfg string) *hypervisor {
	t.Helper()
	return newHypervisorNamed(t, cfg, "vbhk", "vbup")
}

// newHypervisorNamed is newHypervisor with the namespaces' name prefixes.
func newHypervisorNamed(t *testing.T, cfg, hvPrefix, upPrefix string) *hypervisor {
	t.Helper()
	h := &hypervisor{hv: netnstest.New(t, hvPrefix), up: netnstest.New(t, upPrefix), dir: t.TempDir()}
	h.hv.Script(t, `
		ip link add uplink0 type veth peer name upstream0
		ip link set upstream0 netns `+h.up.Name+`
		ip link set uplink0 up
		ip addr add 10.77.0.2/24 dev uplink0
		ip -6 addr add 2001:db8:77::2/64 dev uplink0 nodad
		ip route add default via 10.77.0.1 dev uplink0 metric 100
		ip -6 route add default via 2001:db8:77::1 dev uplink0 metric 100
		sysctl -qw net.ipv4.ip_forward=0
		sysctl -qw net.bridge.bridge-nf-call-iptables=1
		iptables -P FORWARD DROP
		iptables -A FORWARD -j REJECT --reject-with icmp-host-prohibited`)
	h.up.Script(t, `
		ip link set upstream0 up
		ip addr add 10.77.0.1/24 dev upstream0
		ip -6 addr add 2001:db8:77::1/64 dev upstream0 nodad`)
	if err := os.WriteFile(filepath.Join(h.dir, "virtbridge.yaml"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	return h
}

// noJournaldEnv makes this test binary a wrapper that hides journald from
// the hook (see init).
const noJournaldEnv = "VIRTBRIDGE_TEST_NO_JOURNALD"

// init, in a child started by hookCmd in a mount namespace of its own,
// hides journald's socket under an empty tmpfs and execs ip with its
// arguments: the hook journals to its fallback file in the test's dir, never
// to a journald that another test package may be running meanwhile.
func init() {
	if os.Getenv(noJournaldEnv) != "1" {
		return
	}
	fail := func(err error) {
		os.Stderr.WriteString("hiding journald from the hook: " + err.Error() + "\n")
		os.Exit(125)
	}
	// Go made the new mount namespace's mounts private: nothing propagates
	// back. Without /run/systemd/journal there is no journald to hide.
	if _, err := os.Stat("/run/systemd/journal"); err == nil {
		if err := syscall.Mount("tmpfs", "/run/systemd/journal", "tmpfs", 0, "size=64k"); err != nil {
			fail(err)
		}
	}
	ip, err := exec.LookPath("ip")
	if err != nil {
		fail(err)
	}
	env := slices.DeleteFunc(os.Environ(), func(e string) bool { return strings.HasPrefix(e, noJournaldEnv+"=") })
	fail(syscall.Exec(ip, append([]string{"ip"}, os.Args[1:]...), env))
}

// hook runs the built hook inside the hypervisor namespace with a captured
// fixture call (testdata/hook/SHAPE/CALL.{args,xml}).
func (h *hypervisor) hook(t *testing.T, shape, call string) result {
	t.Helper()
	args, stdin := fixture(t, shape, call)
	return h.run(t, h.dir, filepath.Join(h.dir, "virtbridge.yaml"), bytes.NewReader(stdin), args...)
}

// hookCmd is the command h.hook runs, not started, with its stdout and
// stderr captured: for a caller that starts it and kills it.
func (h *hypervisor) hookCmd(t *testing.T, shape, call string) (cmd *exec.Cmd, stdout, stderr *strings.Builder) {
	t.Helper()
	args, stdin := fixture(t, shape, call)
	return h.command(context.Background(), h.dir, filepath.Join(h.dir, "virtbridge.yaml"), bytes.NewReader(stdin), args...)
}

// fixture reads a captured hook call: its argv and its stdin.
func fixture(t *testing.T, shape, call string) (args []string, stdin []byte) {
	t.Helper()
	base := filepath.Join("..", "..", "testdata", "hook", shape, call)
	a, err := os.ReadFile(base + ".args")
	if err != nil {
		t.Fatal(err)
	}
	stdin, err = os.ReadFile(base + ".xml")
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimSpace(string(a)), "\n"), stdin
}

// command runs the built hook with args in the hypervisor namespace, with
// dir as its run, state and log dirs, through this test binary (see init):
// the hook journals to its fallback file in dir. A signal to cmd.Process
// reaches the hook itself once it runs: the wrapper and ip netns exec each
// exec the next in the same process.
func (h *hypervisor) command(ctx context.Context, dir, cfgPath string, stdin io.Reader, args ...string) (cmd *exec.Cmd, stdout, stderr *strings.Builder) {
	argv := append([]string{"netns", "exec", h.hv.Name, hookBin}, args...)
	cmd = exec.CommandContext(ctx, os.Args[0], argv...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Unshareflags: syscall.CLONE_NEWNS}
	cmd.Env = []string{
		noJournaldEnv + "=1",
		"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL=C",
		"VIRTBRIDGE_CONFIG=" + cfgPath,
		"VIRTBRIDGE_RUN_DIR=" + dir, "VIRTBRIDGE_STATE_DIR=" + dir, "VIRTBRIDGE_LOG_DIR=" + dir,
	}
	if h.journald {
		cmd = exec.CommandContext(ctx, "ip", argv...)
		cmd.Env = cmd.Env[:0]
		cmd.Env = append(cmd.Env, "PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL=C",
			"VIRTBRIDGE_CONFIG="+cfgPath,
			"VIRTBRIDGE_RUN_DIR="+dir, "VIRTBRIDGE_STATE_DIR="+dir, "VIRTBRIDGE_LOG_DIR="+dir)
	}
	cmd.Stdin = stdin
	stdout, stderr = &strings.Builder{}, &strings.Builder{}
	cmd.Stdout, cmd.Stderr = stdout, stderr
	return cmd, stdout, stderr
}

// exec runs the built hook with argv args and stdin in the hypervisor's
// dirs, like h.hook. An error is a hook that could not be run; its exit
// code is in the result. Safe to call from several goroutines.
func (h *hypervisor) exec(args []string, stdin string) (result, error) {
	cmd, out, errb := h.command(context.Background(), h.dir, filepath.Join(h.dir, "virtbridge.yaml"), strings.NewReader(stdin), args...)
	err := cmd.Run()
	r := result{stdout: out.String(), stderr: errb.String()}
	if ee := (*exec.ExitError)(nil); errors.As(err, &ee) {
		r.code = ee.ExitCode()
	} else if err != nil {
		return r, fmt.Errorf("running the hook %s: %w", strings.Join(args, " "), err)
	}
	return r, nil
}

const brA = `
bridges:
  br-a: {uplink: uplink0}
sysctl: {ip_forward: 1}
`

// TestPrepareFixesTheHost runs prepare on the broken host while the
// upstream pings the host's address every 10 ms; at started the VM's tap
// joins the bridge; a VM port on the bridge reaches upstream through DROP
// policy and REJECT rule.
func TestPrepareFixesTheHost(t *testing.T) {
	h := newHypervisor(t, brA)
	ping := h.up.StartPing(t, "10.77.0.2", 200)
	if r := h.hook(t, "one-nic", "01-prepare-begin"); r.code != 0 || r.stdout != "" {
		t.Fatalf("prepare: %+v", r)
	}
	lost, sent := ping.Lost(t)
	t.Logf("pings to the host's address during prepare: %d of %d lost", lost, sent)
	if lost > 2 {
		t.Errorf("the host lost %d of %d pings while its address moved", lost, sent)
	}

	addr := h.hv.Run(t, "ip", "-o", "addr", "show")
	for _, want := range []string{"br-a    inet 10.77.0.2/24", "br-a    inet6 2001:db8:77::2/64"} {
		if !strings.Contains(addr, want) {
			t.Errorf("address %q not on the bridge:\n%s", want, addr)
		}
	}
	if strings.Contains(addr, "uplink0    inet ") || strings.Contains(addr, "uplink0    inet6 2001") {
		t.Errorf("addresses left on the uplink:\n%s", addr)
	}
	if r := h.hv.Run(t, "ip", "route", "show", "default"); !strings.Contains(r, "default via 10.77.0.1 dev br-a metric 100") {
		t.Errorf("default route not on the bridge with its metric: %q", r)
	}
	if r := h.hv.Run(t, "ip", "-6", "route", "show", "default"); !strings.Contains(r, "default via 2001:db8:77::1 dev br-a metric 100") {
		t.Errorf("IPv6 default route not on the bridge with its metric: %q", r)
	}
	if f := h.hv.Run(t, "sysctl", "-n", "net.ipv4.ip_forward"); strings.TrimSpace(f) != "1" {
		t.Errorf("ip_forward = %q", f)
	}

	// The VM's tap: vnet0 (the fixture's), a real tun/tap device with the
	// MAC libvirt gives it, left outside its bridge so that the hook must
	// attach it at started and name it after the VM.
	h.hv.Script(t, "ip tuntap add dev vnet0 mode tap\nip link set vnet0 address fe:54:00:aa:01:01 up")
	if r := h.hook(t, "one-nic", "03-started-begin"); r.code != 0 || r.stderr != "" {
		t.Fatalf("started: %+v", r)
	}
	link := h.hv.Run(t, "ip", "-d", "link", "show", "vnet0")
	if !strings.Contains(link, "master br-a") || !strings.Contains(link, "alias vm:one-nic uuid:") {
		t.Errorf("tap not in its bridge or not named after the VM:\n%s", link)
	}
	// A tap carries nothing without a qemu behind it, so the traffic proof
	// uses a veth that the test itself puts into br-a, its peer in a VM
	// namespace: it proves that what prepare made (the bridge holding the
	// host's addresses and routes, ip_forward, the FORWARD rule through DROP
	// policy and REJECT) lets a VM port reach upstream.
	vm := netnstest.New(t, "vbvm")
	h.hv.Script(t, "ip link add vmport type veth peer name eth0 netns "+vm.Name+"\nip link set vmport master br-a up")
	vm.Script(t, "ip link set eth0 up\nip addr add 10.77.0.50/24 dev eth0")
	if out, err := vm.Exec("ping", "-c", "2", "-W", "2", "10.77.0.1"); err != nil {
		t.Fatalf("the VM does not reach upstream through the bridge:\n%s\n%s", out, h.hv.Dump(t))
	}
}

// TestOwnTapNamePrepares: a NIC that names its tap (<target
// dev='vbtest0'/>, free at prepare since libvirt makes it later) prepares
// without looking for it, and at started the tap libvirt made joins br-a.
func TestOwnTapNamePrepares(t *testing.T) {
	h := newHypervisor(t, brA)
	if r := h.hook(t, "custom-tap", "01-prepare-begin"); r.code != 0 || strings.Contains(r.stderr, "vbtest0") {
		t.Fatalf("prepare: %+v", r)
	}
	h.hv.Script(t, "ip tuntap add dev vbtest0 mode tap\nip link set vbtest0 address fe:54:00:aa:03:01 up")
	if r := h.hook(t, "custom-tap", "03-started-begin"); r.code != 0 || r.stderr != "" {
		t.Fatalf("started: %+v", r)
	}
	if link := h.hv.Run(t, "ip", "-d", "link", "show", "vbtest0"); !strings.Contains(link, "master br-a") || !strings.Contains(link, "alias vm:custom-tap uuid:") {
		t.Errorf("tap not in its bridge or not named after the VM:\n%s", link)
	}
}

// TestPrepareIsIdempotent: a second prepare changes nothing at all.
func TestPrepareIsIdempotent(t *testing.T) {
	h := newHypervisor(t, brA)
	if r := h.hook(t, "two-nics", "01-prepare-begin"); r.code != 0 {
		t.Fatalf("first prepare: %+v", r)
	}
	h.settle(t) // the new bridge's link-local address leaves DAD by itself
	before := h.hv.Dump(t)
	if r := h.hook(t, "two-nics", "01-prepare-begin"); r.code != 0 || r.stderr != "" {
		t.Fatalf("second prepare: %+v", r)
	}
	if after := h.hv.Dump(t); after != before {
		t.Fatalf("second prepare changed the host:\n--- before\n%s\n--- after\n%s", before, after)
	}
}

// TestRefusalsLeaveTheHostAsItWas: each refusal exits 1 with one line that
// names the object, and the namespace is byte-for-byte as before.
func TestRefusalsLeaveTheHostAsItWas(t *testing.T) {
	for _, tc := range []struct {
		name, setup, cfg, want string
	}{
		{"uplink in another bridge", "ip link add br-other type bridge\nip link set uplink0 master br-other", brA,
			`uplink0`},
		{"non-bridge link with the bridge's name", "ip link add br-a type veth peer name br-a-peer", brA,
			`br-a`},
		{"uplink missing", "", "bridges:\n  br-a: {uplink: eth9}\n", `eth9`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHypervisor(t, tc.cfg)
			h.hv.Script(t, tc.setup)
			before := h.hv.Dump(t)
			r := h.hook(t, "one-nic", "01-prepare-begin")
			if r.code != 1 || !strings.Contains(r.stderr, `virtbridge: domain "one-nic" (prepare): refused: `) || !strings.Contains(r.stderr, tc.want) {
				t.Fatalf("exit %d stderr %q, want a refusal naming %q", r.code, r.stderr, tc.want)
			}
			t.Logf("refusal: %s", strings.TrimSpace(r.stderr))
			if after := h.hv.Dump(t); after != before {
				t.Fatalf("the refused prepare changed the host:\n--- before\n%s\n--- after\n%s", before, after)
			}
		})
	}
}

// TestOnFailureWarn lets the VM start despite a host that cannot be fixed.
func TestOnFailureWarn(t *testing.T) {
	h := newHypervisor(t, "bridges:\n  br-a: {uplink: eth9}\non_failure: warn\n")
	r := h.hook(t, "one-nic", "01-prepare-begin")
	if r.code != 0 || !strings.Contains(r.stderr, "on_failure: warn") || !strings.Contains(r.stderr, "eth9") {
		t.Fatalf("exit %d stderr %q", r.code, r.stderr)
	}
}

// TestLegacyIptables: with backend iptables-legacy the rules go to the
// legacy tables.
func TestLegacyIptables(t *testing.T) {
	h := newHypervisor(t, brA+"firewall: {backend: iptables-legacy}\n")
	if r := h.hook(t, "one-nic", "01-prepare-begin"); r.code != 0 {
		t.Fatalf("prepare: %+v", r)
	}
	rules := h.hv.Run(t, "iptables-legacy", "-S", "FORWARD")
	if !strings.HasPrefix(strings.SplitN(rules, "\n", 3)[1], "-A FORWARD -m comment --comment virtbridge -j VIRTBRIDGE-FWD") {
		t.Fatalf("legacy FORWARD does not start with our jump:\n%s", rules)
	}
}
