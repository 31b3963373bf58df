package lease

import (
	"context"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/vishvananda/netns"

	"github.com/virtbridge/virtbridge/internal/testenv/netnstest"
)

// TestRoutesFollowOnTheKernel: the Keeper over a fake server (a NAK,
// then another address in another subnet) with the real BridgeAddr and
// BridgeRoutes on a bridge in a namespace: the kernel drops the default
// route and a route of table 100 with the old address; both come back
// through the new router on the bridge.
func TestRoutesFollowOnTheKernel(t *testing.T) {
	ns := netnstest.New(t, "vbk2r")
	ns.Script(t, `ip link add br0 type bridge forward_delay 0 stp_state 0
ip link add d0 type veth peer name d1
ip link set d0 master br0
ip link set d1 up
ip link set d0 up
ip link set br0 up
ip addr add 10.88.0.104/24 dev br0 valid_lft 100 preferred_lft 100
ip route add default via 10.88.0.1 dev br0
ip route add 192.0.2.0/24 via 10.88.0.1 dev br0 table 100`)
	f := &fake{stop: func(f *fake) bool { return strings.Count(strings.Join(f.log, "\n"), "route-moved") == 2 }}
	newRouter := net.IPv4(10, 89, 0, 1)
	f.answer = func(r *dhcpv4.DHCPv4) (*dhcpv4.DHCPv4, error) {
		if r.MessageType() == dhcpv4.MessageTypeRequest {
			return dhcpv4.NewReplyFromRequest(r, dhcpv4.WithMessageType(dhcpv4.MessageTypeNak),
				dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.IP(server.AsSlice()))))
		}
		return dhcpv4.NewReplyFromRequest(r, dhcpv4.WithMessageType(dhcpv4.MessageTypeAck), dhcpv4.WithYourIP(net.IPv4(10, 89, 0, 150)),
			dhcpv4.WithNetmask(net.CIDRMask(24, 32)), dhcpv4.WithLeaseTime(3600),
			dhcpv4.WithOption(dhcpv4.OptServerIdentifier(newRouter)), dhcpv4.WithOption(dhcpv4.OptRouter(newRouter)))
	}
	l := takenOver()
	l.Router = server
	errc := make(chan error, 1)
	go func() {
		// This thread enters the namespace and dies with the goroutine:
		// never unlocked, never reused.
		runtime.LockOSThread()
		if err := netns.Set(ns.Handle); err != nil {
			errc <- err
			return
		}
		f.now = t0
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		f.cancel = cancel
		k := &Keeper{Bridge: "br0", Uplink: "d0", ID: Identity{MAC: mac}, Transport: f, Addr: BridgeAddr{Link: "br0"},
			Routes: BridgeRoutes{Link: "br0"}, Rec: f, Now: func() time.Time { return f.now },
			Wait: func(ctx context.Context, _ time.Time) error { return ctx.Err() }}
		k.Run(ctx, l)
		errc <- nil
	}()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	t.Logf("keeper:\n%s", strings.Join(f.log, "\n"))
	addrs := ns.Run(t, "ip", "-4", "-br", "addr", "show", "dev", "br0")
	def := ns.Run(t, "ip", "-4", "route", "show", "default")
	t100 := ns.Run(t, "ip", "-4", "route", "show", "table", "100")
	if !strings.Contains(addrs, "10.89.0.150/24") || strings.Contains(addrs, "10.88.0.104") {
		t.Errorf("bridge addresses: %s", addrs)
	}
	if strings.TrimSpace(def) != "default via 10.89.0.1 dev br0 proto dhcp" {
		t.Errorf("default route: %q, want via the new router on br0", def)
	}
	if strings.TrimSpace(t100) != "192.0.2.0/24 via 10.89.0.1 dev br0 proto dhcp" {
		t.Errorf("table 100: %q, want via the new router on br0", t100)
	}
}
