// Package e2e proves, with real VMs, what users care about: a VM started
// on a virtbridge-managed bridge reaches the outside network, whatever the
// classic how-to's host got wrong, and every tap is recorded against its
// VM. Each scenario runs a lab (internal/testenv/lab): libvirtd with virtbridge's
// hook in private namespaces, an upstream network serving DHCP, disk-less
// VMs whose firmware asks for a lease. The tests skip when not root, when a
// program is missing, or with -short.
package e2e

import (
	"context"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/virtbridge/virtbridge/internal/journal"
	"github.com/virtbridge/virtbridge/internal/testenv/journaltest"
	"github.com/virtbridge/virtbridge/internal/testenv/lab"
)

func TestMain(m *testing.M) {
	code := journaltest.Main(m)
	removeBinaries()
	os.Exit(code)
}

const cfgBr0 = "bridges:\n  br0: {uplink: uplink0}\n"

// classicFaults is the demo's broken host; without br_netfilter the
// bridge-nf-call-iptables fault cannot exist and is left out.
func classicFaults(t *testing.T) lab.Faults {
	f := lab.ClassicFaults()
	if !lab.BridgeNFAvailable() {
		t.Log("no br_netfilter in this kernel: the host keeps bridged frames out of iptables")
		f.BridgeNFCall = false
	}
	return f
}

// TestDemoPath is `make demo` as a test: on the how-to's broken host a VM
// on br0 gets its lease through the enslaved uplink, the host's address
// and default route have moved to the bridge and upstream still reaches
// the host; the tap is named after the VM, journaled, and detached at stop.
func TestDemoPath(t *testing.T) {
	t.Parallel()
	j := requireLab(t)
	l := newLab(t, cfgBr0, classicFaults(t))
	ctx, cancel := context.WithTimeout(context.Background(), leaseTimeout)
	defer cancel()
	if out, err := l.ExecHV(ctx, "test", "-S", journaltest.Socket); err != nil {
		t.Fatalf("journald's socket is not visible in the lab's mount namespace, so the hook cannot journal: %v %s", err, out)
	}
	if out, err := l.ExecUp(ctx, "ping", "-c", "1", "-W", "2", lab.HostAddr); err != nil {
		t.Fatalf("the broken host is not reachable on its uplink before the VM starts: %v\n%s", err, out)
	}

	const mac = "52:54:00:e2:00:01"
	v := startVM(t, l, lab.VM{Name: "e2e-demo", MAC: mac, Bridges: []string{"br0"}})
	addrs := hv(t, l, "ip", "-o", "-4", "addr", "show")
	if !strings.Contains(addrs, "br0    inet "+lab.HostCIDR) || strings.Contains(addrs, lab.UplinkName+"    inet ") {
		t.Errorf("the host's address did not move from %s to br0:\n%s", lab.UplinkName, addrs)
	}
	if r := hv(t, l, "ip", "route", "show", "default"); !strings.Contains(r, "default via "+lab.UpstreamAddr+" dev br0") {
		t.Errorf("default route not on br0: %q", r)
	}
	if link := hv(t, l, "ip", "-o", "link", "show", "dev", lab.UplinkName); !strings.Contains(link, "master br0 ") {
		t.Errorf("uplink not enslaved to br0: %s", link)
	}

	waitLease(t, l, mac)
	if out, err := l.ExecUp(ctx, "ping", "-c", "3", "-i", "0.2", "-W", "2", lab.HostAddr); err != nil {
		t.Errorf("upstream cannot reach the host's address on the bridge: %v\n%s", err, out)
	}
	tap, err := l.TapOf(ctx, v.name, mac)
	if err != nil {
		t.Fatal(err)
	}
	checkTap(t, l, tap, "br0", v)
	wantWho(t, l, tap, v, mac, "br0")
	wantPortEntry(t, j, journal.IDAttached, v, mac, tap, "br0")
	status, code := cli(t, l, "status")
	if code != 0 || !strings.Contains(status, "addresses: "+lab.HostCIDR) || !strings.Contains(status, tap) || !strings.Contains(status, `vm "e2e-demo"`) {
		t.Errorf("virtbridge status: exit %d:\n%s", code, status)
	}
	fallback, err := l.HostPath("/var/log/virtbridge/journal.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(fallback); err == nil {
		t.Errorf("the hook in the lab wrote to its fallback file (%d bytes), not to journald", st.Size())
	}

	v.destroy()
	wantPortEntry(t, j, journal.IDDetached, v, mac, tap, "br0")
	if out, code := cli(t, l, "who", tap); code != 1 {
		t.Errorf("virtbridge who %s after the VM stopped: exit %d, %q; want 1 (no owner)", tap, code, out)
	}
}

// TestEachFault starts a VM on a host with one fault of the how-to each:
// virtbridge's hook mends it (or, for the firewall, gets around it without
// touching rules it does not own) and the VM gets its lease.
func TestEachFault(t *testing.T) {
	for _, tc := range []struct {
		name   string
		faults lab.Faults
		check  func(t *testing.T, l *lab.Lab)
	}{
		{"missing bridge", lab.Faults{MissingBridge: true}, func(t *testing.T, l *lab.Lab) {
			if link := hv(t, l, "ip", "-d", "-o", "link", "show", "dev", lab.UplinkName); !strings.Contains(link, "master br0 ") {
				t.Errorf("uplink not enslaved to br0: %s", link)
			}
		}},
		{"reject rule", lab.Faults{BridgeNFCall: true, Reject: true}, func(t *testing.T, l *lab.Lab) {
			wantRule(t, l, "-A FORWARD -j REJECT --reject-with icmp-host-prohibited")
		}},
		{"forward drop with br_netfilter", lab.Faults{BridgeNFCall: true, ForwardDrop: true}, func(t *testing.T, l *lab.Lab) {
			wantRule(t, l, "-P FORWARD DROP")
		}},
		{"ip_forward 0", lab.Faults{IPForwardOff: true}, func(t *testing.T, l *lab.Lab) {
			if f := strings.TrimSpace(hv(t, l, "sysctl", "-n", "net.ipv4.ip_forward")); f != "1" {
				t.Errorf("net.ipv4.ip_forward = %s after the VM started, want 1", f)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			requireLab(t)
			if tc.faults.BridgeNFCall && !lab.BridgeNFAvailable() {
				t.Skip("skipping: the kernel has no br_netfilter, so bridged frames never meet iptables")
			}
			l := newLab(t, cfgBr0, tc.faults)
			const mac = "52:54:00:e2:01:01"
			v := startVM(t, l, lab.VM{Name: "e2e-fault", MAC: mac, Bridges: []string{"br0"}})
			waitLease(t, l, mac)
			v.destroy()
			tc.check(t, l)
		})
	}
}

// wantRule checks that a rule virtbridge does not own is still in FORWARD.
func wantRule(t *testing.T, l *lab.Lab, rule string) {
	t.Helper()
	if rules := hv(t, l, "iptables", "-S", "FORWARD"); !strings.Contains(rules, rule+"\n") {
		t.Errorf("FORWARD lost %q, which virtbridge does not own:\n%s", rule, rules)
	}
}

const cfgTwoBridges = `bridges:
  br0: {uplink: uplink0}
  br1: {}
unmanaged_bridges: refuse
`

// TestRefusalAndMapping shares one lab: first a VM with a NIC on a bridge
// the configuration does not manage is refused and the host left exactly
// as it was; then two VMs on two bridges, one with two NICs, each tap
// journaled and answered by `virtbridge who` as its own VM's.
func TestRefusalAndMapping(t *testing.T) {
	t.Parallel()
	j := requireLab(t)
	l := newLab(t, cfgTwoBridges, classicFaults(t))
	hv(t, l, "ip", "link", "add", "br-other", "type", "bridge")
	t.Run("unmanaged bridge refused", func(t *testing.T) { checkRefusal(t, l, j) })
	t.Run("two VMs on two bridges", func(t *testing.T) { checkMapping(t, l, j) })
}

// hostState is what a refused start must leave alone: links, addresses,
// routes, firewall and the sysctls virtbridge manages.
func hostState(t *testing.T, l *lab.Lab) string {
	t.Helper()
	return hvNS(l).Dump(t) + hv(t, l, "sysctl", "net.ipv4.ip_forward", "net.bridge.bridge-nf-call-iptables")
}

func checkRefusal(t *testing.T, l *lab.Lab, j *journaltest.Journald) {
	ctx, cancel := context.WithTimeout(context.Background(), stepTimeout)
	defer cancel()
	x, err := lab.DomainXML(lab.VM{Name: "e2e-rogue", MAC: "52:54:00:e2:02:01", Bridges: []string{"br0", "br-other"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Define(ctx, x); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := l.DestroyUndefine(ctx, "e2e-rogue"); err != nil {
			t.Errorf("removing the refused VM: %v", err)
		}
	}()
	uuid, err := l.UUID(ctx, "e2e-rogue")
	if err != nil {
		t.Fatal(err)
	}
	before := hostState(t, l)
	_, err = l.Virsh(ctx, "start", "e2e-rogue")
	if err == nil {
		t.Fatal("virsh start of a VM on an unmanaged bridge succeeded with unmanaged_bridges: refuse")
	}
	t.Logf("virsh start: %v", err)
	for _, want := range []string{`virtbridge: domain "e2e-rogue" (prepare): refused: `, `"br-other"`, "unmanaged_bridges: refuse"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("virsh start's error lacks %q", want)
		}
	}
	if after := hostState(t, l); after != before {
		t.Errorf("the refused start changed the host:\n--- before\n%s\n--- after\n%s", before, after)
	}
	es := j.WaitEntries(t, 1, "MESSAGE_ID="+journal.IDRefused, journal.FieldUUID+"="+uuid)
	if r := es[0][journal.FieldReason]; !strings.Contains(r, "br-other") {
		t.Errorf("refusal journaled with reason %q", r)
	}
}

func checkMapping(t *testing.T, l *lab.Lab, j *journaltest.Journald) {
	ctx, cancel := context.WithTimeout(context.Background(), stepTimeout)
	defer cancel()
	alpha := startVM(t, l, lab.VM{Name: "e2e-alpha", MAC: "52:54:00:e2:03:01", Bridges: []string{"br0", "br1"}})
	beta := startVM(t, l, lab.VM{Name: "e2e-beta", MAC: "52:54:00:e2:03:11", Bridges: []string{"br1"}})
	type port struct {
		v           *vm
		mac, bridge string
		tap         string
	}
	ports := []*port{
		{v: alpha, mac: alpha.macs[0], bridge: "br0"},
		{v: alpha, mac: alpha.macs[1], bridge: "br1"},
		{v: beta, mac: beta.macs[0], bridge: "br1"},
	}
	status, _ := cli(t, l, "status")
	for _, p := range ports {
		tap, err := l.TapOf(ctx, p.v.name, p.mac)
		if err != nil {
			t.Fatal(err)
		}
		p.tap = tap
		checkTap(t, l, tap, p.bridge, p.v)
		wantWho(t, l, tap, p.v, p.mac, p.bridge)
		wantPortEntry(t, j, journal.IDAttached, p.v, p.mac, tap, p.bridge)
		if n := len(j.Entries(t, "MESSAGE_ID="+journal.IDAttached, journal.FieldTap+"="+tap, journal.FieldUUID+"="+p.v.uuid)); n != 1 {
			t.Errorf("%s journaled as attached %d times, want once", tap, n)
		}
		if !strings.Contains(status, tap) || !strings.Contains(status, p.mac) {
			t.Errorf("virtbridge status does not list %s (%s):\n%s", tap, p.mac, status)
		}
	}
	t.Logf("virtbridge status:\n%s", status)
	alpha.destroy()
	beta.destroy()
	for _, p := range ports {
		wantPortEntry(t, j, journal.IDDetached, p.v, p.mac, p.tap, p.bridge)
	}
}

// TestDaemon runs virtbridged in the lab: a NIC hot-plugged into a running
// VM (libvirt calls no hook for it) gets its alias and is journaled; after
// a libvirtd restart the VM is still mapped, the daemon reconnects, and a
// NIC plugged right after the restart is wired too. The VM's first NIC
// gets its lease meanwhile.
func TestDaemon(t *testing.T) {
	t.Parallel()
	j := requireLab(t)
	l := newLab(t, cfgBr0, classicFaults(t))
	d := startDaemon(t, l)
	d.waitLog(t, "connected to libvirtd", 1, 30*time.Second)

	const mac = "52:54:00:e2:04:01"
	v := startVM(t, l, lab.VM{Name: "e2e-gamma", MAC: mac, Bridges: []string{"br0"}})
	leaseCtx, cancelLease := context.WithTimeout(context.Background(), leaseTimeout)
	defer cancelLease()
	lease := make(chan error, 1)
	go func() { _, err := l.WaitLease(leaseCtx, mac); lease <- err }()

	hotplug(t, l, j, v, "52:54:00:e2:04:02")
	ctx, cancel := context.WithTimeout(context.Background(), stepTimeout)
	defer cancel()
	begin := time.Now()
	if err := l.RestartLibvirtd(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("libvirtd restarted in %v", time.Since(begin).Round(time.Millisecond))
	hotplug(t, l, j, v, "52:54:00:e2:04:03")
	d.waitLog(t, "connected to libvirtd", 2, 30*time.Second)
	for _, m := range []string{mac, "52:54:00:e2:04:02"} {
		tap, err := l.TapOf(ctx, v.name, m)
		if err != nil {
			t.Fatal(err)
		}
		wantWho(t, l, tap, v, m, "br0")
	}
	if err := <-lease; err != nil {
		t.Fatalf("no lease for the VM's first NIC: %v", err)
	}
}

// hotplug plugs a NIC into the running VM and waits until it is wired: in
// br0 with the VM's alias, journaled by the daemon, known to `who`.
func hotplug(t *testing.T, l *lab.Lab, j *journaltest.Journald, v *vm, mac string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), stepTimeout)
	defer cancel()
	begin := time.Now()
	if _, err := l.Virsh(ctx, "attach-interface", v.name, "--type", "bridge", "--source", "br0", "--model", "e1000", "--mac", mac); err != nil {
		t.Fatal(err)
	}
	tap, err := l.TapOf(ctx, v.name, mac)
	if err != nil {
		t.Fatal(err)
	}
	alias := journal.Alias(v.name, v.uuid)
	waitUntil(t, time.Minute, "hot-plugged "+tap+" named after its VM", func() (bool, string) {
		out, err := l.ExecHV(ctx, "ip", "-d", "link", "show", "dev", tap)
		return err == nil && strings.Contains(string(out), "alias "+alias+"\n"), string(out)
	})
	t.Logf("hot-plugged %s (%s) wired %v after attach-interface began", tap, mac, time.Since(begin).Round(time.Millisecond))
	checkTap(t, l, tap, "br0", v)
	wantPortEntry(t, j, journal.IDAttached, v, mac, tap, "br0")
	es := portEntries(t, j, journal.IDAttached, v, mac, 1)
	if src := es[len(es)-1][journal.FieldSource]; src != "eventd" {
		t.Errorf("hot-plugged %s journaled by %q, want eventd", tap, src)
	}
	wantWho(t, l, tap, v, mac, "br0")
}

// TestFaultsBreakWithoutVirtbridge is the control for TestEachFault: on a
// lab without virtbridge's hook each fault that breaks bridged VMs does.
// Without the bridge the start fails. With br_netfilter on, the VM's DHCP
// requests reach FORWARD (a counting rule in front sees them) and die
// there: no lease comes.
func TestFaultsBreakWithoutVirtbridge(t *testing.T) {
	for _, tc := range []struct {
		name   string
		faults lab.Faults
	}{
		{"missing bridge", lab.Faults{MissingBridge: true}},
		{"reject rule", lab.Faults{BridgeNFCall: true, Reject: true}},
		{"forward drop with br_netfilter", lab.Faults{BridgeNFCall: true, ForwardDrop: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			requireLab(t)
			if tc.faults.BridgeNFCall && !lab.BridgeNFAvailable() {
				t.Skip("skipping: the kernel has no br_netfilter, so bridged frames never meet iptables")
			}
			l := lab.ForTest(t, lab.Options{Upstream: true})
			ctx, cancel := context.WithTimeout(context.Background(), leaseTimeout)
			defer cancel()
			if err := l.Break(ctx, "br0", tc.faults); err != nil {
				t.Fatal(err)
			}
			const mac = "52:54:00:e2:05:01"
			if tc.faults.MissingBridge {
				x, err := lab.DomainXML(lab.VM{Name: "e2e-control", MAC: mac, Bridges: []string{"br0"}})
				if err != nil {
					t.Fatal(err)
				}
				err = l.DefineStart(ctx, x)
				if err == nil || !strings.Contains(err.Error(), "'br0'") {
					t.Fatalf("start on a missing bridge without virtbridge: %v; want libvirt's error naming br0", err)
				}
				return
			}
			hv(t, l, "iptables", "-I", "FORWARD", "1", "-p", "udp", "--sport", "68", "--dport", "67",
				"-m", "comment", "--comment", dhcpCounter)
			startVM(t, l, lab.VM{Name: "e2e-control", MAC: mac, Bridges: []string{"br0"}})
			waitUntil(t, leaseTimeout, "the VM's DHCP requests in FORWARD", func() (bool, string) {
				return dhcpRequests(t, l) >= 3, hv(t, l, "iptables", "-L", "FORWARD", "-n", "-v", "-x")
			})
			if ip, ok := l.Lease(mac); ok {
				t.Fatalf("the VM got lease %s through the faulty FORWARD chain: the fault breaks nothing", ip)
			}
		})
	}
}

// dhcpCounter comments the rule that counts DHCP requests in FORWARD.
const dhcpCounter = "e2e-dhcp-requests"

var dhcpCounterRE = regexp.MustCompile(`(?m)^\s*(\d+)\s.*/\* ` + dhcpCounter + ` \*/`)

// dhcpRequests returns how many DHCP requests the counting rule has seen.
func dhcpRequests(t *testing.T, l *lab.Lab) int {
	t.Helper()
	m := dhcpCounterRE.FindStringSubmatch(hv(t, l, "iptables", "-L", "FORWARD", "-n", "-v", "-x"))
	if m == nil {
		t.Fatal("the DHCP counting rule is gone from FORWARD")
	}
	n, _ := strconv.Atoi(m[1])
	return n
}
