package main

import (
	"fmt"
	"os"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/virtbridge/virtbridge/internal/testenv/lab"
)

// atStartConfig manages br-a (uplink upa0) and br-b (uplink upb0), made at
// start, and br-c, made on demand only.
const atStartConfig = `bridges:
  br-a:
    uplink: upa0
  br-b:
    uplink: upb0
  br-c:
    create: on_demand
daemon:
  firewall_recheck: 2s
`

// TestBridgesAtStart runs the daemon in a lab with no hook and no bridge:
// before READY=1 it must make both at_start bridges, uplinks enslaved and
// the address moved, journaled as op start, and leave the on_demand one
// alone. A bridge no VM uses, deleted, is made again. A VM defined on br-a
// then starts, and a NIC hot-plugged onto br-b, which no VM used, is wired
// and journaled: no bridge is made by the test. Then reloads: a bridge
// added to the configuration appears on SIGHUP (between RELOADING=1 and
// READY=1); an invalid configuration is refused with its file:line error in
// the log, and the daemon runs on with the configuration before.
func TestBridgesAtStart(t *testing.T) {
	l, j := startLab(t)
	const cfgPath = "/etc/virtbridge/at-start.yaml"
	writeLabConfig(t, l, cfgPath, atStartConfig)
	n := listenNotify(t)
	begin := time.Now()
	d := startDaemonWith(t, l, n, cfgPath)
	made := "br-a bridge up alias=managed by virtbridge addrs=[10.78.0.2/24]\nupa0 veth up master=br-a\nbr-b bridge up alias=managed by virtbridge\nupb0 veth up master=br-b\nbr-c missing"
	took := waitWiring(t, l, 30*time.Second, made, "br-a", "upa0", "br-b", "upb0", "br-c")
	ready, readyIdx := n.wait(t, 0, "READY=1", 30*time.Second)
	t.Logf("both bridges made %v after the daemon started; READY=1 after %v",
		took.Round(time.Millisecond), ready.at.Sub(begin).Round(time.Millisecond))
	if got := wiring(t, l, "br-a", "upa0", "br-b", "upb0", "br-c"); got != made {
		t.Errorf("at READY=1:\n%s\nwant:\n%s", got, made)
	}
	pid := d.cmd.Process.Pid
	syncJournal(t, j)
	changes, _ := hostChanges(t, j, pid, time.Time{})
	for _, want := range []string{"bridge-created br-a op=start", "uplink-enslaved upa0 op=start",
		"address-moved 10.78.0.2/24 op=start", "bridge-created br-b op=start", "uplink-enslaved upb0 op=start"} {
		if !slices.Contains(changes, want) {
			t.Errorf("no %q among the journaled host changes:\n  %s", want, strings.Join(changes, "\n  "))
		}
	}

	// Drift: br-b, used by no VM, deleted.
	n.waitPrefix(t, readyIdx, "STATUS=connected to qemu:///system, 0 running domains reconciled at ", 30*time.Second)
	l.RunHV(t, "ip", "link", "del", "br-b")
	took = waitWiring(t, l, 20*time.Second, "br-b bridge up alias=managed by virtbridge\nupb0 veth up master=br-b", "br-b", "upb0")
	t.Logf("br-b deleted: made again %v later", took.Round(time.Millisecond))

	const mac1, mac2 = "52:54:00:ed:08:01", "52:54:00:ed:08:02"
	v := startVM(t, l, "vm8", mac1, "br-a")
	tap := tapOf(t, l, v.name, mac1)
	waitRecordOf(t, l, j, v, 10*time.Second,
		fmt.Sprintf("attached vm=vm8 tap=%s mac=%s bridge=br-a op=started source=eventd", tap, mac1),
		fmt.Sprintf("attached vm=vm8 tap=%s mac=%s bridge=br-a op=reconcile source=eventd", tap, mac1))
	hotplug(t, l, j, v, mac2, "br-b", "upb0")

	reloadAddsBridge(t, l, n, d, cfgPath)
	reloadRefused(t, l, n, d, cfgPath)
	if got := wiring(t, l, "br-c"); got != "br-c missing" {
		t.Errorf("on_demand bridge: %s, want it never made without a VM on it", got)
	}
	stopDaemon(t, d, n)
}

// reloadAddsBridge adds br-d to the configuration: on SIGHUP the daemon
// says RELOADING=1, makes it, and says READY=1.
func reloadAddsBridge(t *testing.T, l *lab.Lab, n *notifier, d *daemonProc, cfgPath string) {
	t.Helper()
	writeLabConfig(t, l, cfgPath, strings.Replace(atStartConfig, "daemon:", "  br-d: {}\ndaemon:", 1))
	from := n.len()
	sent := time.Now()
	signal(t, d, syscall.SIGHUP)
	_, i := n.wait(t, from, "RELOADING=1", 10*time.Second)
	took := waitWiring(t, l, 20*time.Second, "br-d bridge up alias=managed by virtbridge", "br-d")
	n.wait(t, i, "READY=1", 10*time.Second)
	t.Logf("reload: br-d there %v after RELOADING=1, READY=1 again %v after SIGHUP", took.Round(time.Millisecond), time.Since(sent).Round(time.Millisecond))
}

// reloadRefused writes an invalid configuration (without br-d, with a bad
// MTU for br-e): SIGHUP must log its file:line error, keep the daemon
// running with the configuration in force, and make nothing of the new
// one; br-d, deleted, is made again: the old configuration still holds.
func reloadRefused(t *testing.T, l *lab.Lab, n *notifier, d *daemonProc, cfgPath string) {
	t.Helper()
	writeLabConfig(t, l, cfgPath, "bridges:\n  br-a: {uplink: upa0}\n  br-e:\n    mtu: huge\n")
	from := n.len()
	signal(t, d, syscall.SIGHUP)
	n.wait(t, from, "RELOADING=1", 10*time.Second)
	n.waitPrefix(t, from, "STATUS=reload refused, running configuration kept: "+cfgPath+":4: mtu must be a whole number", 10*time.Second)
	n.wait(t, from, "READY=1", 10*time.Second)
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(d.output(), cfgPath+":4: mtu must be a whole number") {
		if time.Now().After(deadline) {
			t.Fatalf("the refused reload is not logged with its file:line error; output:\n%s", d.output())
		}
		time.Sleep(50 * time.Millisecond)
	}
	select {
	case <-d.done:
		t.Fatalf("virtbridged exited after an invalid reload: %v", d.state)
	default:
	}
	l.RunHV(t, "ip", "link", "del", "br-d")
	took := waitWiring(t, l, 20*time.Second, "br-d bridge up alias=managed by virtbridge\nbr-e missing", "br-d", "br-e")
	t.Logf("after the refused reload, br-d deleted: made again %v later, by the configuration kept", took.Round(time.Millisecond))
}

// writeLabConfig writes a configuration file inside the lab at path.
func writeLabConfig(t *testing.T, l *lab.Lab, path, content string) {
	t.Helper()
	p, err := l.HostPath(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// signal sends sig to the daemon by its pid.
func signal(t *testing.T, d *daemonProc, sig syscall.Signal) {
	t.Helper()
	if err := syscall.Kill(d.cmd.Process.Pid, sig); err != nil {
		t.Fatalf("signalling virtbridged (pid %d): %v", d.cmd.Process.Pid, err)
	}
}
