package links

import (
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// The executor of the move's steps over netlink (the order and the
// decisions are Plan's: see planmove.go). Each step pushes its undo.

// addrFlags keeps the address flags one may ask for when adding.
func addrFlags(a netlink.Addr) int {
	keep := unix.IFA_F_NOPREFIXROUTE | unix.IFA_F_MCAUTOJOIN
	if a.IP.To4() == nil {
		keep |= unix.IFA_F_NODAD | unix.IFA_F_HOMEADDRESS | unix.IFA_F_MANAGETEMPADDR
	}
	return a.Flags & keep
}

// onLink returns a copy of a to add on link (name), with the label, flags
// and broadcast the kernel will keep as they were; on another link it has
// no lifetime. Pass it to netlink with
// cp: netlink rewrites the Broadcast of the Addr it is given.
func onLink(a netlink.Addr, from, to string) netlink.Addr {
	c := a
	c.LinkIndex = 0
	c.Flags = addrFlags(a)
	if from != to {
		// On the bridge an address is static: a lifetime copied there
		// would expire with nobody to renew it (manager: kernel moves
		// dynamic addresses; the others are refused before).
		c.ValidLft, c.PreferedLft = 0, 0
	}
	if c.Broadcast == nil {
		c.Broadcast = net.IPv4zero // none, rather than netlink's computed one
	}
	switch {
	case a.Label == from || a.Label == "":
		c.Label = to
	case strings.HasPrefix(a.Label, from+":") && len(to+a.Label[len(from):]) <= 15:
		c.Label = to + a.Label[len(from):]
	default:
		c.Label = a.Label
	}
	if a.IP.To4() == nil {
		c.Label = ""
	}
	return c
}

// addAddr adds the uplink's address a on the bridge.
func (m *Manager) addAddr(r *run, a netlink.Addr) error {
	br, upName, brName := r.br, r.up.Attrs().Name, r.b.Name
	c := onLink(a, upName, brName)
	if c.IP.To4() == nil {
		c.Flags |= unix.IFA_F_NODAD
	}
	if r.back && a.IP.To4() != nil && a.Flags&unix.IFA_F_PERMANENT == 0 && a.ValidLft > 0 && uint32(a.ValidLft) != ^uint32(0) {
		// A lease back on the uplink ends when it would have on the
		// bridge: its DHCP client, started again, renews it.
		c.ValidLft, c.PreferedLft = a.ValidLft, min(a.PreferedLft, a.ValidLft)
	}
	if err := m.h.AddrAdd(br, cp(c)); err != nil {
		return fmt.Errorf("adding address %s to bridge %q: %w", addrString(a), brName, err)
	}
	r.rv.Add(func() error {
		err := m.h.AddrDel(br, cp(c))
		if errors.Is(err, unix.EADDRNOTAVAIL) || isNotFound(err) {
			return nil
		}
		return m.wrap(fmt.Sprintf("deleting address %s from bridge %q", addrString(a), brName), err)
	})
	return nil
}

// delAddr deletes address a from the uplink.
func (m *Manager) delAddr(r *run, a netlink.Addr) error {
	up, upName := r.up, r.up.Attrs().Name
	c := onLink(a, upName, upName)
	if err := m.h.AddrDel(up, cp(c)); err != nil && !errors.Is(err, unix.EADDRNOTAVAIL) {
		return fmt.Errorf("deleting address %s from %q: %w", addrString(a), upName, err)
	}
	r.rv.Add(func() error {
		err := m.h.AddrAdd(up, cp(c))
		if errors.Is(err, unix.EEXIST) {
			return nil
		}
		return m.wrap(fmt.Sprintf("adding address %s back to %q", addrString(a), upName), err)
	})
	return nil
}

// routeFor is a copy of rt to send to the kernel: the kernel's own nexthop
// flags (dead, linkdown, offload...) are refused in a request.
func routeFor(rt netlink.Route, link int) netlink.Route {
	c := rt
	c.LinkIndex = link
	c.Flags = rt.Flags & unix.RTNH_F_ONLINK
	return c
}

// addRoute appends the uplink's route rt on the bridge.
func (m *Manager) addRoute(r *run, rt netlink.Route) error {
	br, brName := r.br.Attrs().Index, r.b.Name
	c := routeFor(rt, br)
	err := m.h.RouteAppend(cp(c))
	if errors.Is(err, unix.EEXIST) {
		// The kernel made it on the bridge itself with an address added
		// just before (the prefix route of an IPv6 address with a
		// lifetime, which Plan moves as it does not outlive the address
		// on the uplink): there, and nothing of ours to undo.
		return nil
	}
	if err != nil {
		return fmt.Errorf("adding route %q on bridge %q: %w", routeString(rt), brName, err)
	}
	r.rv.Add(func() error {
		err := m.h.RouteDel(cp(c))
		if errors.Is(err, unix.ESRCH) {
			return nil
		}
		return m.wrap(fmt.Sprintf("deleting route %q from bridge %q", routeString(rt), brName), err)
	})
	return nil
}

// delRoute deletes route rt from the uplink.
func (m *Manager) delRoute(r *run, rt netlink.Route) error {
	upName := r.up.Attrs().Name
	c := routeFor(rt, rt.LinkIndex)
	if err := m.h.RouteDel(cp(c)); err != nil && !errors.Is(err, unix.ESRCH) {
		return fmt.Errorf("deleting route %q from %q: %w", routeString(rt), upName, err)
	}
	r.rv.Add(func() error {
		// Appended: the bridge's copy of the same key may still be there.
		err := m.h.RouteAppend(cp(c))
		if errors.Is(err, unix.EEXIST) {
			return nil
		}
		return m.wrap(fmt.Sprintf("adding route %q back to %q", routeString(rt), upName), err)
	})
	return nil
}

// siblings returns rt as the routes the kernel keeps: an IPv6 route with
// ECMP siblings is dumped as one multipath route, yet each sibling is a
// route of its own, added (appended) and deleted alone. A move stopped
// between adding a route on the bridge and deleting it from the uplink
// (a SIGKILL) leaves such a pair; listed as one multipath route it would
// be neither moved nor seen on the bridge. IPv4 multipath routes are one
// route and stay whole.
func siblings(rt netlink.Route) []netlink.Route {
	if rt.Family != netlink.FAMILY_V6 || len(rt.MultiPath) == 0 {
		return []netlink.Route{rt}
	}
	out := make([]netlink.Route, 0, len(rt.MultiPath))
	for _, nh := range rt.MultiPath {
		c := rt
		c.MultiPath = nil
		c.LinkIndex, c.Gw, c.Flags = nh.LinkIndex, nh.Gw, nh.Flags
		out = append(out, c)
	}
	return out
}

// addOrderNL is addOrder for addresses as netlink reads them (the RA
// role's, slaac_linux.go).
func addOrderNL(addrs []netlink.Addr) []netlink.Addr {
	var v4, v6 []netlink.Addr
	for _, a := range addrs {
		if a.IP.To4() != nil {
			v4 = append(v4, a)
		} else {
			v6 = append(v6, a)
		}
	}
	slices.Reverse(v6)
	return append(v4, v6...)
}
