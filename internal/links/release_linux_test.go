package links

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/virtbridge/virtbridge/internal/change"
	"github.com/virtbridge/virtbridge/internal/desired"
	"github.com/virtbridge/virtbridge/internal/revert"
)

// carryAll gives the lab's uplink what the kernel path moves besides its
// addresses and main-table routes: routes of another table (both
// families), a rule using it, rules naming the uplink, permanent
// neighbours and a multipath route with a leg through it.
const carryAll = `
	ip link add side type veth peer name sidep
	ip link set sidep up
	ip link set side up
	ip addr add 10.60.0.2/24 dev side
	ip route add 10.50.0.0/24 nexthop via 10.77.0.1 dev uplink nexthop via 10.60.0.1 dev side
	ip route add default via 10.77.0.1 dev uplink table 100
	ip route add 10.55.0.0/24 dev uplink scope link table 100
	ip -6 route add default via 2001:db8:77::1 dev uplink table 100
	ip rule add pref 100 from 10.77.0.2 lookup 100
	ip rule add pref 200 iif uplink lookup 100
	ip -6 rule add pref 201 oif uplink lookup 100
	ip neigh add 10.77.0.9 lladdr 52:54:00:aa:bb:09 nud permanent dev uplink
	ip -6 neigh add 2001:db8:77::9 lladdr 52:54:00:aa:bb:19 nud permanent dev uplink`

// handOff runs EnsureBridge for the lab's bridge and keeps its changes.
func handOff(t *testing.T, l *lab) {
	t.Helper()
	var rv revert.Reverter
	if _, err := l.m.EnsureBridge(context.Background(), upBridge(), &rv); err != nil {
		t.Fatalf("EnsureBridge: %v", err)
	}
	rv.Success()
	if got := l.host.Run(t, "ip", "-4", "addr", "show", "dev", "uplink"); strings.Contains(got, "10.77.0.2") {
		t.Fatalf("the handoff left the address on the uplink:\n%s", got)
	}
}

// TestReleaseRestoresTheUplink: handoff, then ReleaseBridge: the namespace
// is as before the handoff — addresses, routes of every table, multipath
// legs, rules, permanent neighbours on the uplink, and no bridge.
func TestReleaseRestoresTheUplink(t *testing.T) {
	l := newLab(t, true)
	l.host.Script(t, carryAll)
	before := dump(t, l.host)
	handOff(t, l)
	var rv revert.Reverter
	cs, kept, err := l.m.ReleaseBridge(context.Background(), upBridge(), &rv)
	if err != nil {
		t.Fatalf("ReleaseBridge: %v", err)
	}
	rv.Success()
	for _, c := range cs {
		t.Logf("  %s", c)
	}
	if len(kept) != 0 || kinds(cs)[change.BridgeDeleted] != 1 || kinds(cs)[change.UplinkReleased] != 1 {
		t.Errorf("kept %v, changes %v; want the uplink released and the bridge deleted", kept, kinds(cs))
	}
	requireSame(t, "release", before, dump(t, l.host))
	l.host.Run(t, "ping", "-c1", "-W5", "10.77.0.1")
}

// TestReleaseKeepsABridgeWithATap: a bridge with a VM tap stays, without
// the uplink nor the addresses, which are back on the uplink; the tap is
// named.
func TestReleaseKeepsABridgeWithATap(t *testing.T) {
	l := newLab(t, true)
	handOff(t, l)
	l.host.Script(t, "ip tuntap add vnet7 mode tap\nip link set vnet7 master br-up")
	var rv revert.Reverter
	cs, kept, err := l.m.ReleaseBridge(context.Background(), upBridge(), &rv)
	if err != nil {
		t.Fatalf("ReleaseBridge: %v", err)
	}
	rv.Success()
	if !slices.Equal(kept, []string{"vnet7"}) || kinds(cs)[change.BridgeDeleted] != 0 {
		t.Errorf("kept %v, changes %v; want the bridge kept for vnet7", kept, cs)
	}
	if got := l.host.Run(t, "ip", "addr", "show", "dev", "uplink"); !strings.Contains(got, "10.77.0.2/24") || !strings.Contains(got, "2001:db8:77::2/64") || strings.Contains(got, "master") {
		t.Errorf("uplink after release:\n%s", got)
	}
	if got := l.host.Run(t, "ip", "addr", "show", "dev", "br-up"); strings.Contains(got, "10.77.0.2") {
		t.Errorf("bridge after release still has the address:\n%s", got)
	}
	if got := l.host.Run(t, "ip", "route", "show", "default"); !strings.Contains(got, "dev uplink") {
		t.Errorf("default route after release: %s", got)
	}
	l.host.Run(t, "ping", "-c1", "-W5", "10.77.0.1")
}

// TestReleaseRefusesABridgeNotOurs: a bridge made by hand (no virtbridge
// alias) that the configuration does not declare is not taken apart: the
// refusal says whose it may be and changes nothing.
func TestReleaseRefusesABridgeNotOurs(t *testing.T) {
	l := newLab(t, true)
	l.host.Script(t, "ip link add br-x type bridge\nip link set br-x up\nip link set uplink master br-x")
	before := dump(t, l.host)
	_, _, err := l.m.ReleaseBridge(context.Background(), desired.Bridge{Name: "br-x"}, nil)
	if !errors.Is(err, ErrNotOurs) || !strings.Contains(err.Error(), `"br-x"`) {
		t.Fatalf("ReleaseBridge of a hand-made bridge = %v; want ErrNotOurs naming it", err)
	}
	requireSame(t, "refused release", before, dump(t, l.host))
}

// TestReleaseIPv6AnswersAtOnce: an IPv6 address that went through
// duplicate address detection on the uplink before the handoff comes back
// on it with nodad — it is in use on that very segment — so it answers at
// once instead of sitting tentative.
func TestReleaseIPv6AnswersAtOnce(t *testing.T) {
	l := newLab(t, true)
	l.host.Run(t, "ip", "-6", "addr", "add", "2001:db8:77::3/64", "dev", "uplink")
	for end := time.Now().Add(30 * time.Second); strings.Contains(l.host.Run(t, "ip", "-6", "addr", "show", "dev", "uplink"), "tentative"); {
		if time.Now().After(end) {
			t.Fatal("DAD on the uplink did not end within 30 s")
		}
		time.Sleep(100 * time.Millisecond)
	}
	handOff(t, l)
	var rv revert.Reverter
	if _, _, err := l.m.ReleaseBridge(context.Background(), upBridge(), &rv); err != nil {
		t.Fatalf("ReleaseBridge: %v", err)
	}
	rv.Success()
	got := l.host.Run(t, "ip", "-6", "addr", "show", "dev", "uplink")
	if !strings.Contains(got, "2001:db8:77::3/64") || strings.Contains(got, "tentative") {
		t.Errorf("right after the release the uplink has:\n%s\nwant 2001:db8:77::3/64, not tentative", got)
	}
}
