package links

import (
	"errors"
	"fmt"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Multipath routes with a leg through the uplink and another through a
// third link. Such a route loses its uplink leg once the uplink is a
// bridge port (IPv4: "dead linkdown"). The route is replaced in place
// (same key: destination, tos, metric, table) by one whose uplink legs go
// through the bridge, the other legs as they were, in their order; the
// undo replaces it back. (An IPv6 route whose siblings are on the uplink
// and the bridge only is a move stopped midway: its siblings move like
// plain routes, see splitSiblings.) Plan picks them (multipathVia).

// multipathOn is a copy of rt whose legs through link from go through link
// to, with the kernel's own nexthop flags (dead, linkdown...) dropped.
func multipathOn(rt netlink.Route, from, to int) netlink.Route {
	c := rt
	c.Flags = rt.Flags & unix.RTNH_F_ONLINK
	c.MultiPath = make([]*netlink.NexthopInfo, len(rt.MultiPath))
	for i, nh := range rt.MultiPath {
		n := *nh
		n.Flags = nh.Flags & unix.RTNH_F_ONLINK
		if n.LinkIndex == from {
			n.LinkIndex = to
		}
		c.MultiPath[i] = &n
	}
	return c
}

// moveMultipath replaces rt (what: as messages name it) so that its
// uplink legs go through the bridge.
func (m *Manager) moveMultipath(r *run, rt netlink.Route, what string) error {
	up, br := r.up.Attrs().Index, r.br.Attrs().Index
	old, c := multipathOn(rt, up, up), multipathOn(rt, up, br)
	if err := m.h.RouteReplace(&c); err != nil {
		return fmt.Errorf("moving the legs of multipath route %q from %q to bridge %q: %w", what, r.up.Attrs().Name, r.b.Name, err)
	}
	r.rv.Add(func() error {
		err := m.h.RouteReplace(&old)
		if errors.Is(err, unix.ENODEV) {
			return nil
		}
		return m.wrap(fmt.Sprintf("putting multipath route %q back on %q", what, r.up.Attrs().Name), err)
	})
	return nil
}
