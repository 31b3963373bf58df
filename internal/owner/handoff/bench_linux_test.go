package handoff

import (
	"context"
	"errors"
	"testing"

	"github.com/godbus/dbus/v5"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/virtbridge/virtbridge/internal/desired"
	"github.com/virtbridge/virtbridge/internal/links"
	"github.com/virtbridge/virtbridge/internal/revert"
	"github.com/virtbridge/virtbridge/internal/testenv/netnstest"
)

// BenchmarkSteadyEnsureBridge is the owners' share of a steady prepare:
// EnsureBridge on a bridge the kernel path already made ready, which
// reads the planner's snapshot through the engine's links Manager and
// asks no manager (a dial fails the benchmark). "before" is the fast
// path it replaced (kernelMade, kept here as the reference: a netlink
// handle opened per call, the two links and the uplink's addresses), so
// one run gives the ratio.
func BenchmarkSteadyEnsureBridge(b *testing.B) {
	ns := netnstest.New(b, "vbop")
	ns.Script(b, `ip link add uplink0 type veth peer name peer0
ip link add br0 type bridge
ip link set uplink0 master br0
ip link set uplink0 up
ip link set br0 up
ip addr add 10.9.0.2/24 dev br0
ip route add default via 10.9.0.1 dev br0`)
	setAlias(b, ns, "br0", links.ManagedAlias)
	l, err := links.NewAt(ns.Handle)
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	br := desired.Bridge{Name: "br0", Uplink: "uplink0", MoveAddresses: true}
	b.Run("before", func(b *testing.B) {
		for b.Loop() {
			if !kernelMadeBefore(ns.Handle, br) {
				b.Fatal("the ready bridge is not kernel-made")
			}
		}
	})
	b.Run("after", func(b *testing.B) {
		o := &Owners{NS: ns.Handle, Links: l, Dial: func() (*dbus.Conn, error) { return nil, errors.New("dialled") }}
		for b.Loop() {
			var rv revert.Reverter
			if cs, handled, err := o.EnsureBridge(context.Background(), br, &rv); handled || err != nil || len(cs) > 0 {
				b.Fatalf("EnsureBridge = %v, %v, %v; want the kernel path's, untouched", cs, handled, err)
			}
		}
	})
}

// kernelMadeBefore is the fast path EnsureBridge had before it read the
// planner's snapshot (main at f18e739, handoff.kernelMade), for the
// benchmark's reference only.
func kernelMadeBefore(ns netns.NsHandle, b desired.Bridge) bool {
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		return false
	}
	defer h.Close()
	br, err := h.LinkByName(b.Name)
	if err != nil || br.Type() != "bridge" || br.Attrs().Alias != links.ManagedAlias {
		return false
	}
	up, err := h.LinkByName(b.Uplink)
	if err != nil || up.Attrs().MasterIndex != br.Attrs().Index {
		return false
	}
	addrs, err := h.AddrList(up, netlink.FAMILY_ALL)
	if err != nil {
		return false
	}
	for _, a := range addrs {
		if a.IP.IsGlobalUnicast() {
			return false
		}
	}
	return true
}
