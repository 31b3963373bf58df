package main

// These tests run the real virtbridged binary, with the real engine,
// against a real libvirtd with real (paused, TCG) VMs in a lab
// (internal/testenv/lab) that has no qemu hook installed: whatever is wired, the
// daemon wired. Port records are read back from a real journald
// (internal/testenv/journaltest), where the daemon's journal writer sends them.

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/virtbridge/virtbridge/internal/testenv/journaltest"
	"github.com/virtbridge/virtbridge/internal/testenv/lab"
)

// checkMetrics scrapes the daemon of TestWiresRunningVMAndHotplug: both
// ports of v, both bridges healthy (br-b holds no address), connected to
// libvirtd, one hot-plug timed; then libvirtd restarts and the daemon
// must count the reconnect and be connected again.
func checkMetrics(t *testing.T, l *lab.Lab, n *notifier, v vm, tap1, mac1, tap2, mac2 string) {
	t.Helper()
	begin := time.Now()
	got := scrape(t, l)
	t.Logf("scrape: %d bytes in %v", len(got), time.Since(begin).Round(time.Microsecond))
	want := strings.Join([]string{
		"virtbridge_bridge_host_address{bridge=\"br-a\"} 1",
		"virtbridge_bridge_host_address{bridge=\"br-b\"} 0",
		"virtbridge_bridge_up{bridge=\"br-a\"} 1",
		"virtbridge_bridge_up{bridge=\"br-b\"} 1",
		"virtbridge_bridge_uplink_enslaved{bridge=\"br-a\",uplink=\"upa0\"} 1",
		"virtbridge_bridge_uplink_enslaved{bridge=\"br-b\",uplink=\"upb0\"} 1",
		"virtbridge_hotplug_wired_seconds_count 1",
		"virtbridge_libvirt_connected 1",
		"virtbridge_libvirt_reconnects_total 0",
		portInfo(v, tap1, mac1, "br-a"),
		portInfo(v, tap2, mac2, "br-b"),
		"virtbridge_refusals_total{reason=\"host\"} 0",
		"virtbridge_refusals_total{reason=\"policy\"} 0",
	}, "\n")
	prefixes := []string{"virtbridge_bridge_", "virtbridge_hotplug_wired_seconds_count", "virtbridge_libvirt_", "virtbridge_port_info", "virtbridge_refusals_total"}
	if got := series(got, prefixes...); got != want {
		t.Errorf("metrics:\n%s\nwant:\n%s", got, want)
	}
	if !strings.Contains(got, "\nvirtbridge_reconciles_total ") {
		t.Errorf("no virtbridge_reconciles_total in the scrape:\n%s", got)
	}

	from := n.len()
	if err := l.RestartLibvirtd(t.Context()); err != nil {
		t.Fatalf("restarting libvirtd: %v", err)
	}
	n.waitPrefix(t, from, "STATUS=connected to qemu:///system, 1 running domains reconciled at ", 30*time.Second)
	want = "virtbridge_libvirt_connected 1\nvirtbridge_libvirt_reconnects_total 1"
	if got := series(scrape(t, l), "virtbridge_libvirt_"); got != want {
		t.Errorf("after libvirtd restarted:\n%s\nwant:\n%s", got, want)
	}
}

// TestWiresRunningVMAndHotplug starts the daemon after a VM that started
// without hook on a bridge made by hand: before READY=1 it must make both
// configured bridges (br-a adopted, its uplink enslaved and address moved;
// br-b, which no VM uses, created with its uplink) and the firewall, and
// its first reconcile must put the alias on the VM's tap and journal the
// port. Then a NIC hot-plugged onto br-b (which calls no hook) must be
// wired and journaled, with no bridge made by the test; the time from
// `virsh attach-interface` returning to the journal record is logged. The
// daemon pings the 1 s watchdog and stops on SIGTERM with STOPPING=1 and
// exit status 0 within 2 s.
func TestWiresRunningVMAndHotplug(t *testing.T) {
	l, j := startLab(t)
	addBridge(t, l, "br-a")
	const mac1, mac2 = "52:54:00:ed:01:01", "52:54:00:ed:01:02"
	v := startVM(t, l, "vm1", mac1, "br-a")
	tap := tapOf(t, l, v.name, mac1)
	// Without hook libvirt puts the tap into the bare bridge, nothing more.
	unwired := fmt.Sprintf("br-a bridge up\nupa0 veth up addrs=[10.78.0.2/24]\n%s tun up master=br-a\nbr-b missing", tap)
	if got := wiring(t, l, "br-a", "upa0", tap, "br-b"); got != unwired {
		t.Fatalf("before the daemon:\n%s\nwant:\n%s", got, unwired)
	}
	if hasForwardJump(t, l) {
		t.Fatalf("FORWARD jumps to virtbridge's chain before the daemon ran")
	}

	n := listenNotify(t)
	begin := time.Now()
	d := startDaemon(t, l, n)
	ready, readyIdx := n.wait(t, 0, "READY=1", 30*time.Second)
	t.Logf("READY=1 %v after the daemon started", ready.at.Sub(begin).Round(time.Millisecond))
	// READY=1 says the host matches the configuration: both bridges.
	made := "br-a bridge up alias=managed by virtbridge addrs=[10.78.0.2/24]\nupa0 veth up master=br-a\nbr-b bridge up alias=managed by virtbridge\nupb0 veth up master=br-b"
	if got := wiring(t, l, "br-a", "upa0", "br-b", "upb0"); got != made {
		t.Errorf("at READY=1:\n%s\nwant:\n%s", got, made)
	}
	if !hasForwardJump(t, l) {
		t.Errorf("at READY=1 FORWARD has no jump to virtbridge's chain:\n%s", l.RunHV(t, "iptables", "-w", "-S"))
	}
	// Then libvirt: the running VM's tap.
	n.waitPrefix(t, readyIdx, "STATUS=connected to qemu:///system, 1 running domains reconciled at ", 30*time.Second)
	wired := fmt.Sprintf("br-a bridge up alias=managed by virtbridge addrs=[10.78.0.2/24]\nupa0 veth up master=br-a\n%s tun up master=br-a alias=%s", tap, v.alias())
	if got := wiring(t, l, "br-a", "upa0", tap); got != wired {
		t.Errorf("after the first reconcile:\n%s\nwant:\n%s", got, wired)
	}
	waitRecord(t, l, j, v, fmt.Sprintf("attached vm=vm1 tap=%s mac=%s bridge=br-a op=reconcile source=eventd", tap, mac1), 10*time.Second)

	hotplug(t, l, j, v, mac2, "br-b", "upb0")

	// Nothing journaled twice.
	syncJournal(t, j)
	got, _ := portRecords(t, j, v)
	tap2 := tapOf(t, l, v.name, mac2)
	want := []string{
		fmt.Sprintf("attached vm=vm1 tap=%s mac=%s bridge=br-a op=reconcile source=eventd", tap, mac1),
		fmt.Sprintf("attached vm=vm1 tap=%s mac=%s bridge=br-b op=device-added source=eventd", tap2, mac2),
	}
	if !slices.Equal(got, want) {
		t.Errorf("journald records of vm1:\n  %s\nwant:\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}

	checkWatchdog(t, n, ready, readyIdx)
	checkMetrics(t, l, n, v, tap, mac1, tap2, mac2)
	stopDaemon(t, d, n)
	if r := n.times("READY=1"); len(r) != 1 {
		t.Errorf("READY=1 said %d times, want once:\n%s", len(r), n)
	}
}

// hotplug plugs a NIC with mac into the running v on bridge (enslaving
// uplink), which the daemon made: libvirt refuses a NIC on a missing
// bridge before any event. The daemon must set the tap's alias and journal
// the port.
func hotplug(t *testing.T, l *lab.Lab, j *journaltest.Journald, v vm, mac, bridge, uplink string) {
	t.Helper()
	begin := time.Now()
	l.RunVirsh(t, "attach-interface", v.name, "--type", "bridge", "--source", bridge, "--model", "e1000", "--mac", mac, "--live")
	attached := time.Now()
	tap := tapOf(t, l, v.name, mac)
	rec := waitRecord(t, l, j, v, fmt.Sprintf("attached vm=%s tap=%s mac=%s bridge=%s op=device-added source=eventd", v.name, tap, mac, bridge), 10*time.Second)
	// virsh returns after libvirt has sent the event: the record may come
	// first.
	t.Logf("hot-plug: journal record %v after virsh attach-interface began, %v after it returned (it took %v)",
		rec.time(t).Sub(begin).Round(time.Millisecond), rec.time(t).Sub(attached).Round(time.Millisecond),
		attached.Sub(begin).Round(time.Millisecond))
	// The record is written once the host is right.
	want := fmt.Sprintf("%s bridge up alias=managed by virtbridge\n%s veth up master=%s\n%s tun up master=%s alias=%s", bridge, uplink, bridge, tap, bridge, v.alias())
	if got := wiring(t, l, bridge, uplink, tap); got != want {
		t.Errorf("after the hot-plug was journaled:\n%s\nwant:\n%s", got, want)
	}
}

// checkWatchdog waits for 3 WATCHDOG=1 after READY=1 (note ready, at
// index i) and checks that none was more than a second (the WATCHDOG_USEC
// the daemon got) after the one before, from READY=1 to now.
func checkWatchdog(t *testing.T, n *notifier, ready note, i int) {
	t.Helper()
	for range 3 {
		_, i = n.wait(t, i+1, "WATCHDOG=1", 2*time.Second)
	}
	pings := slices.DeleteFunc(n.times("WATCHDOG=1"), func(at time.Time) bool { return at.Before(ready.at) })
	pings = append([]time.Time{ready.at}, append(pings, time.Now())...)
	var gap time.Duration
	for i := 1; i < len(pings); i++ {
		gap = max(gap, pings[i].Sub(pings[i-1]))
	}
	t.Logf("watchdog: %d pings in %v since READY=1, longest gap %v", len(pings)-2, time.Since(ready.at).Round(time.Millisecond), gap.Round(time.Millisecond))
	if gap > time.Second {
		t.Errorf("no WATCHDOG=1 for %v with WATCHDOG_USEC=1000000: systemd would kill the daemon", gap)
	}
}

// stopDaemon sends SIGTERM: the daemon must say STOPPING=1 and exit with
// status 0 within 2 s.
func stopDaemon(t *testing.T, d *daemonProc, n *notifier) {
	t.Helper()
	from := n.len()
	code, took := d.terminate(t)
	t.Logf("SIGTERM: exited with status %d in %v", code, took.Round(time.Millisecond))
	if code != 0 {
		t.Errorf("virtbridged exited with status %d after SIGTERM, want 0:\n%s", code, d.output())
	}
	n.wait(t, from, "STOPPING=1", time.Second)
}

// TestCatchesUpAfterDowntime starts the daemon before three VMs: their
// lifecycle events and the link changes they cause must get them wired and
// journaled. The daemon is then stopped; meanwhile a NIC is hot-plugged
// into one VM, another is destroyed and the third is restarted (libvirt
// gives it a new tap). Started again, the daemon must wire and journal the
// new port, journal the destroyed VM's port as detached, the restarted
// VM's old tap as detached once and its new one as attached, and journal
// nothing twice.
func TestCatchesUpAfterDowntime(t *testing.T) {
	l, j := startLab(t)
	addBridge(t, l, "br-a")
	n := listenNotify(t)
	d := startDaemon(t, l, n)
	n.wait(t, 0, "READY=1", 30*time.Second)

	const mac2, mac3, mac6, macNew = "52:54:00:ed:02:01", "52:54:00:ed:03:01", "52:54:00:ed:06:01", "52:54:00:ed:02:02"
	v2 := startVM(t, l, "vm2", mac2, "br-a")
	v3 := startVM(t, l, "vm3", mac3, "br-a")
	v6 := startVM(t, l, "vm6", mac6, "br-a")
	started := time.Now()
	tap2, tap3, tap6 := tapOf(t, l, v2.name, mac2), tapOf(t, l, v3.name, mac3), tapOf(t, l, v6.name, mac6)
	waitWiring(t, l, 10*time.Second, fmt.Sprintf("br-a bridge up alias=managed by virtbridge addrs=[10.78.0.2/24]\nupa0 veth up master=br-a\n"+
		"%s tun up master=br-a alias=%s\n%s tun up master=br-a alias=%s\n%s tun up master=br-a alias=%s",
		tap2, v2.alias(), tap3, v3.alias(), tap6, v6.alias()),
		"br-a", "upa0", tap2, tap3, tap6)
	t.Logf("VMs started under the daemon: wired %v after virsh start of the last returned", time.Since(started).Round(time.Millisecond))
	// Whichever comes first journals the port: the started event or the
	// reconcile after the taps appeared.
	var before [][]string
	for _, p := range []struct {
		v        vm
		tap, mac string
	}{{v2, tap2, mac2}, {v3, tap3, mac3}, {v6, tap6, mac6}} {
		waitRecordOf(t, l, j, p.v, 10*time.Second,
			fmt.Sprintf("attached vm=%s tap=%s mac=%s bridge=br-a op=started source=eventd", p.v.name, p.tap, p.mac),
			fmt.Sprintf("attached vm=%s tap=%s mac=%s bridge=br-a op=reconcile source=eventd", p.v.name, p.tap, p.mac))
		syncJournal(t, j)
		got, _ := portRecords(t, j, p.v)
		t.Logf("journaled with the daemon running: %q", got)
		if len(got) != 1 {
			t.Errorf("%s has %d records, want one attached record", p.v.name, len(got))
		}
		before = append(before, got)
	}
	stopDaemon(t, d, n)

	l.RunVirsh(t, "attach-interface", v2.name, "--type", "bridge", "--source", "br-a", "--model", "e1000", "--mac", macNew)
	tapNew := tapOf(t, l, v2.name, macNew)
	l.RunVirsh(t, "destroy", v3.name)
	l.RunVirsh(t, "destroy", v6.name)
	l.RunVirsh(t, "start", "--paused", v6.name)
	tap6b := tapOf(t, l, v6.name, mac6)
	if got, want := wiring(t, l, tapNew, tap6b), tapNew+" tun up master=br-a\n"+tap6b+" tun up master=br-a"; got != want {
		t.Fatalf("plugged while the daemon was down:\n%s\nwant:\n%s", got, want)
	}

	from := n.len()
	d = startDaemon(t, l, n)
	n.waitPrefix(t, from, "STATUS=connected to qemu:///system, 2 running domains reconciled at ", 30*time.Second)
	want := fmt.Sprintf("%s tun up master=br-a alias=%s\n%s tun up master=br-a alias=%s\n%s tun up master=br-a alias=%s",
		tap2, v2.alias(), tapNew, v2.alias(), tap6b, v6.alias())
	if got := wiring(t, l, tap2, tapNew, tap6b); got != want {
		t.Errorf("at the first reconcile after the restart:\n%s\nwant:\n%s", got, want)
	}
	checkRecords(t, l, j, v2, append(before[0],
		fmt.Sprintf("attached vm=vm2 tap=%s mac=%s bridge=br-a op=reconcile source=eventd", tapNew, macNew)))
	checkRecords(t, l, j, v3, append(before[1],
		fmt.Sprintf("detached vm=vm3 tap=%s mac=%s bridge=br-a op=reconcile source=eventd", tap3, mac3)))
	checkRecords(t, l, j, v6, append(before[2],
		fmt.Sprintf("detached vm=vm6 tap=%s mac=%s bridge=br-a op=reconcile source=eventd", tap6, mac6),
		fmt.Sprintf("attached vm=vm6 tap=%s mac=%s bridge=br-a op=reconcile source=eventd", tap6b, mac6)))
	stopDaemon(t, d, n)
}

// checkRecords waits until the VM has a journald record like the last of
// want, then checks that its records are exactly want, after a journal
// barrier.
func checkRecords(t *testing.T, l *lab.Lab, j *journaltest.Journald, v vm, want []string) {
	t.Helper()
	waitRecordOf(t, l, j, v, 10*time.Second, want[len(want)-1])
	syncJournal(t, j)
	if got, _ := portRecords(t, j, v); !slices.Equal(got, want) {
		t.Errorf("journald records of %s:\n  %s\nwant:\n  %s", v.name, strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
}

// TestRepairsDrift deletes a managed bridge under a running VM: the daemon
// must re-create it with its uplink and put the VM's tap back. Then it
// deletes virtbridge's jump from FORWARD: the firewall re-check (every 2 s
// here) must restore it.
func TestRepairsDrift(t *testing.T) {
	l, j := startLab(t)
	addBridge(t, l, "br-a")
	const mac = "52:54:00:ed:04:01"
	v := startVM(t, l, "vm4", mac, "br-a")
	tap := tapOf(t, l, v.name, mac)
	n := listenNotify(t)
	d := startDaemon(t, l, n)
	n.waitPrefix(t, 0, "STATUS=connected to qemu:///system, 1 running domains reconciled at ", 30*time.Second)
	wired := fmt.Sprintf("br-a bridge up alias=managed by virtbridge addrs=[10.78.0.2/24]\nupa0 veth up master=br-a\n%s tun up master=br-a alias=%s", tap, v.alias())
	if got := wiring(t, l, "br-a", "upa0", tap); got != wired {
		t.Fatalf("after the first reconcile:\n%s\nwant:\n%s", got, wired)
	}

	pid := d.cmd.Process.Pid
	since := time.Now()
	l.RunHV(t, "ip", "link", "del", "br-a")
	// The host address that moved to the bridge went with it; the daemon
	// cannot know it any more.
	took := waitWiring(t, l, 5*time.Second, fmt.Sprintf("br-a bridge up alias=managed by virtbridge\nupa0 veth up master=br-a\n%s tun up master=br-a alias=%s", tap, v.alias()),
		"br-a", "upa0", tap)
	t.Logf("bridge deleted: re-created with uplink and tap %v later", took.Round(time.Millisecond))
	// A reconcile after the link changes did it, and changed nothing else.
	waitChanges(t, j, pid, since, []string{"bridge-created br-a op=reconcile", "uplink-enslaved upa0 op=reconcile", "port-attached " + tap + " op=reconcile"})

	// Let the reconcile that the repair's own link changes cause pass, so
	// that only the firewall re-check can restore the jump.
	time.Sleep(time.Second)
	if !hasForwardJump(t, l) {
		t.Fatalf("FORWARD has no jump to virtbridge's chain:\n%s", l.RunHV(t, "iptables", "-w", "-S"))
	}
	since = time.Now()
	l.RunHV(t, "iptables", "-w", "-D", "FORWARD", "-m", "comment", "--comment", "virtbridge", "-j", "VIRTBRIDGE-FWD")
	deleted := time.Now()
	for !hasForwardJump(t, l) {
		if time.Since(deleted) > 4*time.Second {
			t.Fatalf("jump to virtbridge's chain not restored 4 s after its deletion, with firewall_recheck: 2s:\n%s",
				l.RunHV(t, "iptables", "-w", "-S"))
		}
		time.Sleep(50 * time.Millisecond)
	}
	_, recs := waitChanges(t, j, pid, since, []string{"rule-added " + iptablesVariant(t, l) + " filter FORWARD op=firewall-check"})
	t.Logf("FORWARD jump deleted: restored %v later by the firewall re-check (every 2 s)",
		recs[0].time(t).Sub(deleted).Round(time.Millisecond))
	// The repairs, counted by kind: the first reconcile put the alias on
	// the tap of the VM that started without hook.
	want := strings.Join([]string{
		"virtbridge_repairs_total{kind=\"alias_restored\"} 1",
		"virtbridge_repairs_total{kind=\"bridge_recreated\"} 1",
		"virtbridge_repairs_total{kind=\"firewall_rule_restored\"} 1",
		"virtbridge_repairs_total{kind=\"tap_reattached\"} 1",
		"virtbridge_repairs_total{kind=\"uplink_reenslaved\"} 1",
	}, "\n")
	if got := series(scrape(t, l), "virtbridge_repairs_total{"); got != want {
		t.Errorf("repairs counted:\n%s\nwant:\n%s", got, want)
	}
	stopDaemon(t, d, n)
}

// TestOnce runs `virtbridged --once` on a VM that started without hook:
// with a configuration it cannot apply (a missing uplink) it must exit 1
// and leave the host as it was; with the lab's it must wire the VM,
// journal the port and exit 0; a second run must change and journal
// nothing and exit 0 too.
func TestOnce(t *testing.T) {
	l, j := startLab(t)
	addBridge(t, l, "br-a")
	const mac = "52:54:00:ed:05:01"
	v := startVM(t, l, "vm5", mac, "br-a")
	tap := tapOf(t, l, v.name, mac)
	unwired := fmt.Sprintf("br-a bridge up\nupa0 veth up addrs=[10.78.0.2/24]\n%s tun up master=br-a", tap)
	wired := fmt.Sprintf("br-a bridge up alias=managed by virtbridge addrs=[10.78.0.2/24]\nupa0 veth up master=br-a\n%s tun up master=br-a alias=%s", tap, v.alias())

	broken, err := l.HostPath("/etc/virtbridge/broken.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(broken, []byte(strings.Replace(labConfig, "uplink: upa0", "uplink: nope0", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, took, _ := runOnce(t, l, "/etc/virtbridge/broken.yaml")
	t.Logf("--once with a missing uplink: exit %d in %v", code, took.Round(time.Millisecond))
	if code != 1 || !strings.Contains(out, "nope0") {
		t.Errorf("virtbridged --once with a missing uplink: exit %d, want 1 and a message naming nope0:\n%s", code, out)
	}
	if got := wiring(t, l, "br-a", "upa0", tap); got != unwired {
		t.Errorf("after the failed --once:\n%s\nwant it untouched:\n%s", got, unwired)
	}

	var pids []int
	var ends []time.Time
	for i := range 2 {
		code, out, took, pid := runOnce(t, l, labConfigPath)
		ends = append(ends, time.Now())
		t.Logf("--once run %d: exit %d in %v", i+1, code, took.Round(time.Millisecond))
		if code != 0 {
			t.Fatalf("virtbridged --once run %d: exit %d, want 0:\n%s", i+1, code, out)
		}
		if got := wiring(t, l, "br-a", "upa0", tap); got != wired {
			t.Errorf("after --once run %d:\n%s\nwant:\n%s", i+1, got, wired)
		}
		pids = append(pids, pid)
	}
	checkRecords(t, l, j, v, []string{fmt.Sprintf("attached vm=vm5 tap=%s mac=%s bridge=br-a op=reconcile source=eventd", tap, mac)})
	if got, _ := hostChanges(t, j, pids[0], time.Time{}); !slices.Contains(got, "uplink-enslaved upa0 op=reconcile") {
		t.Errorf("first --once journaled the host changes %q, want uplink-enslaved upa0 among them", got)
	}
	// Only records from while run 2 ran: another package's virtbridged may
	// get its pid once it has exited.
	got, recs := hostChanges(t, j, pids[1], ends[0])
	for i, r := range recs {
		if !r.sent(t).After(ends[1]) {
			t.Errorf("second --once changed the host again: %q", got[i])
		}
	}
}

// runOnce runs `virtbridged --once --config CONFIG` in the lab and returns
// its exit code, output, run time and pid.
func runOnce(t *testing.T, l *lab.Lab, config string) (int, string, time.Duration, int) {
	t.Helper()
	cmd := daemonCommand(t, l, "", "--once", "--config", config)
	begin := time.Now()
	out, err := cmd.CombinedOutput()
	took := time.Since(begin)
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatalf("running virtbridged --once: %v", err)
	}
	return cmd.ProcessState.ExitCode(), string(out), took, cmd.Process.Pid
}

// TestStopsWhileWaitingForHostLock sends SIGTERM while the daemon waits for
// the host lock, which a hook holds (here flock(1) on the same file): the
// daemon must not wait out its lock timeout (5 s) but exit within 2 s,
// with status 0.
func TestStopsWhileWaitingForHostLock(t *testing.T) {
	l, _ := startLab(t)
	addBridge(t, l, "br-a")
	startVM(t, l, "vm7", "52:54:00:ed:07:01", "br-a")
	n := listenNotify(t)
	d := startDaemon(t, l, n)
	n.wait(t, 0, "READY=1", 30*time.Second)

	holdLock(t, l)
	// Drift: the daemon's reconcile now waits for the lock.
	l.RunHV(t, "ip", "link", "set", "upa0", "nomaster")
	waitLockWaiter(t, d.cmd.Process.Pid)
	stopDaemon(t, d, n)
}

// holdLock holds the lab's host lock with flock(1) until t ends, as a hook
// would while it changes the host.
func holdLock(t *testing.T, l *lab.Lab) {
	t.Helper()
	holder := l.CommandHV("flock", "/run/virtbridge/lock", "sleep", "60")
	if err := holder.Start(); err != nil {
		t.Fatalf("starting lock holder: %v", err)
	}
	t.Cleanup(func() {
		_ = syscall.Kill(holder.Process.Pid, syscall.SIGKILL)
		_ = holder.Wait()
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for {
		// flock -n fails while another process holds the lock.
		if _, err := l.ExecHV(ctx, "flock", "-n", "/run/virtbridge/lock", "true"); err != nil {
			return
		}
		if ctx.Err() != nil {
			t.Fatal("flock(1) did not take the host lock within 10 s")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitLockWaiter waits until process pid has the host lock file open: it
// is waiting for the lock (which another process holds).
func waitLockWaiter(t *testing.T, pid int) {
	t.Helper()
	fds := fmt.Sprintf("/proc/%d/fd", pid)
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		entries, _ := os.ReadDir(fds)
		for _, e := range entries {
			if target, _ := os.Readlink(fds + "/" + e.Name()); target == "/run/virtbridge/lock" {
				return
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("virtbridged (pid %d) did not open the host lock within 10 s of a link change", pid)
}
