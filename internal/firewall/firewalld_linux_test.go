package firewall

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/virtbridge/virtbridge/internal/desired"
)

// privateFirewalld is firewalld running in the lab's network namespace,
// in a private mount and UTS namespace (tmpfs over /run), on a private
// D-Bus system bus, with a copy of /etc/firewalld: it never touches the
// machine's own firewall, bus or configuration.
type privateFirewalld struct {
	dir, bus string
	ns       string
	fw       *exec.Cmd
}

// publicNoForward is Debian's public zone without <forward/>, so that the
// test sees virtbridge turn forwarding on.
const publicNoForward = `<?xml version="1.0" encoding="utf-8"?>
<zone>
  <short>Public</short>
  <service name="ssh"/>
  <service name="dhcpv6-client"/>
</zone>
`

func startPrivateFirewalld(t *testing.T, ns string) *privateFirewalld {
	t.Helper()
	for _, c := range []string{"firewalld", "firewall-cmd", "dbus-daemon", "unshare"} {
		if _, err := exec.LookPath(c); err != nil {
			t.Skipf("skipped: needs %s (scripts/deps.sh installs firewalld)", c)
		}
	}
	dir := t.TempDir()
	p := &privateFirewalld{dir: dir, bus: "unix:path=" + filepath.Join(dir, "bus"), ns: ns}
	if out, err := exec.Command("cp", "-a", "/etc/firewalld", filepath.Join(dir, "etc")).CombinedOutput(); err != nil {
		t.Fatalf("copying /etc/firewalld: %v: %s", err, out)
	}
	write(t, filepath.Join(dir, "etc", "zones", "public.xml"), publicNoForward)
	write(t, filepath.Join(dir, "bus.conf"), `<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>`+p.bus+`</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_destination="*"/>
    <allow receive_sender="*"/>
  </policy>
</busconfig>
`)
	bus := exec.Command("dbus-daemon", "--config-file="+filepath.Join(dir, "bus.conf"), "--nofork", "--nopidfile")
	if err := bus.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { bus.Process.Kill(); bus.Wait() })
	p.start(t)
	return p
}

func write(t *testing.T, path, s string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}

// start runs firewalld and waits, with a generous deadline, until it
// answers.
func (p *privateFirewalld) start(t *testing.T) {
	t.Helper()
	script := "mount -t tmpfs tmpfs /run && exec firewalld --nofork --nopid --system-config " + filepath.Join(p.dir, "etc") +
		" --log-target file --log-file " + filepath.Join(p.dir, "firewalld.log")
	p.fw = exec.Command("ip", "netns", "exec", p.ns, "unshare", "-m", "-u", "--propagation", "private", "sh", "-c", script)
	p.fw.Env = append(os.Environ(), "DBUS_SYSTEM_BUS_ADDRESS="+p.bus)
	if err := p.fw.Start(); err != nil {
		t.Fatal(err)
	}
	cmd := p.fw
	t.Cleanup(func() { cmd.Process.Signal(syscall.SIGTERM); cmd.Wait() })
	start := time.Now()
	for time.Since(start) < 60*time.Second {
		if out, err := p.cmd("--state"); err == nil && strings.TrimSpace(out) == "running" {
			t.Logf("firewalld answered after %v", time.Since(start).Round(time.Millisecond))
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	log, _ := os.ReadFile(filepath.Join(p.dir, "firewalld.log"))
	t.Fatalf("firewalld did not come up within 60 s:\n%s", log)
}

// stop ends firewalld (SIGTERM: it removes its table) and waits.
func (p *privateFirewalld) stop(t *testing.T) {
	t.Helper()
	p.fw.Process.Signal(syscall.SIGTERM)
	p.fw.Wait()
}

// cmd runs firewall-cmd on the private bus.
func (p *privateFirewalld) cmd(args ...string) (string, error) {
	c := exec.Command("firewall-cmd", args...)
	c.Env = append(os.Environ(), "DBUS_SYSTEM_BUS_ADDRESS="+p.bus, "LC_ALL=C")
	out, err := c.CombinedOutput()
	return string(out), err
}

func (p *privateFirewalld) must(t *testing.T, args ...string) string {
	t.Helper()
	out, err := p.cmd(args...)
	if err != nil {
		t.Fatalf("firewall-cmd %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(out)
}

// settings renders the zone of br0 and public's forwarding, runtime and
// permanent.
func (p *privateFirewalld) settings(t *testing.T) string {
	t.Helper()
	zone := func(args ...string) string {
		out, _ := p.cmd(args...) // "no zone" exits 2
		return strings.TrimSpace(out)
	}
	return "runtime br0: " + zone("--get-zone-of-interface=br0") + ", public forward: " + zone("--zone=public", "--query-forward") +
		"; permanent br0: " + zone("--permanent", "--get-zone-of-interface=br0") + ", public forward: " + zone("--permanent", "--zone=public", "--query-forward")
}

// hostPortOpen reports whether upstream can open a TCP connection to a
// listener on the host's own address on the bridge.
func (b *bridgedLab) hostPortOpen(t *testing.T) bool {
	t.Helper()
	_, err := b.up.Exec("python3", "-c", "import socket; socket.create_connection(('10.77.0.10', 7777), timeout=2)")
	return err == nil
}

// TestFirewalldZone: with firewalld running and the uplink in public (whose
// forwarding is off), bridged frames pass after Ensure, which puts br0 into
// public and turns public's forwarding on, runtime and permanent; the
// host stays protected (a port public does not open stays closed from
// upstream); it survives `firewall-cmd --reload` and a firewalld restart;
// Remove undoes it.
func TestFirewalldZone(t *testing.T) {
	b := newBridgedLab(t)
	b.ns.Script(t, "ip addr add 10.77.0.10/24 dev br0\nip link set br0 up")
	listener := exec.Command("ip", "netns", "exec", b.ns.Name, "python3", "-c",
		"import socket, time; s = socket.socket(); s.bind(('10.77.0.10', 7777)); s.listen(); time.sleep(600)")
	if err := listener.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { listener.Process.Kill(); listener.Wait() })
	fd := startPrivateFirewalld(t, b.ns.Name)
	fd.must(t, "--zone=public", "--add-interface=up0")
	fd.must(t, "--permanent", "--zone=public", "--add-interface=up0")
	before := fd.settings(t)
	if want := "runtime br0: no zone, public forward: no; permanent br0: no zone, public forward: no"; before != want {
		t.Fatalf("before: %s, want %s", before, want)
	}
	if !b.blocked(t) {
		t.Fatal("control: the VM reaches upstream through firewalld before Ensure")
	}
	opts := Options{BinDir: b.dir, NetNS: "/run/netns/" + b.ns.Name, NoState: true, DBusAddress: fd.bus, FirewalldRecord: filepath.Join(fd.dir, "record.json")}
	f := New(opts)
	p := desired.Firewall{Backend: BackendNFT, AcceptBridges: []string{"br0"}}
	for _, c := range mustEnsure(t, f, p) {
		t.Logf("change: %s", c)
	}
	want := "runtime br0: public, public forward: yes; permanent br0: public, public forward: yes"
	if got := fd.settings(t); got != want {
		t.Errorf("after Ensure: %s, want %s", got, want)
	}
	if !b.reaches(t) {
		t.Fatal("the VM does not reach upstream after Ensure")
	}
	if b.hostPortOpen(t) {
		t.Error("port 7777 of the host is open from upstream: the host lost its protection")
	}
	fd.must(t, "--zone=public", "--add-port=7777/tcp")
	if !b.hostPortOpen(t) {
		t.Error("control: port 7777 opened in public is still closed")
	}
	fd.must(t, "--zone=public", "--remove-port=7777/tcp")
	if cs := mustEnsure(t, f, p); len(cs) != 0 {
		t.Errorf("second Ensure changed %v", cs)
	}

	fd.must(t, "--reload")
	if !b.reaches(t) {
		t.Errorf("the VM does not reach upstream after firewall-cmd --reload (%s)", fd.settings(t))
	}
	fd.stop(t)
	fd.start(t)
	if !b.reaches(t) {
		t.Errorf("the VM does not reach upstream after a firewalld restart (%s)", fd.settings(t))
	}

	cs, err := f.Remove(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("removed: %v", cs)
	if got := fd.settings(t); got != before {
		t.Errorf("after Remove: %s, want %s", got, before)
	}
	if !b.blocked(t) {
		t.Error("the VM still reaches upstream after Remove")
	}
}

// TestFirewalldDrift: after Ensure, someone moves br0 into zone block and
// turns public's forwarding off, runtime and permanent, behind
// virtbridge's back (block's own forwarding off too). Check (what doctor's firewall-rules finding shows)
// names each difference; the next Ensure — the daemon's periodic check,
// with its state file: firewalld's runtime change moved the nf_tables
// generation — puts br0 back into public and turns forwarding on again,
// and the VM reaches upstream. A change of the permanent settings only is
// reported too, and put back by an Ensure with Options.Verify.
func TestFirewalldDrift(t *testing.T) {
	b := newBridgedLab(t)
	fd := startPrivateFirewalld(t, b.ns.Name)
	fd.must(t, "--zone=public", "--add-interface=up0")
	fd.must(t, "--permanent", "--zone=public", "--add-interface=up0")
	opts := Options{BinDir: b.dir, NetNS: "/run/netns/" + b.ns.Name, StatePath: filepath.Join(fd.dir, "firewall.state"),
		DBusAddress: fd.bus, FirewalldRecord: filepath.Join(fd.dir, "record.json")}
	f := New(opts)
	p := desired.Firewall{Backend: BackendNFT, AcceptBridges: []string{"br0"}}
	mustEnsure(t, f, p)
	const want = "runtime br0: public, public forward: yes; permanent br0: public, public forward: yes"
	if got := fd.settings(t); got != want {
		t.Fatalf("after Ensure: %s, want %s", got, want)
	}
	if ps, err := f.Check(context.Background(), p); err != nil || len(ps) != 0 {
		t.Fatalf("Check after Ensure: %q, %v", ps, err)
	}

	fd.must(t, "--zone=block", "--remove-forward") // firewalld ≥ 1.0's block forwards within itself
	fd.must(t, "--zone=block", "--change-interface=br0")
	fd.must(t, "--zone=public", "--remove-forward")
	fd.must(t, "--permanent", "--zone=public", "--remove-forward")
	if !b.blocked(t) {
		t.Fatalf("control: the VM still reaches upstream with br0 in block (%s)\n%s", fd.settings(t), b.ns.Run(t, "nft", "list", "table", "inet", "firewalld"))
	}
	ps, err := f.Check(context.Background(), p)
	if err != nil {
		t.Fatal(err)
	}
	wantPs := strings.Join([]string{
		"firewalld: permanent: zone public does not forward, so it drops bridged frames of br0",
		"firewalld: runtime: bridge br0 is in zone block, want zone public",
		"firewalld: runtime: zone public does not forward, so it drops bridged frames of br0",
	}, "\n")
	if got := strings.Join(ps, "\n"); got != wantPs {
		t.Errorf("Check after the drift:\n%s\nwant:\n%s", got, wantPs)
	}

	cs := mustEnsure(t, f, p)
	t.Logf("repaired: %v", cs)
	if got := fd.settings(t); got != want {
		t.Errorf("after the repair: %s, want %s", got, want)
	}
	if !b.reaches(t) {
		t.Errorf("the VM does not reach upstream after the repair (%s)", fd.settings(t))
	}
	if ps, err := f.Check(context.Background(), p); err != nil || len(ps) != 0 {
		t.Errorf("Check after the repair: %q, %v", ps, err)
	}

	// A permanent-only change does not move the nf_tables generation: the
	// periodic Ensure keeps trusting it, Check reports the change, and an
	// Ensure with Verify (the CLI's apply and doctor --fix) puts it back.
	fd.must(t, "--permanent", "--zone=public", "--remove-forward")
	if cs := mustEnsure(t, f, p); len(cs) != 0 {
		t.Errorf("Ensure on an unchanged generation changed %v", cs)
	}
	if ps, _ := f.Check(context.Background(), p); strings.Join(ps, "\n") != "firewalld: permanent: zone public does not forward, so it drops bridged frames of br0" {
		t.Errorf("Check after a permanent-only change: %q", ps)
	}
	opts.Verify = true
	cs = mustEnsure(t, New(opts), p)
	if got := fd.settings(t); got != want || len(cs) != 1 {
		t.Errorf("after Ensure with Verify: %s (changes %v), want %s", got, cs, want)
	}
	if _, err := f.Remove(context.Background()); err != nil {
		t.Fatal(err)
	}
}
