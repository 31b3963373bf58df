package eventd

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netns"

	"github.com/virtbridge/virtbridge/internal/events"
	"github.com/virtbridge/virtbridge/internal/testenv/lab"
)

// TestEventsFromLab runs the daemon against a real libvirtd and checks what
// reaches the Handler for a VM start, a NIC hot-plug and unplug, a link
// deleted behind its back, and a VM stop.
func TestEventsFromLab(t *testing.T) {
	l, uri := startLab(t)
	for _, br := range []string{"br-a", "br-b"} {
		l.RunHV(t, "ip", "link", "add", br, "type", "bridge")
		l.RunHV(t, "ip", "link", "set", br, "up")
	}
	hvns, err := netns.GetFromName(l.HVNetns())
	if err != nil {
		t.Fatal(err)
	}
	defer hvns.Close()
	rec := newRecorder()
	runDaemon(t, Options{URI: uri, Handler: rec, Log: testLog(t), LinkNetns: &hvns,
		FirewallRecheck: time.Second, Notify: rec.notify})

	first, _ := rec.waitFor(t, 0, 15*time.Second, "first reconcile", isReconcile)
	if got := first.String(); got != "reconcile []" {
		t.Errorf("first call = %s, want reconcile []", got)
	}
	uuid := checkStarted(t, l, rec)
	checkHotplug(t, l, rec, uuid)
	checkDrift(t, l, rec)

	// Stop: domain and UUID, no NICs.
	n := rec.len()
	l.RunVirsh(t, "destroy", "vm1")
	c, _ := rec.waitFor(t, n, 10*time.Second, "handle stopped", isHandle(events.OpStopped, "vm1"))
	if got := c.String(); got != "handle stopped/destroyed vm1 []" || c.ev.UUID != uuid {
		t.Errorf("stopped event = %s (uuid %s), want handle stopped/destroyed vm1 [] (uuid %s)", got, c.ev.UUID, uuid)
	}

	if !slices.ContainsFunc(rec.snapshot(), func(c call) bool { return c.kind == "firewall" }) {
		t.Errorf("no CheckFirewall in %v with a 1 s recheck", time.Since(first.at))
	}
	rec.checkReady(t)
}

// checkStarted starts vm1: its started event holds every NIC, with the tap
// libvirt made. It returns the VM's UUID.
func checkStarted(t *testing.T, l *lab.Lab, rec *recorder) string {
	t.Helper()
	n := rec.len()
	begin := time.Now()
	startVM(t, l, "vm1", "52:54:00:ee:00:01", "br-a")
	started := time.Now()
	c, _ := rec.waitFor(t, n, 15*time.Second, "handle started", isHandle(events.OpStarted, "vm1"))
	t.Logf("start: Handle %v after virsh define+start began (which took %v)",
		c.at.Sub(begin).Round(time.Millisecond), started.Sub(begin).Round(time.Millisecond))
	uuid := strings.TrimSpace(l.RunVirsh(t, "domuuid", "vm1"))
	if c.ev.Source != events.SourceEventd || c.ev.SubOp != "booted" || c.ev.UUID != uuid {
		t.Errorf("started event: source %q subop %q uuid %q, want eventd, booted, %s", c.ev.Source, c.ev.SubOp, c.ev.UUID, uuid)
	}
	want := ifaces(t, l, "vm1")["52:54:00:ee:00:01"]
	if len(c.ev.NICs) != 1 || nicLine(c.ev.NICs[0]) != want || c.ev.NICs[0].Alias != "net0" || c.ev.NICs[0].Type != "bridge" {
		t.Errorf("started NICs = %s, want [net0 %s] (virsh domiflist)", nicsText(c.ev.NICs), want)
	}
	return uuid
}

// checkHotplug plugs a NIC into vm1 and pulls it out again: device-added
// carries the new NIC only, device-removed the NICs left, both the alias.
func checkHotplug(t *testing.T, l *lab.Lab, rec *recorder, uuid string) {
	t.Helper()
	const mac = "52:54:00:ee:00:09"
	n := rec.len()
	begin := time.Now()
	l.RunVirsh(t, "attach-interface", "vm1", "--type", "bridge", "--source", "br-b", "--model", "e1000", "--mac", mac)
	attached := time.Now()
	c, _ := rec.waitFor(t, n, 10*time.Second, "handle device-added", isHandle(events.OpDeviceAdded, "vm1"))
	t.Logf("hot-plug: virsh attach-interface took %v; Handle %v after it returned, %v after it began",
		attached.Sub(begin).Round(time.Millisecond), c.at.Sub(attached).Round(time.Millisecond), c.at.Sub(begin).Round(time.Millisecond))
	want := ifaces(t, l, "vm1")[mac]
	if want == "" || !strings.Contains(want, " br-b ") {
		t.Fatalf("virsh domiflist has no %s on br-b: %v", mac, ifaces(t, l, "vm1"))
	}
	if len(c.ev.NICs) != 1 || nicLine(c.ev.NICs[0]) != want || c.ev.NICs[0].Alias != "net1" || c.ev.Extra != "net1" || c.ev.UUID != uuid {
		t.Errorf("device-added event = %s, want alias=net1 [net1 %s] of %s", c, want, uuid)
	}

	n = rec.len()
	begin = time.Now()
	l.RunVirsh(t, "detach-interface", "vm1", "--type", "bridge", "--mac", mac)
	c, _ = rec.waitFor(t, n, 10*time.Second, "handle device-removed", isHandle(events.OpDeviceRemoved, "vm1"))
	t.Logf("unplug: Handle %v after virsh detach-interface began", c.at.Sub(begin).Round(time.Millisecond))
	left := ifaces(t, l, "vm1")
	if _, ok := left[mac]; ok || len(left) != 1 {
		t.Fatalf("virsh domiflist after the device-removed event: %v, want only 52:54:00:ee:00:01", left)
	}
	if len(c.ev.NICs) != 1 || nicLine(c.ev.NICs[0]) != left["52:54:00:ee:00:01"] || c.ev.Extra != "net1" || c.ev.UUID != uuid {
		t.Errorf("device-removed event = %s (uuid %s), want alias=net1 with the NIC left, [net0 %s] (uuid %s)",
			c, c.ev.UUID, left["52:54:00:ee:00:01"], uuid)
	}
}

// checkDrift deletes a bridge behind the daemon's back: a Reconcile of the
// running vm1 follows, after the debounce.
func checkDrift(t *testing.T, l *lab.Lab, rec *recorder) {
	t.Helper()
	rec.settle(t, time.Second, 15*time.Second)
	n := rec.len()
	deleted := time.Now()
	l.RunHV(t, "ip", "link", "del", "br-b")
	c, _ := rec.waitFor(t, n, 5*time.Second, "reconcile after a link deletion", isReconcile)
	took := c.at.Sub(deleted)
	t.Logf("drift: Reconcile %v after the bridge was deleted (debounce %v)", took.Round(time.Millisecond), DefaultDebounce)
	if took < DefaultDebounce {
		t.Errorf("drift Reconcile %v after the change, before the %v debounce", took, DefaultDebounce)
	}
	if len(c.running) != 1 || c.running[0].Domain != "vm1" || c.running[0].Op != events.OpReconnect {
		t.Errorf("drift reconcile = %s, want vm1 with op reconnect", c)
	}
}

// TestReconnectAfterLibvirtdRestarts restarts libvirtd three times under
// the daemon: each time it must reconnect and reconcile, see a NIC
// hot-plugged right after the restart (by its event, or by the reconcile if
// the event came before the reconnect), and get device events again.
func TestReconnectAfterLibvirtdRestarts(t *testing.T) {
	l, uri := startLab(t)
	l.RunHV(t, "ip", "link", "add", "br-a", "type", "bridge")
	startVM(t, l, "vm2", "52:54:00:ee:02:01", "br-a")
	rec := newRecorder()
	runDaemon(t, Options{URI: uri, Handler: rec, Log: testLog(t), NoLinkWatch: true, Notify: rec.notify})

	c, _ := rec.waitFor(t, 0, 15*time.Second, "first reconcile", isReconcile)
	want := ifaces(t, l, "vm2")["52:54:00:ee:02:01"]
	if len(c.running) != 1 || len(c.running[0].NICs) != 1 || nicLine(c.running[0].NICs[0]) != want {
		t.Fatalf("first reconcile = %s, want vm2 with [net0 %s]", c, want)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	for i := range 3 {
		n := rec.len()
		begin := time.Now()
		if err := l.RestartLibvirtd(ctx); err != nil {
			t.Fatal(err)
		}
		restarted := time.Now()
		early := fmt.Sprintf("52:54:00:ee:02:%d1", i+2)
		l.RunVirsh(t, "attach-interface", "vm2", "--type", "bridge", "--source", "br-a", "--model", "e1000", "--mac", early)

		rc, ri := rec.waitFor(t, n, 30*time.Second, fmt.Sprintf("reconcile after restart %d", i+1), isReconcile)
		t.Logf("restart %d: libvirtd restart took %v; Reconcile %v after it returned",
			i+1, restarted.Sub(begin).Round(time.Millisecond), rc.at.Sub(restarted).Round(time.Millisecond))
		seen, _ := rec.waitFor(t, n, 10*time.Second, "the NIC hot-plugged right after the restart", func(c call) bool {
			return c.kind == "handle" && c.ev.Op == events.OpDeviceAdded && len(c.ev.NICs) == 1 && c.ev.NICs[0].MAC == early ||
				c.kind == "reconcile" && strings.Contains(c.String(), early)
		})
		t.Logf("restart %d: NIC %s plugged before the reconnect was seen by: %s", i+1, early, seen.kind)

		// The callbacks are registered on the new connection.
		late := fmt.Sprintf("52:54:00:ee:02:%d2", i+2)
		l.RunVirsh(t, "attach-interface", "vm2", "--type", "bridge", "--source", "br-a", "--model", "e1000", "--mac", late)
		c, _ := rec.waitFor(t, ri, 10*time.Second, "device-added after the reconnect", func(c call) bool {
			return c.kind == "handle" && c.ev.Op == events.OpDeviceAdded && len(c.ev.NICs) == 1 && c.ev.NICs[0].MAC == late
		})
		if want := ifaces(t, l, "vm2")[late]; nicLine(c.ev.NICs[0]) != want {
			t.Errorf("device-added NIC %s, want %s", nicLine(c.ev.NICs[0]), want)
		}
		// Free the PCIe ports for the next round.
		for _, mac := range []string{early, late} {
			m := rec.len()
			l.RunVirsh(t, "detach-interface", "vm2", "--type", "bridge", "--mac", mac)
			rec.waitFor(t, m, 10*time.Second, "device-removed", isHandle(events.OpDeviceRemoved, "vm2"))
		}
	}
	rec.checkReady(t)
}

// TestOnce reconciles a lab with one running VM once, in-process and as
// `virtbridged --once`.
func TestOnce(t *testing.T) {
	l, uri := startLab(t)
	l.RunHV(t, "ip", "link", "add", "br-a", "type", "bridge")
	startVM(t, l, "vm3", "52:54:00:ee:03:01", "br-a")
	want := fmt.Sprintf("reconcile [vm3/reconnect [net0 52:54:00:ee:03:01 bridge br-a %s e1000]]",
		strings.Fields(ifaces(t, l, "vm3")["52:54:00:ee:03:01"])[1])

	rec := newRecorder()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := Once(ctx, Options{URI: uri, Handler: rec, Log: testLog(t)}); err != nil {
		t.Fatalf("Once: %v", err)
	}
	var got []string
	for _, c := range rec.snapshot() {
		got = append(got, c.String())
	}
	if len(got) != 1 || got[0] != want {
		t.Errorf("Once made calls %q, want exactly [%s]", got, want)
	}

	code, stdout, stderr := runHelper(t, []string{"--once", "--uri", uri, "--config", writeConfig(t, "bridges: {}\n")}, nil)
	if code != 0 || stdout != "reconcile vm3\nreleased\n" {
		t.Errorf("virtbridged --once: exit %d, stdout %q, want 0 and one reconcile of vm3\nstderr:\n%s", code, stdout, stderr)
	}
}
