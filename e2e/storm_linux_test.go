package e2e

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/virtbridge/virtbridge/internal/journal"
	"github.com/virtbridge/virtbridge/internal/store"
	"github.com/virtbridge/virtbridge/internal/testenv/journaltest"
	"github.com/virtbridge/virtbridge/internal/testenv/lab"
)

// stormLimit bounds one storm step (all starts, all destroys, the checks).
const stormLimit = 90 * time.Second

// TestStorm is a host booting many VMs at once, with virtbridged running
// and `virtbridged --once` passes racing the hook: first 50 VMs started
// paused at once (the hook runs prepare, start and started as for any
// start; paused TCG guests cost no CPU), then 20 VMs started at once and
// left running. Each round checks that every start succeeded and every
// port is mapped once and right — the tap libvirt reports, the mapping
// store, the tap's alias and journald agree, one attach record per port,
// no detach — and that the firewall holds no rule twice; then the VMs are
// destroyed at once and each port gets exactly one detach record.
//
// It is not parallel: it runs alone among this package's tests, which
// bound their VMs to a few at a time.
func TestStorm(t *testing.T) {
	j := requireLab(t)
	begin := time.Now()
	l := newLab(t, cfgTwoBridges, classicFaults(t))
	d := startDaemon(t, l)
	d.waitLog(t, "connected to libvirtd", 1, 30*time.Second)
	t.Logf("lab and daemon up in %v", time.Since(begin).Round(time.Millisecond))
	t.Run("50 paused", func(t *testing.T) { stormRound(t, l, j, d, "p", 50, true) })
	t.Run("20 running", func(t *testing.T) { stormRound(t, l, j, d, "r", 20, false) })
	t.Run("20 destroyed as they start", func(t *testing.T) { flashRound(t, l, j, d, "f", 20) })
	if t.Failed() {
		t.Logf("virtbridged log:\n%s", d.logText())
	}
}

// stormVM is one VM of a storm round and, once started, its tap.
type stormVM struct {
	name, uuid, mac, bridge, tap string
}

// stormFleet names n VMs of a round; their UUIDs are new on every run,
// since journald keeps the records of earlier runs.
func stormFleet(round string, n int) []*stormVM {
	b := make([]byte, 4)
	rand.Read(b)
	run := hex.EncodeToString(b)
	vms := make([]*stormVM, n)
	for i := range vms {
		vms[i] = &stormVM{
			name:   fmt.Sprintf("storm-%s%02d", round, i),
			uuid:   fmt.Sprintf("%s-0000-4000-8000-%012d", run, i),
			mac:    fmt.Sprintf("52:54:00:5e:%02x:%02x", round[0], i),
			bridge: []string{"br0", "br1"}[i%2],
		}
	}
	return vms
}

// defineStorm defines the VMs of a round; those left are removed when t
// ends.
func defineStorm(t *testing.T, l *lab.Lab, vms []*stormVM) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), stormLimit)
	defer cancel()
	for _, v := range vms {
		x, err := lab.DomainXML(lab.VM{Name: v.name, UUID: v.uuid, MAC: v.mac, Bridges: []string{v.bridge}})
		if err != nil {
			t.Fatal(err)
		}
		if err := l.Define(ctx, x); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), stormLimit)
		defer cancel()
		left, err := l.Domains(ctx)
		if err != nil {
			t.Errorf("listing VMs left: %v", err)
		}
		for _, v := range vms {
			if slices.Contains(left, v.name) {
				if err := l.DestroyUndefine(ctx, v.name); err != nil {
					t.Errorf("removing VM %s: %v", v.name, err)
				}
			}
		}
	})
}

func stormRound(t *testing.T, l *lab.Lab, j *journaltest.Journald, d *daemon, round string, n int, paused bool) {
	vms := stormFleet(round, n)
	ctx, cancel := context.WithTimeout(context.Background(), 3*stormLimit)
	defer cancel()
	defineStorm(t, l, vms)
	onces := startOnceLoop(t, l)
	start := []string{"start"}
	if paused {
		start = append(start, "--paused")
	}
	took := virshStorm(t, l, vms, nil, start)
	passes, fails := onces()
	t.Logf("%d VMs started at once (paused: %v) in %v; %d `virtbridged --once` passes meanwhile", n, paused, took, passes)
	for _, f := range fails {
		t.Errorf("virtbridged --once during the storm: %s", f)
	}
	if t.Failed() {
		t.FailNow()
	}
	d.waitHandled(t, "started", round, n)

	checkBegin := time.Now()
	for _, v := range vms {
		ifs, err := l.Interfaces(ctx, v.name)
		if err != nil {
			t.Fatal(err)
		}
		if len(ifs) != 1 || ifs[0].MAC != v.mac || ifs[0].Source != v.bridge || ifs[0].Tap == "-" {
			t.Fatalf("virsh domiflist %s: %+v, want one NIC %s on %s with a tap", v.name, ifs, v.mac, v.bridge)
		}
		v.tap = ifs[0].Tap
	}
	wantStormMapping(t, l, vms)
	wantStormRecords(t, j, journal.IDAttached, vms)
	wantStormRecords(t, j, journal.IDDetached, nil, vms...)
	hvNS(l).WantRulesOnce(t, "VIRTBRIDGE-FWD", "FORWARD", "DOCKER-USER")
	addrs := hv(t, l, "ip", "-o", "addr", "show")
	if k := strings.Count(addrs, " inet "+lab.HostCIDR+" "); k != 1 || !strings.Contains(addrs, "br0    inet "+lab.HostCIDR+" ") {
		t.Errorf("the host's address %s is there %d times, want once on br0:\n%s", lab.HostCIDR, k, addrs)
	}
	t.Logf("checked %d ports in %v", n, time.Since(checkBegin).Round(time.Millisecond))

	took = virshStorm(t, l, vms, nil, []string{"destroy"})
	t.Logf("%d VMs destroyed at once in %v", n, took)
	d.waitHandled(t, "stopped", round, n)
	wantStormMapping(t, l, nil)
	wantStormRecords(t, j, journal.IDDetached, vms)
	wantStormRecords(t, j, journal.IDAttached, vms) // still one each: nothing re-attached a stopped VM
	virshStorm(t, l, vms, nil, []string{"undefine"})
}

// virshStorm runs, for every VM at once, `virsh STEP NAME` for each step
// in order, waiting gap(i) between the steps of the i-th VM (gap nil: no
// wait), and fails t with the errors; it returns the wall time.
func virshStorm(t *testing.T, l *lab.Lab, vms []*stormVM, gap func(i int) time.Duration, steps ...[]string) time.Duration {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), stormLimit)
	defer cancel()
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []string
	)
	gate := make(chan struct{})
	for i, v := range vms {
		wg.Go(func() {
			<-gate
			for k, step := range steps {
				if k > 0 && gap != nil {
					time.Sleep(gap(i))
				}
				if _, err := l.Virsh(ctx, append(slices.Clone(step), v.name)...); err != nil {
					mu.Lock()
					errs = append(errs, err.Error())
					mu.Unlock()
					return
				}
			}
		})
	}
	begin := time.Now()
	close(gate)
	wg.Wait()
	took := time.Since(begin).Round(time.Millisecond)
	if len(errs) > 0 {
		t.Fatalf("virsh %q: %d of %d VMs failed:\n%s", steps, len(errs), len(vms), strings.Join(errs, "\n"))
	}
	return took
}

// startOnceLoop runs `virtbridged --once` in the lab again and again until
// the returned func is called, which waits for the pass running and
// returns how many passes ran and the failed ones.
func startOnceLoop(t *testing.T, l *lab.Lab) func() (int, []string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*stormLimit)
	stop := make(chan struct{})
	done := make(chan struct{})
	var (
		passes int
		fails  []string
	)
	daemonBin := bin(t, "virtbridged")
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			default:
			}
			out, err := l.ExecHV(ctx, daemonBin, "--once", "--config", "/etc/virtbridge/virtbridge.yaml")
			passes++
			if err != nil {
				fails = append(fails, fmt.Sprintf("%v\n%s", err, out))
			}
		}
	}()
	return func() (int, []string) {
		close(stop)
		<-done
		cancel()
		return passes, fails
	}
}

// waitHandled waits until the daemon has handled the op event of every VM
// of the round (n of them), and fails t if it failed to handle one.
func (d *daemon) waitHandled(t *testing.T, op, round string, n int) {
	t.Helper()
	re := regexp.MustCompile(`msg="(handled event|handling event failed[^"]*)" op=` + op + ` .*domain=storm-` + round)
	waitUntil(t, stormLimit, fmt.Sprintf("virtbridged handling %d %s events", n, op), func() (bool, string) {
		s := d.logText()
		return len(re.FindAllString(s, -1)) >= n, s
	})
	if failed := regexp.MustCompile(`msg="handling event failed[^"]*" op=`+op+` .*domain=storm-`+round+`.*`).FindAllString(d.logText(), -1); len(failed) > 0 {
		t.Errorf("virtbridged failed to handle %d %s events:\n%s", len(failed), op, strings.Join(failed, "\n"))
	}
}

// wantStormMapping checks that the lab's mapping store holds exactly the
// VMs' ports, and that each tap is in its bridge under its VM's alias.
func wantStormMapping(t *testing.T, l *lab.Lab, vms []*stormVM) {
	t.Helper()
	p, err := l.HostPath(store.DefaultPath)
	if err != nil {
		t.Fatal(err)
	}
	s, err := store.Read(p)
	if err != nil {
		t.Fatal(err)
	}
	var got, want []string
	for _, e := range s.All() {
		got = append(got, fmt.Sprintf("%s %s %s %s %s", e.UUID, e.VM, e.MAC, e.Tap, e.Bridge))
	}
	links := map[string]string{}
	for _, line := range strings.Split(hv(t, l, "ip", "-d", "-o", "link", "show"), "\n") {
		if f := strings.Fields(line); len(f) > 1 {
			links[strings.TrimSuffix(f[1], ":")] = line
		}
	}
	for _, v := range vms {
		want = append(want, fmt.Sprintf("%s %s %s %s %s", v.uuid, v.name, v.mac, v.tap, v.bridge))
		link := links[v.tap]
		if !strings.Contains(link, " master "+v.bridge+" ") || !strings.Contains(link, " alias "+journal.Alias(v.name, v.uuid)) {
			t.Errorf("tap %s of %s is not in %s with the VM's alias: %s", v.tap, v.name, v.bridge, link)
		}
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("mapping store holds %d ports, want %d:\n%s\nwant:\n%s", len(got), len(want), strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// wantStormRecords checks that journald holds exactly one record of kind
// id (journal.IDAttached or IDDetached) for each VM of vms, naming its tap
// and bridge, and none for the VMs of none.
func wantStormRecords(t *testing.T, j *journaltest.Journald, id string, vms []*stormVM, none ...*stormVM) {
	t.Helper()
	j.Sync(t)
	matches := []string{"MESSAGE_ID=" + id}
	for _, v := range append(slices.Clone(vms), none...) {
		matches = append(matches, journal.FieldUUID+"="+v.uuid)
	}
	got := map[string][]string{}
	for _, e := range j.Entries(t, matches...) {
		got[e[journal.FieldUUID]] = append(got[e[journal.FieldUUID]], e[journal.FieldTap]+"@"+e[journal.FieldBridge]+" by "+e[journal.FieldSource])
	}
	for _, v := range vms {
		if g := got[v.uuid]; len(g) != 1 || !strings.HasPrefix(g[0], v.tap+"@"+v.bridge+" by ") {
			t.Errorf("%s: journal records %s %q, want one for %s@%s", v.name, id, g, v.tap, v.bridge)
		}
	}
	for _, v := range none {
		if g := got[v.uuid]; len(g) > 0 {
			t.Errorf("%s: journal records %s %q, want none", v.name, id, g)
		}
	}
}

// flashRound starts n paused VMs at once and destroys each within a second
// of its start returning, while the daemon still works through their started
// events: a started event read late must not attach a VM that is gone.
// Each port gets one attach record (the hook's) and one detach record for
// the same tap, and the store ends empty.
func flashRound(t *testing.T, l *lab.Lab, j *journaltest.Journald, d *daemon, round string, n int) {
	vms := stormFleet(round, n)
	defineStorm(t, l, vms)
	// Destroys spread over 1 s after each start: some land before the
	// daemon reads the VM's started event, some while it handles it.
	gap := func(i int) time.Duration { return time.Duration(i) * time.Second / time.Duration(n) }
	took := virshStorm(t, l, vms, gap, []string{"start", "--paused"}, []string{"destroy"}, []string{"undefine"})
	t.Logf("%d VMs started, destroyed and undefined at once in %v", n, took)
	d.waitHandled(t, "stopped", round, n)
	late := regexp.MustCompile(`msg="handled event" op=started .*domain=storm-`+round).FindAllString(d.logText(), -1)
	t.Logf("virtbridged acted on %d of the %d started events (the others came after the VM was gone)", len(late), n)
	wantStormMapping(t, l, nil)
	j.Sync(t)
	for _, v := range vms {
		var got []string
		for _, id := range []string{journal.IDAttached, journal.IDDetached} {
			for _, e := range j.Entries(t, "MESSAGE_ID="+id, journal.FieldUUID+"="+v.uuid) {
				got = append(got, fmt.Sprintf("%s %s@%s by %s", map[string]string{journal.IDAttached: "attached", journal.IDDetached: "detached"}[id],
					e[journal.FieldTap], e[journal.FieldBridge], e[journal.FieldSource]))
			}
		}
		if len(got) != 2 || !strings.HasPrefix(got[0], "attached ") || !strings.HasPrefix(got[1], "detached ") ||
			strings.Fields(got[0])[1] != strings.Fields(got[1])[1] || !strings.Contains(got[0], "@"+v.bridge+" ") {
			t.Errorf("%s: journal records %q, want one attach and one detach of the same tap on %s", v.name, got, v.bridge)
		}
	}
}
