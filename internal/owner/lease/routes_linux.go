package lease

import (
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// BridgeRoutes is the Routes of a link in the calling process's network
// namespace, over netlink.
type BridgeRoutes struct{ Link string }

var _ Routes = BridgeRoutes{}

// Held lists the link's IPv4 routes of every table but local that go with
// addr; the kernel's own prefix route (proto kernel, scope link) is not
// one: it comes and goes with the address.
func (b BridgeRoutes) Held(addr netip.Prefix) ([]Route, error) {
	l, err := netlink.LinkByName(b.Link)
	if err != nil {
		return nil, fmt.Errorf("reading link %q: %w", b.Link, err)
	}
	rs, err := netlink.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{LinkIndex: l.Attrs().Index, Table: unix.RT_TABLE_UNSPEC},
		netlink.RT_FILTER_OIF|netlink.RT_FILTER_TABLE)
	if err != nil {
		return nil, fmt.Errorf("listing the routes of %q: %w", b.Link, err)
	}
	var out []Route
	for _, r := range rs {
		if r.Table == unix.RT_TABLE_LOCAL || (r.Protocol == unix.RTPROT_KERNEL && r.Scope == netlink.SCOPE_LINK) {
			continue
		}
		x := Route{Table: r.Table, Metric: r.Priority}
		x.Gw, _ = netip.AddrFromSlice(r.Gw.To4())
		x.Src, _ = netip.AddrFromSlice(r.Src.To4())
		if r.Dst != nil {
			ip, _ := netip.AddrFromSlice(r.Dst.IP.To4())
			ones, _ := r.Dst.Mask.Size()
			x.Dst = netip.PrefixFrom(ip, ones)
		}
		if (x.Gw.IsValid() && addr.Contains(x.Gw)) || x.Src == addr.Addr() {
			out = append(out, x)
		}
	}
	return out, nil
}

// Add makes r through the link (replacing one of the same key).
func (b BridgeRoutes) Add(r Route) error {
	l, err := netlink.LinkByName(b.Link)
	if err != nil {
		return fmt.Errorf("reading link %q: %w", b.Link, err)
	}
	nr := &netlink.Route{LinkIndex: l.Attrs().Index, Table: r.Table, Priority: r.Metric, Protocol: unix.RTPROT_DHCP}
	if r.Dst.IsValid() && r.Dst.Bits() > 0 {
		nr.Dst = &net.IPNet{IP: net.IP(r.Dst.Addr().AsSlice()), Mask: net.CIDRMask(r.Dst.Bits(), 32)}
	} else {
		nr.Dst = &net.IPNet{IP: net.IPv4zero.To4(), Mask: net.CIDRMask(0, 32)}
	}
	if r.Gw.IsValid() {
		nr.Gw = net.IP(r.Gw.AsSlice())
	} else {
		nr.Scope = netlink.SCOPE_LINK
	}
	if r.Src.IsValid() {
		nr.Src = net.IP(r.Src.AsSlice())
	}
	if err := netlink.RouteReplace(nr); err != nil {
		return fmt.Errorf("adding route %s through %q: %w", r, b.Link, err)
	}
	return nil
}
