package links

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/virtbridge/virtbridge/internal/change"
	"github.com/virtbridge/virtbridge/internal/desired"
	"github.com/virtbridge/virtbridge/internal/revert"
	"github.com/virtbridge/virtbridge/internal/testenv/netnstest"
)

// moreRoutes gives the uplink routes that exercise the move: a static link
// route, a route whose gateway is reachable only through it, and routes
// with a source address, in both families.
const moreRoutes = `
	ip route add 10.66.0.0/24 dev uplink scope link
	ip route add 10.99.0.0/24 via 10.66.0.1 dev uplink metric 30
	ip route add 10.88.0.0/24 via 10.77.0.1 dev uplink src 10.77.0.2 metric 20 mtu 1400
	ip -6 route add 2001:db8:88::/64 via 2001:db8:77::1 dev uplink src 2001:db8:77::2 metric 50`

func upBridge() desired.Bridge {
	return desired.Bridge{Name: "br-up", Uplink: "uplink", MoveAddresses: true}
}

func kinds(cs []change.Change) map[change.Kind]int {
	k := map[change.Kind]int{}
	for _, c := range cs {
		k[c.Kind]++
	}
	return k
}

// TestEnsureBridgeMovesWithoutLoss is the main promise: while the uplink is
// enslaved and its addresses and routes move to the bridge, the host keeps
// answering pings sent every 10 ms from upstream, and everything ends on
// the bridge with its attributes.
func TestEnsureBridgeMovesWithoutLoss(t *testing.T) {
	l := newLab(t, true)
	l.host.Script(t, moreRoutes)
	waitNoTentative(t, l.host)
	before4 := l.host.Run(t, "ip", "route", "show")
	before6 := l.host.Run(t, "ip", "-6", "route", "show")
	upMAC := strings.TrimSpace(l.host.Run(t, "cat", "/sys/class/net/uplink/address"))

	pings := []struct {
		name string
		p    *netnstest.Pinger
	}{
		{"upstream -> 10.77.0.2", l.up.StartPing(t, "10.77.0.2", 300)},
		{"upstream -> 2001:db8:77::2", l.up.StartPing(t, "2001:db8:77::2", 300)},
		{"host -> 10.77.0.1", l.host.StartPing(t, "10.77.0.1", 300)},
	}
	time.Sleep(500 * time.Millisecond) // let 50 pings go before and about 250 after
	var rv revert.Reverter
	start := time.Now()
	cs, err := l.m.EnsureBridge(context.Background(), upBridge(), &rv)
	took := time.Since(start)
	if err != nil {
		t.Fatalf("EnsureBridge: %v", err)
	}
	rv.Success()
	t.Logf("EnsureBridge took %v and made %d changes:", took, len(cs))
	for _, c := range cs {
		t.Logf("  %s", c)
	}
	for _, p := range pings {
		lost, sent := p.p.Lost(t)
		t.Logf("%s: %d of %d pings lost (one every 10 ms)", p.name, lost, sent)
		if lost > 3 {
			t.Errorf("%s: %d pings lost, want at most 3", p.name, lost)
		}
	}
	k := kinds(cs)
	if k[change.BridgeCreated] != 1 || k[change.UplinkEnslaved] != 1 || k[change.AddressMoved] != 2 || k[change.RouteMoved] != 6 {
		t.Errorf("changes = %v, want 1 bridge, 1 enslave, 2 addresses, 6 routes", k)
	}

	// Routes: exactly the same, with their metric, src and mtu, on the bridge;
	// IPv6 keeps the uplink's link-local prefix route.
	after4 := l.host.Run(t, "ip", "route", "show")
	if want := strings.ReplaceAll(before4, "dev uplink", "dev br-up"); after4 != want {
		t.Errorf("IPv4 routes after the move:\n%s\nwant:\n%s", after4, want)
	}
	after6 := l.host.Run(t, "ip", "-6", "route", "show")
	want6 := strings.Split(strings.TrimSpace(strings.ReplaceAll(before6, "dev uplink", "dev br-up")), "\n")
	want6 = append(want6, "fe80::/64 dev uplink proto kernel metric 256 pref medium")
	got6 := strings.Split(strings.TrimSpace(after6), "\n")
	slices.Sort(want6)
	slices.Sort(got6)
	if !slices.Equal(trimAll(got6), trimAll(want6)) {
		t.Errorf("IPv6 routes after the move:\n%s\nwant (any order):\n%s", after6, strings.Join(want6, "\n"))
	}
	// Addresses: on the bridge, gone from the uplink (which keeps fe80::).
	upAddrs := l.host.Run(t, "ip", "-o", "addr", "show", "dev", "uplink")
	brAddrs := l.host.Run(t, "ip", "-o", "addr", "show", "dev", "br-up")
	for _, a := range []string{"10.77.0.2/24", "2001:db8:77::2/64"} {
		if strings.Contains(upAddrs, a) || !strings.Contains(brAddrs, a) {
			t.Errorf("address %s not moved:\nuplink: %s\nbridge: %s", a, upAddrs, brAddrs)
		}
	}
	// The bridge wears the uplink's MAC, pinned; the uplink is its port.
	link := l.host.Run(t, "ip", "-d", "link", "show", "dev", "br-up")
	if !strings.Contains(link, "link/ether "+upMAC) {
		t.Errorf("bridge MAC is not the uplink's %s:\n%s", upMAC, link)
	}
	if got := strings.TrimSpace(l.host.Run(t, "cat", "/sys/class/net/br-up/addr_assign_type")); got != "3" {
		t.Errorf("bridge addr_assign_type = %s, want 3 (NET_ADDR_SET)", got)
	}
	if !strings.Contains(l.host.Run(t, "ip", "link", "show", "dev", "uplink"), "master br-up state UP") {
		t.Errorf("uplink not an up port of br-up:\n%s", l.host.Run(t, "ip", "link", "show", "dev", "uplink"))
	}
	// And the host still answers.
	l.up.Run(t, "ping", "-n", "-c", "2", "-i", "0.2", "-W", "1", "10.77.0.2")
	l.up.Run(t, "ping", "-n", "-c", "2", "-i", "0.2", "-W", "1", "-6", "2001:db8:77::2")
	l.host.Run(t, "ping", "-n", "-c", "2", "-i", "0.2", "-W", "1", "-6", "2001:db8:77::1")
}

func trimAll(ss []string) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = strings.TrimSpace(s)
	}
	return out
}

// TestEnsureBridgeIdempotent runs EnsureBridge twice: the second run makes
// no change and leaves every byte of the namespace's state as it was.
func TestEnsureBridgeIdempotent(t *testing.T) {
	for _, tc := range []struct {
		name string
		b    desired.Bridge
	}{
		{"uplink moved", desired.Bridge{Name: "br-up", Uplink: "uplink", STP: true, ForwardDelay: 4, MTU: 1400, MoveAddresses: true}},
		{"uplink by MAC, no addresses to move", desired.Bridge{Name: "br-up", UplinkMAC: "set below"}},
		{"no uplink", desired.Bridge{Name: "br-iso", MTU: 9000}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			l := newLab(t, true)
			l.host.Script(t, moreRoutes)
			b := tc.b
			if b.UplinkMAC != "" {
				b.UplinkMAC = strings.TrimSpace(l.host.Run(t, "cat", "/sys/class/net/uplink/address"))
			}
			if !b.MoveAddresses && b.UplinkMAC != "" {
				// Addresses kept on an uplink are refused (they would be
				// cut off): an uplink without them.
				l.host.Script(t, "ip addr flush dev uplink scope global")
			}
			var rv revert.Reverter
			cs, err := l.m.EnsureBridge(context.Background(), b, &rv)
			if err != nil || len(cs) == 0 {
				t.Fatalf("first EnsureBridge = %v, %v; want changes", cs, err)
			}
			rv.Success()
			before := dump(t, l.host)
			start := time.Now()
			cs, err = l.m.EnsureBridge(context.Background(), b, &rv)
			t.Logf("second EnsureBridge (nothing to do) took %v", time.Since(start))
			if err != nil || len(cs) != 0 || rv.Len() != 0 {
				t.Fatalf("second EnsureBridge = %v, %v (%d undo steps); want no change", cs, err, rv.Len())
			}
			requireSame(t, "second EnsureBridge", before, dump(t, l.host))
			if b.Uplink == "" && b.UplinkMAC == "" {
				// A port with the lowest MAC there is does not change a pinned
				// bridge MAC.
				mac := l.host.Run(t, "cat", "/sys/class/net/br-iso/address")
				l.host.Script(t, `
					ip tuntap add dev low mode tap
					ip link set low address 02:00:00:00:00:01 master br-iso up`)
				if got := l.host.Run(t, "cat", "/sys/class/net/br-iso/address"); got != mac {
					t.Errorf("bridge MAC went from %s to %s when a port joined", mac, got)
				}
			}
		})
	}
}
