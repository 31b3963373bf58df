package main

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/virtbridge/virtbridge/internal/journal"
	"github.com/virtbridge/virtbridge/internal/links"
	"github.com/virtbridge/virtbridge/internal/store"
	"github.com/virtbridge/virtbridge/internal/testenv/journaltest"
)

// stormVMs is how many VMs boot at once in the storm: a host coming up
// with dozens of autostart VMs.
const stormVMs = 50

// cfgStorm manages two bridges, each with its own uplink holding host
// addresses, so that both see concurrent first-time setup.
const cfgStorm = `
bridges:
  br-a: {uplink: uplink0}
  br-b: {uplink: uplink1}
sysctl: {ip_forward: 1}
`

// stormVM is one synthetic VM of the storm: the one-nic fixture's calls
// with its own name, UUID, MAC, tap and bridge.
type stormVM struct {
	name, uuid, mac, tap, bridge string
}

func stormFleet(n int) []stormVM {
	b := make([]byte, 4)
	rand.Read(b)
	run := hex.EncodeToString(b) // journald outlives the test: UUIDs of this run only
	vms := make([]stormVM, n)
	for i := range vms {
		vms[i] = stormVM{
			name:   fmt.Sprintf("storm%02d", i),
			uuid:   fmt.Sprintf("%s-0000-4000-8000-%012d", run, i),
			mac:    fmt.Sprintf("52:54:00:5f:%02x:%02x", i/256, i%256),
			tap:    fmt.Sprintf("vnet%d", i),
			bridge: []string{"br-a", "br-b"}[i%2],
		}
	}
	return vms
}

// call returns argv and stdin of the VM's hook call, made from the
// captured one-nic fixture (testdata/hook/one-nic/CALL.{args,xml}).
func (v stormVM) call(t *testing.T, call string) ([]string, string) {
	t.Helper()
	base := filepath.Join("..", "..", "testdata", "hook", "one-nic", call)
	args, err := os.ReadFile(base + ".args")
	if err != nil {
		t.Fatal(err)
	}
	x, err := os.ReadFile(base + ".xml")
	if err != nil {
		t.Fatal(err)
	}
	argv := strings.Split(strings.TrimSpace(string(args)), "\n")
	argv[0] = v.name
	doc := strings.NewReplacer(
		"<name>one-nic</name>", "<name>"+v.name+"</name>",
		"5b0c0000-0000-4000-8000-000000000001", v.uuid,
		"52:54:00:aa:01:01", v.mac,
		"<target dev='vnet0'/>", "<target dev='"+v.tap+"'/>",
		"<source bridge='br-a'/>", "<source bridge='"+v.bridge+"'/>",
	).Replace(string(x))
	return argv, doc
}

// storm runs, for every VM at once, its calls in order (the built hook,
// as libvirtd would), and returns the failures.
func (h *hypervisor) storm(t *testing.T, vms []stormVM, calls ...string) []string {
	t.Helper()
	type job struct{ args, stdin []string }
	jobs := make([]job, len(vms))
	for i, v := range vms {
		for _, c := range calls {
			a, x := v.call(t, c)
			jobs[i].args = append(jobs[i].args, strings.Join(a, "\x00"))
			jobs[i].stdin = append(jobs[i].stdin, x)
		}
	}
	var (
		mu    sync.Mutex
		fails []string
		wg    sync.WaitGroup
	)
	gate := make(chan struct{})
	for i, j := range jobs {
		wg.Go(func() {
			<-gate
			for k := range j.args {
				r, err := h.exec(strings.Split(j.args[k], "\x00"), j.stdin[k])
				if err != nil || r.code != 0 || r.stdout != "" || r.stderr != "" {
					mu.Lock()
					fails = append(fails, fmt.Sprintf("%s %s: exit %d err %v stdout %q stderr %q", vms[i].name, calls[k], r.code, err, r.stdout, r.stderr))
					mu.Unlock()
				}
			}
		})
	}
	close(gate)
	wg.Wait()
	return fails
}

// TestStorm is a host booting 50 autostart VMs on two bridges at once:
// each VM's prepare and started run in order, the 50 VMs in parallel, each
// call a process of the built hook. Every call succeeds silently; each
// bridge is made once, each uplink enslaved once and the host's addresses
// and routes moved exactly once; the firewall holds no rule twice; every
// tap is in its bridge under its VM's alias; the store and journald hold
// exactly the 50 ports. Then the 50 VMs stop at once: 50 detach records,
// an empty store.
func TestStorm(t *testing.T) {
	j := journaltest.Require(t)
	h := newHypervisor(t, cfgStorm)
	h.journald = true
	h.hv.Script(t, `
		ip link add uplink1 type veth peer name upstream1
		ip link set upstream1 netns `+h.up.Name+`
		ip link set uplink1 up
		ip addr add 10.78.0.2/24 dev uplink1
		ip route add 10.99.0.0/16 via 10.78.0.1 dev uplink1
		iptables -N DOCKER-USER
		iptables -I FORWARD -j DOCKER-USER
		ip6tables -N DOCKER-USER
		ip6tables -I FORWARD -j DOCKER-USER`)
	vms := stormFleet(stormVMs)
	var batch strings.Builder
	for _, v := range vms {
		mac, err := links.TapMAC(v.mac) // the MAC libvirt gives the NIC's tap
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&batch, "tuntap add %s mode tap\nlink set %s address %s up\n", v.tap, v.tap, mac)
	}
	taps := filepath.Join(t.TempDir(), "taps")
	if err := os.WriteFile(taps, []byte(batch.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	h.hv.Run(t, "ip", "-batch", taps)

	begin := time.Now()
	fails := h.storm(t, vms, "01-prepare-begin", "03-started-begin")
	t.Logf("%d VMs × (prepare, started) at once: %v", len(vms), time.Since(begin).Round(time.Millisecond))
	if len(fails) > 0 {
		t.Fatalf("%d of %d VMs failed:\n%s", len(fails), len(vms), strings.Join(fails, "\n"))
	}
	h.wantHostOnce(t)
	for _, v := range vms {
		link := h.hv.Run(t, "ip", "-d", "link", "show", "dev", v.tap)
		if !strings.Contains(link, "master "+v.bridge+" ") || !strings.Contains(link, "alias "+journal.Alias(v.name, v.uuid)+"\n") {
			t.Errorf("%s is not in %s with %s's alias:\n%s", v.tap, v.bridge, v.name, link)
		}
	}
	h.wantStore(t, vms)
	wantRecords(t, j, journal.IDAttached, vms)

	begin = time.Now()
	fails = h.storm(t, vms, "04-stopped-end")
	t.Logf("%d VMs × stopped at once: %v", len(vms), time.Since(begin).Round(time.Millisecond))
	if len(fails) > 0 {
		t.Fatalf("%d of %d VMs failed to stop:\n%s", len(fails), len(vms), strings.Join(fails, "\n"))
	}
	h.wantStore(t, nil)
	wantRecords(t, j, journal.IDDetached, vms)
}

// wantHostOnce checks what the storm's prepares must have made exactly
// once: the two bridges, each uplink in its bridge, the host's addresses
// and routes on the bridges and nowhere else, our firewall chain jumped to
// once from each hooked chain, no rule twice.
func (h *hypervisor) wantHostOnce(t *testing.T) {
	t.Helper()
	bridges := strings.Fields(h.hv.Run(t, "ip", "-o", "link", "show", "type", "bridge"))
	got := slices.DeleteFunc(bridges, func(f string) bool { return !strings.HasPrefix(f, "br-") })
	if slices.Sort(got); !slices.Equal(got, []string{"br-a:", "br-b:"}) {
		t.Errorf("bridges after the storm: %q, want br-a and br-b", got)
	}
	for up, br := range map[string]string{"uplink0": "br-a", "uplink1": "br-b"} {
		if link := h.hv.Run(t, "ip", "-o", "link", "show", "dev", up); !strings.Contains(link, " master "+br+" ") {
			t.Errorf("%s is not enslaved to %s: %s", up, br, link)
		}
	}
	addrs := h.hv.Run(t, "ip", "-o", "addr", "show", "scope", "global")
	routes := h.hv.Run(t, "ip", "route", "show") + h.hv.Run(t, "ip", "-6", "route", "show", "default")
	for _, want := range []struct{ in, line, dev string }{
		{addrs, "inet 10.77.0.2/24", "br-a"},
		{addrs, "inet6 2001:db8:77::2/64", "br-a"},
		{addrs, "inet 10.78.0.2/24", "br-b"},
		{routes, "default via 10.77.0.1", "br-a"},
		{routes, "default via 2001:db8:77::1", "br-a"},
		{routes, "10.99.0.0/16 via 10.78.0.1", "br-b"},
	} {
		var on []string
		for _, l := range strings.Split(want.in, "\n") {
			if strings.Contains(l, want.line+" ") {
				on = append(on, l)
			}
		}
		if len(on) != 1 || !strings.Contains(on[0], want.dev) {
			t.Errorf("%q: want it once, on %s; got:\n%s", want.line, want.dev, strings.Join(on, "\n"))
		}
	}
	h.hv.WantRulesOnce(t, "VIRTBRIDGE-FWD", "FORWARD", "DOCKER-USER")
}

// wantStore checks that the hook's mapping store holds exactly the VMs'
// ports.
func (h *hypervisor) wantStore(t *testing.T, vms []stormVM) {
	t.Helper()
	s, err := store.Read(filepath.Join(h.dir, "ports.json"))
	if err != nil {
		t.Fatal(err)
	}
	var got, want []string
	for _, e := range s.All() {
		got = append(got, fmt.Sprintf("%s %s %s %s %s", e.UUID, e.VM, e.MAC, e.Tap, e.Bridge))
	}
	for _, v := range vms {
		want = append(want, fmt.Sprintf("%s %s %s %s %s", v.uuid, v.name, v.mac, v.tap, v.bridge))
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("mapping store holds %d ports, want %d:\n%s", len(got), len(want), strings.Join(got, "\n"))
	}
}

// wantRecords checks that journald holds exactly one record of kind id
// (journal.IDAttached or IDDetached) per VM, naming its tap and bridge.
func wantRecords(t *testing.T, j *journaltest.Journald, id string, vms []stormVM) {
	t.Helper()
	j.Sync(t)
	matches := []string{"MESSAGE_ID=" + id}
	for _, v := range vms {
		matches = append(matches, journal.FieldUUID+"="+v.uuid)
	}
	got := map[string][]string{}
	for _, e := range j.Entries(t, matches...) {
		got[e[journal.FieldUUID]] = append(got[e[journal.FieldUUID]], e[journal.FieldTap]+"@"+e[journal.FieldBridge])
	}
	for _, v := range vms {
		if want := []string{v.tap + "@" + v.bridge}; !slices.Equal(got[v.uuid], want) {
			t.Errorf("%s: journal records %s %q, want %q", v.name, id, got[v.uuid], want)
		}
	}
}
