package e2e

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/virtbridge/virtbridge/internal/journal"
	"github.com/virtbridge/virtbridge/internal/testenv/journaltest"
	"github.com/virtbridge/virtbridge/internal/testenv/lab"
	"github.com/virtbridge/virtbridge/internal/testenv/netnstest"
)

// Limits of one scenario's steps. A TCG VM asks for its lease 20-40 s after
// it starts when it has a core to itself; with other tests booting VMs on a
// 2-core machine it can take several times that.
const (
	stepTimeout  = 2 * time.Minute
	leaseTimeout = 4 * time.Minute
)

// vmSlots bounds the VMs of this package that run at once: a TCG boot costs
// ~17 s of CPU, and the machine has 2 cores shared with other packages.
var vmSlots = make(chan struct{}, 3)

// binaries are built once per test binary from this tree, so that the
// suite always tests the code next to it, whatever bin/ holds.
var (
	buildOnce sync.Once
	binDir    string
	buildErr  error
)

// commands are the programs bin builds: name → package.
var commands = map[string]string{
	"virtbridge-hook": "./cmd/hook",
	"virtbridge":      "./cmd/virtbridge",
	"virtbridged":     "./cmd/eventd",
	"vbdemo":          "./cmd/vbdemo",
}

// bin returns the path of a freshly built command, named as `make build`
// names it (see commands).
func bin(t *testing.T, name string) string {
	t.Helper()
	buildOnce.Do(func() { binDir, buildErr = buildCommands() })
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	if _, ok := commands[name]; !ok {
		t.Fatalf("no command %q", name)
	}
	return filepath.Join(binDir, name)
}

// buildCommands builds every command into a new directory, in one go
// build, which names each binary after its package directory.
func buildCommands() (string, error) {
	dir, err := os.MkdirTemp("", "virtbridge-e2e-bin-")
	if err != nil {
		return "", err
	}
	goTool, err := exec.LookPath("go")
	if err != nil {
		goTool = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	args := []string{"build", "-o", dir + "/"}
	for _, pkg := range commands {
		args = append(args, pkg)
	}
	cmd := exec.Command(goTool, args...)
	cmd.Dir = ".."
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	if out, err := cmd.CombinedOutput(); err != nil {
		return dir, fmt.Errorf("building the commands: %w: %s", err, out)
	}
	for name, pkg := range commands {
		if built := filepath.Join(dir, filepath.Base(pkg)); filepath.Base(pkg) != name {
			if err := os.Rename(built, filepath.Join(dir, name)); err != nil {
				return dir, err
			}
		}
	}
	return dir, nil
}

// removeBinaries deletes what bin built; TestMain calls it at the end.
func removeBinaries() {
	if binDir != "" {
		os.RemoveAll(binDir)
	}
}

// requireLab skips t unless the machine can run the whole suite: root, the
// lab's programs, journald; not in -short mode.
func requireLab(t *testing.T) *journaltest.Journald {
	t.Helper()
	if testing.Short() {
		t.Skip("skipping: boots real VMs (-short)")
	}
	lab.SkipIfUnavailable(t)
	return journaltest.Require(t)
}

// newLab starts a lab with an upstream, virtbridge's hook installed as
// /etc/libvirt/hooks/qemu and cfg as /etc/virtbridge/virtbridge.yaml, and
// breaks its host as f says, with br0 as the bridge.
func newLab(t *testing.T, cfg string, f lab.Faults) *lab.Lab {
	t.Helper()
	l := lab.ForTest(t, lab.Options{
		Upstream:      true,
		HookPath:      bin(t, "virtbridge-hook"),
		EtcVirtbridge: map[string][]byte{"virtbridge.yaml": []byte(cfg)},
	})
	ctx, cancel := context.WithTimeout(context.Background(), stepTimeout)
	defer cancel()
	if err := l.Break(ctx, "br0", f); err != nil {
		t.Fatal(err)
	}
	return l
}

// vm is a started domain of a test.
type vm struct {
	name, uuid string
	macs       []string // one per bridge, in order
	release    func()
}

// startVM takes a VM slot, defines and starts spec (a disk-less PXE VM)
// and returns it; the VM is destroyed and its slot freed by destroy or,
// at the latest, when t ends.
func startVM(t *testing.T, l *lab.Lab, spec lab.VM) *vm {
	t.Helper()
	x, err := lab.DomainXML(spec)
	if err != nil {
		t.Fatal(err)
	}
	vmSlots <- struct{}{}
	var once sync.Once
	v := &vm{name: spec.Name}
	v.release = func() {
		once.Do(func() {
			ctx, cancel := context.WithTimeout(context.Background(), stepTimeout)
			defer cancel()
			if err := l.DestroyUndefine(ctx, spec.Name); err != nil {
				t.Errorf("removing VM %s: %v", spec.Name, err)
			}
			<-vmSlots
		})
	}
	t.Cleanup(v.release)
	ctx, cancel := context.WithTimeout(context.Background(), stepTimeout)
	defer cancel()
	begin := time.Now()
	if err := l.DefineStart(ctx, x); err != nil {
		t.Fatalf("starting VM %s: %v", spec.Name, err)
	}
	t.Logf("VM %s started in %v", spec.Name, time.Since(begin).Round(time.Millisecond))
	if v.uuid, err = l.UUID(ctx, spec.Name); err != nil {
		t.Fatal(err)
	}
	ifaces, err := l.Interfaces(ctx, spec.Name)
	if err != nil {
		t.Fatal(err)
	}
	for _, iface := range ifaces {
		v.macs = append(v.macs, iface.MAC)
	}
	return v
}

// destroy stops the VM and frees its slot. The hook's stopped call has
// run when it returns.
func (v *vm) destroy() { v.release() }

// waitLease waits for the DHCP lease of mac from the upstream's dnsmasq:
// the VM's firmware reached the outside network.
func waitLease(t *testing.T, l *lab.Lab, mac string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), leaseTimeout)
	defer cancel()
	begin := time.Now()
	ip, err := l.WaitLease(ctx, mac)
	if err != nil {
		t.Fatalf("no DHCP lease upstream: %v\nhypervisor namespace:\n%s", err, hvNS(l).Dump(t))
	}
	t.Logf("lease %s for %s after %v", ip, mac, time.Since(begin).Round(time.Second))
	return ip
}

// hvNS is the lab's hypervisor namespace as a netnstest namespace, for its
// Exec, Run and Dump (it is the lab's to delete, not the test's).
func hvNS(l *lab.Lab) *netnstest.NS { return &netnstest.NS{Name: l.HVNetns()} }

// hv runs a command in the lab's hypervisor namespaces and fails t on error.
func hv(t *testing.T, l *lab.Lab, name string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), stepTimeout)
	defer cancel()
	out, err := l.ExecHV(ctx, name, args...)
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

// cli runs `virtbridge ARGS` inside the lab's namespaces, where it reads
// the lab's configuration and mapping store; it returns stdout and the
// exit code.
func cli(t *testing.T, l *lab.Lab, args ...string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), stepTimeout)
	defer cancel()
	out, err := l.ExecHV(ctx, bin(t, "virtbridge"), args...)
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return string(out), ee.ExitCode()
	}
	if err != nil {
		t.Fatal(err)
	}
	return string(out), 0
}

// wantWho checks that `virtbridge who TAP`, run in the lab, names the VM.
// It waits a little: the engine journals a port before it saves the
// mapping store that `who` reads.
func wantWho(t *testing.T, l *lab.Lab, tap string, v *vm, mac, bridge string) {
	t.Helper()
	want := fmt.Sprintf("%s: vm %q (uuid %s) mac %s on bridge %s,", tap, v.name, v.uuid, mac, bridge)
	var out string
	var code int
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if out, code = cli(t, l, "who", tap); code == 0 {
			break
		}
	}
	if code != 0 || !strings.HasPrefix(out, want) {
		t.Errorf("virtbridge who %s: exit %d, %q; want 0 and %q...", tap, code, out, want)
	}
}

// checkTap checks that a tap is a port of bridge and carries the VM's
// alias, as virtbridge sets it.
func checkTap(t *testing.T, l *lab.Lab, tap, bridge string, v *vm) {
	t.Helper()
	link := hv(t, l, "ip", "-d", "link", "show", "dev", tap)
	alias := journal.Alias(v.name, v.uuid)
	if !strings.Contains(link, "master "+bridge+" ") || !strings.Contains(link, "alias "+alias+"\n") {
		t.Errorf("tap %s is not in %s with alias %q:\n%s", tap, bridge, alias, link)
	}
}

// portEntries returns the journal entries of one kind (journal.IDAttached
// or IDDetached) for the VM's NIC with mac, waiting for n of them.
func portEntries(t *testing.T, j *journaltest.Journald, id string, v *vm, mac string, n int) []map[string]string {
	t.Helper()
	return j.WaitEntries(t, n, "MESSAGE_ID="+id, journal.FieldUUID+"="+v.uuid, journal.FieldMAC+"="+mac)
}

// wantPortEntry checks the last journal entry of a kind for a NIC: it
// names the tap, the VM and the bridge.
func wantPortEntry(t *testing.T, j *journaltest.Journald, id string, v *vm, mac, tap, bridge string) {
	t.Helper()
	es := portEntries(t, j, id, v, mac, 1)
	e := es[len(es)-1]
	got := fmt.Sprintf("%s %s %s %s", e[journal.FieldTap], e[journal.FieldVM], e[journal.FieldBridge], e[journal.FieldIdentifier])
	if want := fmt.Sprintf("%s %s %s virtbridge", tap, v.name, bridge); got != want {
		t.Errorf("journal entry %s for %s = %q, want %q: %s", id, mac, got, want, e[journal.FieldMessage])
	}
}

// waitUntil polls cond every 100 ms for at most limit.
func waitUntil(t *testing.T, limit time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		ok, state := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not after %v: %s", what, limit, state)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// daemon is virtbridged running inside a lab.
type daemon struct {
	cmd  *exec.Cmd
	log  string
	done chan error
}

// startDaemon runs bin/virtbridged in the lab's namespaces, where it
// reaches the lab's libvirtd at qemu:///system and acts on the lab's
// links, and stops it by its pid when t ends.
func startDaemon(t *testing.T, l *lab.Lab) *daemon {
	t.Helper()
	d := &daemon{log: filepath.Join(t.TempDir(), "virtbridged.log"), done: make(chan error, 1)}
	logf, err := os.Create(d.log)
	if err != nil {
		t.Fatal(err)
	}
	d.cmd = l.CommandHV(bin(t, "virtbridged"), "--config", "/etc/virtbridge/virtbridge.yaml")
	d.cmd.Stdout, d.cmd.Stderr = logf, logf
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := d.cmd.Start(); err != nil {
		logf.Close()
		t.Fatalf("starting virtbridged: %v", err)
	}
	go func() {
		d.done <- d.cmd.Wait()
		logf.Close()
	}()
	t.Cleanup(func() {
		_ = d.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-d.done:
			if err != nil {
				t.Errorf("virtbridged exited with %v:\n%s", err, d.logText())
			}
		case <-time.After(10 * time.Second):
			_ = d.cmd.Process.Kill()
			<-d.done
			t.Errorf("virtbridged still running 10 s after SIGTERM:\n%s", d.logText())
		}
		if t.Failed() {
			t.Logf("virtbridged log:\n%s", d.logText())
		}
	})
	return d
}

func (d *daemon) logText() string {
	b, _ := os.ReadFile(d.log)
	return string(b)
}

// waitLog waits until the daemon's log holds want at least n times.
func (d *daemon) waitLog(t *testing.T, want string, n int, limit time.Duration) {
	t.Helper()
	waitUntil(t, limit, fmt.Sprintf("virtbridged logging %q %d times", want, n), func() (bool, string) {
		select {
		case err := <-d.done:
			d.done <- err
			t.Fatalf("virtbridged exited: %v:\n%s", err, d.logText())
		default:
		}
		s := d.logText()
		return strings.Count(s, want) >= n, s
	})
}
