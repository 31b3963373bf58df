package links

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/virtbridge/virtbridge/internal/revert"
)

// moveAndCheck moves the lab's uplink to br-up, checks that the uplink
// carries none of what wants lists afterwards and the bridge all of it
// (each a substring of `ip ... show` on the bridge), that a second run
// changes nothing, and that the undo restores the namespace exactly.
func moveAndCheck(t *testing.T, l *lab, show []string, wants []string) {
	t.Helper()
	before := dump(t, l.host)
	var rv revert.Reverter
	cs, err := l.m.EnsureBridge(context.Background(), upBridge(), &rv)
	if err != nil {
		t.Fatalf("EnsureBridge: %v", err)
	}
	for _, c := range cs {
		t.Logf("  %s", c)
	}
	got := l.host.Run(t, show...)
	for _, w := range wants {
		if !strings.Contains(got, w) {
			t.Errorf("after the move, %q lacks %q:\n%s", strings.Join(show, " "), w, got)
		}
	}
	if cs, err := l.m.EnsureBridge(context.Background(), upBridge(), &rv); err != nil || len(cs) != 0 {
		t.Errorf("second EnsureBridge = %v, %v; want no change", cs, err)
	}
	if err := rv.Fail(); err != nil {
		t.Fatalf("undo: %v", err)
	}
	requireSame(t, "undo", before, dump(t, l.host))
}

// TestMoveNoPrefixRoute is the NetworkManager host: its DHCP address is
// added with noprefixroute and NM installs the prefix route itself, as
// `proto kernel ... metric 100`. The kernel does not re-make that route on
// the bridge, so it must move like any other; without it the default route
// cannot be copied ("network is unreachable").
func TestMoveNoPrefixRoute(t *testing.T) {
	l := newLab(t, true)
	l.host.Script(t, `
		ip -4 addr flush dev uplink scope global
		ip addr add 10.77.0.2/24 dev uplink noprefixroute
		ip route add 10.77.0.0/24 dev uplink proto kernel scope link src 10.77.0.2 metric 100
		ip route add default via 10.77.0.1 dev uplink proto dhcp src 10.77.0.2 metric 100`)
	moveAndCheck(t, l, []string{"ip", "route", "show", "dev", "br-up"}, []string{
		"default via 10.77.0.1 proto dhcp src 10.77.0.2 metric 100",
		"10.77.0.0/24 proto kernel scope link src 10.77.0.2 metric 100",
	})
	l2 := newLab(t, true)
	l2.host.Script(t, `
		ip -4 addr flush dev uplink scope global
		ip addr add 10.77.0.2/24 dev uplink noprefixroute
		ip route add 10.77.0.0/24 dev uplink proto kernel scope link src 10.77.0.2 metric 100
		ip route add default via 10.77.0.1 dev uplink proto dhcp src 10.77.0.2 metric 100`)
	var rv revert.Reverter
	if _, err := l2.m.EnsureBridge(context.Background(), upBridge(), &rv); err != nil {
		t.Fatal(err)
	}
	if out := l2.host.Run(t, "ip", "route", "show", "dev", "uplink"); out != "" {
		t.Errorf("routes left on the enslaved uplink:\n%s", out)
	}
	l2.host.Run(t, "ping", "-c1", "-W5", "10.77.0.1")
}

// TestRefuseAddressedUplinkWithoutMove: move_addresses: false on an uplink
// holding the host's addresses would enslave it and cut the host off; it
// is refused before any change, naming the addresses and the fix. An
// uplink without addresses is enslaved as before.
func TestRefuseAddressedUplinkWithoutMove(t *testing.T) {
	l := newLab(t, true)
	before := dump(t, l.host)
	b := upBridge()
	b.MoveAddresses = false
	var rv revert.Reverter
	_, err := l.m.EnsureBridge(context.Background(), b, &rv)
	if !errors.Is(err, ErrUnmovable) || !strings.Contains(err.Error(), "10.77.0.2/24") ||
		!strings.Contains(err.Error(), "move_addresses: true") {
		t.Fatalf("EnsureBridge(move_addresses false) = %v; want ErrUnmovable naming 10.77.0.2/24 and the fix", err)
	}
	requireSame(t, "refusal", before, dump(t, l.host))

	f := NewFake()
	f.AddLink("uplink", "device", "52:54:00:00:00:01", "", "10.77.0.2/24", "2001:db8:77::2/64")
	_, ferr := f.EnsureBridge(context.Background(), b, nil)
	if ferr == nil || ferr.Error() != err.Error() {
		t.Errorf("Fake refuses with %v;\nManager with %v", ferr, err)
	}

	l.host.Script(t, "ip addr flush dev uplink scope global")
	if _, err := l.m.EnsureBridge(context.Background(), b, &rv); err != nil {
		t.Errorf("EnsureBridge(uplink without addresses) = %v", err)
	}
}

// TestMovePolicyRouting: routes of other tables through the uplink move
// with it, both families, so that `ip rule from 10.77.0.2 lookup 100` keeps
// its path; before, they vanished with the uplink's last address and that
// source silently took the main table's gateway.
func TestMovePolicyRouting(t *testing.T) {
	l := newLab(t, true)
	l.host.Script(t, `
		ip route add default via 10.77.0.1 dev uplink table 100
		ip route add 10.55.0.0/24 dev uplink scope link table 100
		ip -6 route add default via 2001:db8:77::1 dev uplink table 100
		ip rule add pref 100 from 10.77.0.2 lookup 100`)
	moveAndCheck(t, l, []string{"ip", "route", "show", "table", "all", "dev", "br-up"}, []string{
		"default via 10.77.0.1 table 100",
		"10.55.0.0/24 table 100 scope link",
	})
	l2 := newLab(t, true)
	l2.host.Script(t, `
		ip -6 route add default via 2001:db8:77::1 dev uplink table 100
		ip -6 route add 2001:db8:55::/64 via 2001:db8:77::1 dev uplink table 100`)
	moveAndCheck(t, l2, []string{"ip", "-6", "route", "show", "table", "100"}, []string{
		"2001:db8:55::/64 via 2001:db8:77::1 dev br-up metric 1024",
		"default via 2001:db8:77::1 dev br-up metric 1024",
	})
}

// TestMovePermanentNeighbours: static ARP and NDP entries on the uplink
// move to the bridge; before, the kernel flushed them with the uplink's
// last address.
func TestMovePermanentNeighbours(t *testing.T) {
	l := newLab(t, true)
	l.host.Script(t, `
		ip neigh add 10.77.0.9 lladdr 52:54:00:aa:bb:09 nud permanent dev uplink
		ip -6 neigh add 2001:db8:77::9 lladdr 52:54:00:aa:bb:19 nud permanent dev uplink`)
	moveAndCheck(t, l, []string{"ip", "neigh", "show", "nud", "permanent", "dev", "br-up"}, []string{
		"10.77.0.9 lladdr 52:54:00:aa:bb:09 PERMANENT",
		"2001:db8:77::9 lladdr 52:54:00:aa:bb:19 PERMANENT",
	})
}

// startFakeDHCPClient starts, in ns, a process whose command line is
// dhclient's on link (`dhclient -d -4 LINK`): no DHCP client is installed
// on the test machine, and detection reads only /proc. It is killed at
// cleanup. It returns its pid.
func startFakeDHCPClient(t *testing.T, ns string, link string) int {
	t.Helper()
	cmd := exec.Command("ip", "netns", "exec", ns, "bash", "-c",
		`exec -a dhclient /usr/bin/python3 -c "import time; time.sleep(600)" -d -4 `+link)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	deadline := time.Now().Add(10 * time.Second)
	for {
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", cmd.Process.Pid))
		if strings.HasPrefix(string(b), "dhclient\x00") {
			return cmd.Process.Pid
		}
		if time.Now().After(deadline) {
			t.Fatalf("fake dhclient did not start: %q", b)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestDynamicAddressRefused: an uplink address with a finite lifetime (a
// DHCP lease of a client without a manager) is refused by default, before
// any change, with a message naming the address, its lifetime, the client
// and the fix; before, it was moved with its lifetime and expired on the
// bridge. With manager: kernel it moves as a static address (valid_lft
// forever), IPv4 and IPv6 alike.
func TestDynamicAddressRefused(t *testing.T) {
	l := newLab(t, true)
	l.host.Script(t, `
		ip -4 addr flush dev uplink scope global
		ip addr add 10.77.0.2/24 dev uplink valid_lft 300 preferred_lft 300
		ip route add default via 10.77.0.1 dev uplink metric 100
		ip -6 addr add 2001:db8:77::5/64 dev uplink valid_lft 300 preferred_lft 300 nodad`)
	pid := startFakeDHCPClient(t, l.host.Name, "uplink")
	before := dump(t, l.host)
	var rv revert.Reverter
	_, err := l.m.EnsureBridge(context.Background(), upBridge(), &rv)
	if !errors.Is(err, ErrDynamicAddress) {
		t.Fatalf("EnsureBridge = %v; want ErrDynamicAddress", err)
	}
	t.Logf("refused: %v", err)
	for _, w := range []string{"10.77.0.2/24 (valid for ", "2001:db8:77::5/64 (valid for ",
		fmt.Sprintf("dhclient (pid %d)", pid), "iface br-up inet dhcp", "bridge_ports uplink", "manager: kernel"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("refusal lacks %q", w)
		}
	}
	requireSame(t, "refusal", before, dump(t, l.host))

	// manager: virtbridged outside virtbridged (the hook, the CLI): refused,
	// saying virtbridged must run; in virtbridged (KeepsLeases) moved.
	b := upBridge()
	b.Manager = "virtbridged"
	_, err = l.m.EnsureBridge(context.Background(), b, &rv)
	if !errors.Is(err, ErrDynamicAddress) || !strings.Contains(err.Error(), "start virtbridged (systemctl start virtbridged") ||
		!strings.Contains(err.Error(), fmt.Sprintf("dhclient (pid %d)", pid)) {
		t.Fatalf("EnsureBridge(manager virtbridged, not in virtbridged) = %v; want the refusal saying virtbridged must run", err)
	}
	requireSame(t, "refusal of manager: virtbridged", before, dump(t, l.host))
	// In virtbridged: the DHCPv4 lease would move (virtbridged keeps it),
	// the IPv6 one with a lifetime (DHCPv6) is still refused.
	l.m.KeepsLeases = true
	_, err = l.m.EnsureBridge(context.Background(), b, &rv)
	if !errors.Is(err, ErrDynamicAddress) || !strings.Contains(err.Error(), "DHCPv4 leases only") ||
		!strings.Contains(err.Error(), "2001:db8:77::5/64") || strings.Contains(err.Error(), "10.77.0.2/24") {
		t.Fatalf("EnsureBridge(manager virtbridged, in virtbridged, a DHCPv6 lease) = %v; want that lease refused alone", err)
	}
	requireSame(t, "refusal of a DHCPv6 lease under manager: virtbridged", before, dump(t, l.host))
	l.host.Run(t, "ip", "-6", "addr", "del", "2001:db8:77::5/64", "dev", "uplink")
	before6 := dump(t, l.host)
	if _, err := l.m.EnsureBridge(context.Background(), b, &rv); err != nil {
		t.Fatalf("EnsureBridge(manager virtbridged, in virtbridged) = %v", err)
	}
	if err := rv.Fail(); err != nil {
		t.Fatalf("undo: %v", err)
	}
	requireSame(t, "undo", before6, dump(t, l.host))
	l.m.KeepsLeases = false
	l.host.Run(t, "ip", "-6", "addr", "add", "2001:db8:77::5/64", "dev", "uplink", "valid_lft", "300", "preferred_lft", "300", "nodad")
	before = dump(t, l.host)

	b.Manager = "kernel"
	if _, err := l.m.EnsureBridge(context.Background(), b, &rv); err != nil {
		t.Fatalf("EnsureBridge(manager kernel) = %v", err)
	}
	got := l.host.Run(t, "ip", "addr", "show", "dev", "br-up")
	for _, w := range []string{"inet 10.77.0.2/24", "inet6 2001:db8:77::5/64"} {
		i := strings.Index(got, w)
		if i < 0 || !strings.HasPrefix(strings.TrimSpace(strings.SplitN(got[i:], "\n", 3)[1]), "valid_lft forever") {
			t.Errorf("%s not on the bridge without lifetime:\n%s", w, got)
		}
	}
	if err := rv.Fail(); err != nil {
		t.Fatalf("undo: %v", err)
	}
	requireSame(t, "undo", before, dump(t, l.host))
}

// TestMoveMultipathLegs: an IPv4 multipath route with a leg through the
// uplink keeps that leg, now through the bridge (before, it ended "dead
// linkdown"); an IPv6 route with ECMP siblings on the uplink and another
// link moves its uplink sibling.
func TestMoveMultipathLegs(t *testing.T) {
	l := newLab(t, true)
	l.host.Script(t, `
		ip link add side type veth peer name sidep
		ip link set sidep up
		ip link set side up
		ip addr add 10.60.0.2/24 dev side
		ip -6 addr add 2001:db8:60::2/64 dev side nodad
		ip route add 10.50.0.0/24 nexthop via 10.77.0.1 dev uplink nexthop via 10.60.0.1 dev side
		ip -6 route add 2001:db8:50::/64 nexthop via 2001:db8:77::1 dev uplink nexthop via 2001:db8:60::1 dev side`)
	moveAndCheck(t, l, []string{"ip", "route", "show", "10.50.0.0/24"}, []string{
		"nexthop via 10.77.0.1 dev br-up weight 1 \n",
		"nexthop via 10.60.0.1 dev side weight 1",
	})
	l2 := newLab(t, true)
	l2.host.Script(t, `
		ip link add side type veth peer name sidep
		ip link set sidep up
		ip link set side up
		ip -6 addr add 2001:db8:60::2/64 dev side nodad
		ip -6 route add 2001:db8:50::/64 nexthop via 2001:db8:77::1 dev uplink nexthop via 2001:db8:60::1 dev side`)
	moveAndCheck(t, l2, []string{"ip", "-6", "route", "show", "2001:db8:50::/64"}, []string{
		"nexthop via 2001:db8:77::1 dev br-up weight 1",
		"nexthop via 2001:db8:60::1 dev side weight 1",
	})
}

// TestMoveRulesNamingTheUplink: `ip rule ... iif uplink` and `oif uplink`
// rules name the bridge after the move (packets the uplink receives arrive
// on the bridge), both families, at their priority.
func TestMoveRulesNamingTheUplink(t *testing.T) {
	l := newLab(t, true)
	l.host.Script(t, `
		ip route add default via 10.77.0.1 dev uplink table 100
		ip rule add pref 200 iif uplink lookup 100
		ip -6 rule add pref 201 oif uplink lookup 100`)
	moveAndCheck(t, l, []string{"ip", "rule", "show"}, []string{"200:\tfrom all iif br-up lookup 100"})
	l2 := newLab(t, true)
	l2.host.Script(t, "ip -6 rule add pref 201 oif uplink lookup 100")
	moveAndCheck(t, l2, []string{"ip", "-6", "rule", "show"}, []string{"201:\tfrom all oif br-up lookup 100"})
}
