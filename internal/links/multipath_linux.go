package links

import (
	"errors"
	"fmt"
	"strings"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/virtbridge/virtbridge/internal/change"
)

// Multipath routes with a leg through the uplink and another through a
// third link. Such a route loses its uplink leg once the uplink is a
// bridge port (IPv4: "dead linkdown"). The route is replaced in place
// (same key: destination, tos, metric, table) by one whose uplink legs go
// through the bridge, the other legs as they were, in their order; the
// undo replaces it back. (An IPv6 route whose siblings are on the uplink
// and the bridge only is a move stopped midway: its siblings move like
// plain routes, see siblings.)

// multipathVia reports whether rt (as dumped, IPv6 siblings not split) is
// a unicast multipath route, not in the local table, with a leg through
// the link with index uplink and, for IPv6, one through a link that is
// neither the uplink nor the bridge (index br, 0 if none yet).
func multipathVia(rt netlink.Route, uplink, br int) bool {
	if len(rt.MultiPath) == 0 || rt.Table == unix.RT_TABLE_LOCAL || !(rt.Type == unix.RTN_UNICAST || rt.Type == 0) {
		return false
	}
	via, other := false, false
	for _, nh := range rt.MultiPath {
		via = via || nh.LinkIndex == uplink
		other = other || nh.LinkIndex != uplink && nh.LinkIndex != br
	}
	return via && (rt.Family == netlink.FAMILY_V4 || other)
}

// inMultipath reports whether rt, an IPv6 sibling, belongs to one of rs.
func inMultipath(rt netlink.Route, rs []netlink.Route) bool {
	for _, x := range rs {
		if x.Family == rt.Family && x.Dst.String() == rt.Dst.String() && x.Priority == rt.Priority && x.Table == rt.Table {
			return true
		}
	}
	return false
}

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

func multipathString(rt netlink.Route, name func(int) string) string {
	var legs []string
	for _, nh := range rt.MultiPath {
		leg := "nexthop"
		if nh.Gw != nil {
			leg += " via " + nh.Gw.String()
		}
		legs = append(legs, leg+" dev "+name(nh.LinkIndex))
	}
	return routeString(rt) + " " + strings.Join(legs, " ")
}

// moveMultipath replaces each route of rs so that its uplink legs go
// through the bridge.
func (m *Manager) moveMultipath(r *run, rs []netlink.Route) error {
	up, br := r.up.Attrs().Index, r.br.Attrs().Index
	for _, rt := range rs {
		what := multipathString(rt, m.linkName)
		if err := m.step("route-replace", what); err != nil {
			return err
		}
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
		r.record(change.RouteMoved, what, r.up.Attrs().Name, r.b.Name)
	}
	return nil
}
