package lease

import (
	"context"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
)

// fakeRoutes is the bridge's routing table as the kernel keeps it: an
// address removed takes the routes that go with it along.
type fakeRoutes struct {
	f  *fake
	rs []Route
}

func (r *fakeRoutes) Held(addr netip.Prefix) ([]Route, error) {
	var out []Route
	for _, x := range r.rs {
		if (x.Gw.IsValid() && addr.Contains(x.Gw)) || x.Src == addr.Addr() {
			out = append(out, x)
		}
	}
	return out, nil
}

func (r *fakeRoutes) Add(x Route) error {
	r.f.logf("route add %s", x)
	for i, y := range r.rs {
		if y.Dst == x.Dst && y.Table == x.Table && y.Metric == x.Metric {
			r.rs[i] = x
			return nil
		}
	}
	r.rs = append(r.rs, x)
	return nil
}

// kernelAddr drops the routes of an address removed, as the kernel does.
type kernelAddr struct {
	*fake
	r *fakeRoutes
}

func (k kernelAddr) Remove(a netip.Prefix) error {
	held, _ := k.r.Held(a)
	var keep []Route
	for _, x := range k.r.rs {
		gone := false
		for _, h := range held {
			gone = gone || h == x
		}
		if !gone {
			keep = append(keep, x)
		}
	}
	k.r.rs = keep
	return k.fake.Remove(a)
}

// TestRoutesFollowANewAddress: the lease is lost (NAK) and the server
// gives another address in another subnet with another router: the
// default route and the other routes through the old router follow the
// new one, a route with the old address as source gets the new one, a
// route through another gateway of the old subnet cannot follow (named);
// each move journaled.
func TestRoutesFollowANewAddress(t *testing.T) {
	newRouter := net.IPv4(10, 89, 0, 1)
	f := &fake{stop: func(f *fake) bool { return strings.Contains(f.log[len(f.log)-1], "problem: route") }}
	f.answer = func(r *dhcpv4.DHCPv4) (*dhcpv4.DHCPv4, error) {
		if r.MessageType() == dhcpv4.MessageTypeRequest {
			return dhcpv4.NewReplyFromRequest(r, dhcpv4.WithMessageType(dhcpv4.MessageTypeNak),
				dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.IP(server.AsSlice()))))
		}
		return dhcpv4.NewReplyFromRequest(r, dhcpv4.WithMessageType(dhcpv4.MessageTypeAck), dhcpv4.WithYourIP(net.IPv4(10, 89, 0, 150)),
			dhcpv4.WithNetmask(net.CIDRMask(24, 32)), dhcpv4.WithLeaseTime(3600),
			dhcpv4.WithOption(dhcpv4.OptServerIdentifier(newRouter)), dhcpv4.WithOption(dhcpv4.OptRouter(newRouter)))
	}
	rt := &fakeRoutes{f: f, rs: []Route{
		{Dst: netip.MustParsePrefix("0.0.0.0/0"), Gw: server, Table: mainTable},
		{Dst: netip.MustParsePrefix("192.0.2.0/24"), Gw: server, Table: 100},
		{Dst: netip.MustParsePrefix("198.51.100.0/24"), Gw: netip.MustParseAddr("10.88.0.5"), Table: mainTable, Metric: 50},
		{Dst: netip.MustParsePrefix("203.0.113.0/24"), Src: leased.Addr(), Table: mainTable},
		{Dst: netip.MustParsePrefix("172.16.0.0/12"), Gw: netip.MustParseAddr("192.168.9.1"), Table: mainTable},
	}}
	l := takenOver()
	l.Router = server
	f.now = t0
	ctx, cancel := context.WithCancel(context.Background())
	f.cancel = cancel
	k := &Keeper{Bridge: "br0", Uplink: "uplink0", ID: Identity{MAC: mac}, Transport: f, Addr: kernelAddr{f, rt}, Rec: f, Routes: rt,
		Now: func() time.Time { return f.now }, Wait: func(ctx context.Context, _ time.Time) error { return ctx.Err() }}
	done := make(chan struct{})
	go func() { k.Run(ctx, l); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatalf("Run did not end; log so far:\n%s", strings.Join(f.log, "\n"))
	}
	for _, r := range rt.rs {
		f.log = append(f.log, "table: "+r.String())
	}
	got := strings.Join(f.log, "\n") + "\n"
	want := `   0s REQUEST to broadcast ciaddr 0.0.0.0 requested 10.88.0.104 client-id  mac 52:54:00:12:34:56
   0s address 10.88.0.104/24 removed
   0s journal lease-lost br0: "10.88.0.104/24 until 2026-01-02T03:01:40Z" -> "server 10.88.0.1 said NAK ()"
   0s DISCOVER mac 52:54:00:12:34:56
   0s address 10.89.0.150/24 lifetime 1h0m0s
   0s journal lease-kept br0: "" -> "10.89.0.150/24 from 10.89.0.1 for 1h0m0s until 2026-01-02T04:00:00Z"
   0s route add default via 10.89.0.1
   0s journal route-moved br0: "default via 10.88.0.1" -> "default via 10.89.0.1 (follows the lease's address 10.89.0.150/24)"
   0s route add 192.0.2.0/24 via 10.89.0.1 table 100
   0s journal route-moved br0: "192.0.2.0/24 via 10.88.0.1 table 100" -> "192.0.2.0/24 via 10.89.0.1 table 100 (follows the lease's address 10.89.0.150/24)"
   0s route add 203.0.113.0/24 src 10.89.0.150
   0s journal route-moved br0: "203.0.113.0/24 src 10.88.0.104" -> "203.0.113.0/24 src 10.89.0.150 (follows the lease's address 10.89.0.150/24)"
   0s problem: route 198.51.100.0/24 via 10.88.0.5 metric 50 through bridge "br0" cannot follow the lease's new address 10.89.0.150/24: its gateway is outside that subnet
table: 172.16.0.0/12 via 192.168.9.1
table: default via 10.89.0.1
table: 192.0.2.0/24 via 10.89.0.1 table 100
table: 203.0.113.0/24 src 10.89.0.150
`
	if got != want {
		t.Errorf("got:\n%s\nwant:\n%s", got, want)
	}
}

// TestFollowAddsTheDefaultRoute: with no default route held, the new
// lease's router gets one, as a DHCP client makes it; the same address
// got again keeps its routes (the kernel dropped them with it).
func TestFollowAddsTheDefaultRoute(t *testing.T) {
	old := Lease{Addr: leased, Router: server}
	nw := Lease{Addr: netip.MustParsePrefix("10.88.0.150/24"), Router: server}
	held := []Route{{Dst: netip.MustParsePrefix("192.0.2.0/24"), Gw: netip.MustParseAddr("10.88.0.5")}}
	moves, skipped := Follow(held, old, nw)
	var got []string
	for _, m := range moves {
		got = append(got, m.From.String()+" -> "+m.To.String())
	}
	if w := "192.0.2.0/24 via 10.88.0.5 -> 192.0.2.0/24 via 10.88.0.5 | default -> default via 10.88.0.1"; strings.Join(got, " | ") != w || len(skipped) > 0 {
		t.Errorf("Follow = %q, skipped %v; want %q", strings.Join(got, " | "), skipped, w)
	}
}
