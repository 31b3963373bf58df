package eventd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"libvirt.org/go/libvirtxml"

	"github.com/virtbridge/virtbridge/internal/events"
	"github.com/virtbridge/virtbridge/internal/testenv/lab"
)

// call is one call the daemon made on a recorder.
type call struct {
	kind    string // "handle", "reconcile", "firewall", "host start|reload|reconcile", "reload"
	ev      events.Event
	running []events.Event
	at      time.Time
}

// String renders a call for comparisons and logs, e.g.
// "handle device-added/ vm1 alias=net1 [net1 52:54:00:aa:00:09 bridge br-b vnet1 e1000]".
func (c call) String() string {
	switch c.kind {
	case "handle":
		extra := ""
		if c.ev.Extra != "" {
			extra = " alias=" + c.ev.Extra
		}
		return fmt.Sprintf("handle %s/%s %s%s %s", c.ev.Op, c.ev.SubOp, c.ev.Domain, extra, nicsText(c.ev.NICs))
	case "reconcile":
		var parts []string
		for _, ev := range c.running {
			parts = append(parts, fmt.Sprintf("%s/%s %s", ev.Domain, ev.Op, nicsText(ev.NICs)))
		}
		return "reconcile [" + strings.Join(parts, "; ") + "]"
	}
	return c.kind
}

func nicsText(nics []events.NIC) string {
	var parts []string
	for _, n := range nics {
		parts = append(parts, strings.Join(strings.Fields(fmt.Sprintf("%s %s %s %s %s %s", n.Alias, n.MAC, n.Type, n.Bridge, n.Tap, n.Model)), " "))
	}
	return "[" + strings.Join(parts, ", ") + "]"
}

// recorder is a Handler that keeps every call. It is safe for concurrent
// use, and checks that the daemon never calls it concurrently.
type recorder struct {
	mu      sync.Mutex
	calls   []call
	wake    chan struct{} // closed and replaced on every call
	busy    bool
	overlap bool
	// failReconciles makes that many Reconcile calls fail; failHosts
	// EnsureHost calls, failReloads Reload calls.
	failReconciles, failHosts, failReloads int
	// refuseHosts: every EnsureHost returns a *Refused.
	refuseHosts bool
	states      []stateNote // what the daemon told the service manager
}

// stateNote is one sd_notify message and when it was sent.
type stateNote struct {
	state string
	at    time.Time
}

func (s stateNote) String() string { return fmt.Sprintf("%s %q", s.at.Format("15:04:05.000"), s.state) }

// notify is an Options.Notify that records states.
func (r *recorder) notify(state string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.states = append(r.states, stateNote{state, time.Now()})
	return nil
}

// checkReady checks that the daemon said READY=1 exactly once, after the
// first EnsureHost and before the first Reconcile: libvirtd, ordered after
// the daemon, may be waiting for it.
func (r *recorder) checkReady(t *testing.T) {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	var ready []time.Time
	for _, s := range r.states {
		if slices.Contains(strings.Split(s.state, "\n"), "READY=1") {
			ready = append(ready, s.at)
		}
	}
	h := slices.IndexFunc(r.calls, isHost)
	i := slices.IndexFunc(r.calls, isReconcile)
	switch {
	case len(ready) != 1:
		t.Errorf("READY=1 sent %d times, want once", len(ready))
	case h < 0 || ready[0].Before(r.calls[h].at):
		t.Errorf("READY=1 sent before the host was made to match the configuration (EnsureHost)")
	case i >= 0 && ready[0].After(r.calls[i].at):
		t.Errorf("READY=1 waited for libvirt (the first reconcile)")
	}
	if r.overlap {
		t.Errorf("the daemon called the Handler concurrently")
	}
}

// settle waits until the Handler has had no call but CheckFirewall for
// quiet, so that what follows is not mixed up with earlier events.
func (r *recorder) settle(t *testing.T, quiet, limit time.Duration) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		last := time.Time{}
		for _, c := range r.snapshot() {
			if c.kind != "firewall" {
				last = c.at
			}
		}
		if time.Since(last) >= quiet {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("the Handler did not get quiet for %v within %v", quiet, limit)
}

var _ Handler = (*recorder)(nil)

func newRecorder() *recorder { return &recorder{wake: make(chan struct{})} }

func (r *recorder) add(c call) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	c.at = time.Now()
	r.calls = append(r.calls, c)
	close(r.wake)
	r.wake = make(chan struct{})
	if c.kind == "reconcile" && r.failReconciles > 0 {
		r.failReconciles--
		return errors.New("reconcile failed on purpose")
	}
	if isHost(c) && r.failHosts > 0 {
		r.failHosts--
		return errors.New("host failed on purpose")
	}
	if isHost(c) && r.refuseHosts {
		return &Refused{Err: errors.New(`making bridge "br0": refused on purpose`)}
	}
	if c.kind == "reload" && r.failReloads > 0 {
		r.failReloads--
		return errors.New("c.yaml:3: reload failed on purpose")
	}
	return nil
}

func (r *recorder) enter() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.busy {
		r.overlap = true
	}
	r.busy = true
}

func (r *recorder) leave() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.busy = false
}

func (r *recorder) Handle(_ context.Context, ev events.Event) error {
	r.enter()
	defer r.leave()
	return r.add(call{kind: "handle", ev: ev})
}

func (r *recorder) Reconcile(_ context.Context, running []events.Event, _ time.Time) error {
	r.enter()
	defer r.leave()
	return r.add(call{kind: "reconcile", running: slices.Clone(running)})
}

func (r *recorder) EnsureHost(_ context.Context, op string) error {
	r.enter()
	defer r.leave()
	return r.add(call{kind: "host " + op})
}

func (r *recorder) Reload(context.Context) error {
	r.enter()
	defer r.leave()
	return r.add(call{kind: "reload"})
}

func (r *recorder) CheckFirewall(context.Context) error {
	r.enter()
	defer r.leave()
	return r.add(call{kind: "firewall"})
}

// snapshot returns the calls so far.
func (r *recorder) snapshot() []call {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.calls)
}

// len returns the number of calls so far.
func (r *recorder) len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.calls)
}

// waitFor returns the first call at index >= from that matches, and its
// index, waiting up to limit. It fails t when none comes.
func (r *recorder) waitFor(t testing.TB, from int, limit time.Duration, what string, match func(call) bool) (call, int) {
	t.Helper()
	c, i, ok := r.find(from, limit, match)
	if !ok {
		var b strings.Builder
		for j, c := range r.snapshot() {
			fmt.Fprintf(&b, "  %d %s %s\n", j, c.at.Format("15:04:05.000"), c)
		}
		t.Fatalf("no %s within %v after call %d; calls:\n%s", what, limit, from, b.String())
	}
	return c, i
}

func (r *recorder) find(from int, limit time.Duration, match func(call) bool) (call, int, bool) {
	deadline := time.After(limit)
	for {
		r.mu.Lock()
		for i := from; i < len(r.calls); i++ {
			if match(r.calls[i]) {
				c := r.calls[i]
				r.mu.Unlock()
				return c, i, true
			}
		}
		from = max(from, len(r.calls))
		wake := r.wake
		r.mu.Unlock()
		select {
		case <-wake:
		case <-deadline:
			return call{}, 0, false
		}
	}
}

func isHandle(op events.Op, domain string) func(call) bool {
	return func(c call) bool { return c.kind == "handle" && c.ev.Op == op && c.ev.Domain == domain }
}

func isReconcile(c call) bool { return c.kind == "reconcile" }

func isHost(c call) bool { return strings.HasPrefix(c.kind, "host ") }

// testLog returns a logger writing to t.Log.
func testLog(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// labSocket returns the host path of the lab's libvirtd socket. libvirtd
// runs in the lab's mount namespace, where /run/libvirt is a private tmpfs
// that the host cannot see; /proc/PID/root of a process in that namespace
// reaches it. libvirtd's own pid changes on every restart, so a `sleep`
// started here with nsenter holds a stable path for the lab's lifetime.
// The holder is killed by its pid when t ends.
func labSocket(t testing.TB, l *lab.Lab) string {
	t.Helper()
	holder := exec.Command("nsenter", "-t", fmt.Sprint(l.LibvirtdPID()), "-m", "--", "sleep", "infinity")
	if err := holder.Start(); err != nil {
		t.Fatalf("starting namespace holder: %v", err)
	}
	t.Cleanup(func() {
		_ = holder.Process.Kill()
		_ = holder.Wait()
	})
	sock := fmt.Sprintf("/proc/%d/root/run/libvirt/libvirt-sock", holder.Process.Pid)
	// Until nsenter has execed sleep, /proc/PID/root is the host's.
	for deadline := time.Now().Add(5 * time.Second); ; {
		fi, err := os.Stat(sock)
		if err == nil && fi.Mode()&os.ModeSocket != 0 {
			return sock
		}
		if time.Now().After(deadline) {
			t.Fatalf("lab's libvirtd socket not reachable at %s: %v", sock, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// socketURI is the URI that reaches libvirtd through sock.
func socketURI(sock string) string { return "qemu:///system?socket=" + sock }

// startLab starts a lab for t (skipping when the machine cannot, or with
// -short) and returns it with the URI of its libvirtd.
func startLab(t *testing.T) (*lab.Lab, string) {
	t.Helper()
	if testing.Short() {
		t.Skip("skipping: runs a real libvirtd (-short)")
	}
	lab.SkipIfUnavailable(t)
	l := lab.ForTest(t, lab.Options{})
	return l, socketURI(labSocket(t, l))
}

// runDaemon runs Run in the background until t ends (or the returned stop
// is called) and fails t when Run returns an error or takes more than 2 s
// to stop.
func runDaemon(t *testing.T, opts Options) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Run(ctx, opts) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			begin := time.Now()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Run: %v", err)
				}
				t.Logf("daemon stopped in %v", time.Since(begin).Round(time.Millisecond))
			case <-time.After(2 * time.Second):
				t.Errorf("Run still running 2 s after its context ended")
				<-done // never log after t has ended
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// hotplugXML renders a one-NIC VM whose NICs can be unplugged without a
// guest OS. On the "pc" machine (lab.DomainXML) PCI unplug goes through
// ACPI and waits for the guest to eject the device, which a disk-less VM
// never does: `virsh detach-interface` waits 5 s, says "detached
// successfully", and no device-removed event ever comes. On q35 with ACPI
// hotplug turned off, a hot-plugged device sits in a powered-off PCIe root
// port (no guest driver powered it on), and QEMU unplugs it at once.
func hotplugXML(t *testing.T, name, mac, bridge string) string {
	t.Helper()
	x, err := lab.DomainXML(lab.VM{Name: name, MAC: mac, Bridges: []string{bridge}})
	if err != nil {
		t.Fatal(err)
	}
	var dom libvirtxml.Domain
	if err := dom.Unmarshal(x); err != nil {
		t.Fatal(err)
	}
	dom.OS.Type.Machine = "q35"
	zero := uint(0)
	dom.Devices.Controllers = []libvirtxml.DomainController{{Type: "pci", Index: &zero, Model: "pcie-root"}}
	for range 6 { // ports for the NIC, the balloon and hot-plugged NICs
		dom.Devices.Controllers = append(dom.Devices.Controllers, libvirtxml.DomainController{Type: "pci", Model: "pcie-root-port"})
	}
	dom.QEMUCommandline = &libvirtxml.DomainQEMUCommandline{Args: []libvirtxml.DomainQEMUCommandlineArg{
		{Value: "-global"}, {Value: "ICH9-LPC.acpi-pci-hotplug-with-bridge-support=off"},
	}}
	out, err := dom.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// startVM defines and starts a one-NIC VM on bridge (see hotplugXML) and
// registers its removal. TCG VMs are CPU-heavy: tests destroy them as soon
// as they can.
func startVM(t *testing.T, l *lab.Lab, name, mac, bridge string) {
	t.Helper()
	l.DefineForTest(t, name, hotplugXML(t, name, mac, bridge))
	l.RunVirsh(t, "start", name)
}

// ifaces returns `virsh domiflist` of a domain as "mac tap bridge model"
// lines keyed by MAC: what libvirt itself says, to check events against.
func ifaces(t *testing.T, l *lab.Lab, domain string) map[string]string {
	t.Helper()
	out := l.RunVirsh(t, "domiflist", domain)
	m := map[string]string{}
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		// Interface  Type  Source  Model  MAC
		if len(f) == 5 && strings.Count(f[4], ":") == 5 {
			m[f[4]] = fmt.Sprintf("%s %s %s %s", f[4], f[0], f[2], f[3])
		}
	}
	return m
}

// nicLine renders an event NIC like ifaces does.
func nicLine(n events.NIC) string { return fmt.Sprintf("%s %s %s %s", n.MAC, n.Tap, n.Bridge, n.Model) }

// killPID sends sig to a process we started, by its pid.
func killPID(t *testing.T, pid int, sig syscall.Signal) {
	t.Helper()
	if err := syscall.Kill(pid, sig); err != nil {
		t.Fatalf("signalling pid %d: %v", pid, err)
	}
}

// tempSocketDir returns a short directory for unix sockets (their paths
// are limited to 107 bytes, which t.TempDir can exceed).
func tempSocketDir(t *testing.T) string {
	d, err := os.MkdirTemp("", "vbed")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return filepath.Clean(d)
}

// jsonText renders v as JSON, for comparing events as text.
func jsonText(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
