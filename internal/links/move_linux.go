package links

import (
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"

	"github.com/virtbridge/virtbridge/internal/change"
	"github.com/virtbridge/virtbridge/internal/desired"
	"github.com/virtbridge/virtbridge/internal/owner/dhcp"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Moving the host's addresses and routes from the uplink to the bridge.
//
// The order keeps the host reachable at every instant: the uplink is
// already a bridge port (its frames are received by the bridge), then
//  1. each address is added on the bridge (the kernel adds its prefix
//     route there); IPv6 ones with IFA_F_NODAD, as they are already in use
//     on this very segment, so they answer at once instead of after DAD;
//  2. each route is added on the bridge with NLM_F_APPEND, which lets it
//     sit beside the uplink's copy of the same key (dst, tos, metric, table)
//     instead of failing with EEXIST: IPv4 keeps using the first (the
//     uplink's), IPv6 makes them ECMP siblings; either way packets flow;
//  3. each route is deleted from the uplink (by its own nexthop, so the
//     bridge's copy stays);
//  4. each address is deleted from the uplink.
//
// Every step pushes its undo, so a failure puts the uplink back exactly.
// A run killed midway (no undo) leaves some of it done; the next run reads
// what is already on the bridge (IPv6 route siblings included, see
// siblings) and skips it, pushing no undo for what it did not add, and
// still deletes the uplink's copies, so the host converges.
// Between the enslaving and step 4 the host answers on both paths: frames
// arriving on the uplink go up through the bridge, where the addresses
// (still on the uplink, and local to the whole host) are accepted, and the
// replies leave through the uplink's routes, which can still transmit.
// Measured in the tests: no ping lost at one every 10 ms, both families.

// movableAddr reports whether an address of the uplink moves to the bridge:
// every IPv4 address, and the global IPv6 ones but the temporary (privacy)
// ones and those the kernel made from router advertisements (SLAAC):
// those move with the RA role, keeping their lifetimes (takeRA,
// slaac_linux.go). Link-local addresses belong to the link.
func movableAddr(a netlink.Addr) bool {
	if a.IP.To4() != nil {
		return true
	}
	return a.Scope == unix.RT_SCOPE_UNIVERSE && !a.IP.IsLinkLocalUnicast() &&
		a.Flags&unix.IFA_F_TEMPORARY == 0 && a.Flags&flagSLAAC == 0
}

// dynamicAddr reports whether a movable address is a lease (dhcp.IsDynamic):
// it has a finite lifetime, and would expire on the bridge.
func dynamicAddr(a netlink.Addr) bool {
	return dhcp.IsDynamic(a.IP.To4() == nil, a.Flags&unix.IFA_F_PERMANENT != 0, a.Flags&flagSLAAC != 0)
}

// movableRoute reports whether a route of the uplink moves: the unicast
// routes of every table but the kernel's local one through the uplink
// alone (a route of table 100 used by an `ip rule ... lookup 100` is as
// much the host's as the main table's), except those the kernel
// re-makes itself with the addresses on the bridge (remade: the prefix
// routes of addresses without noprefixroute, and fe80::/64) and those
// learnt from router advertisements (proto ra), which move with the RA
// role (takeRA). A `proto kernel` route
// the kernel will not re-make moves like any other: NetworkManager adds
// its addresses with noprefixroute and installs their prefix routes itself,
// as proto kernel with its own metric.
func movableRoute(rt netlink.Route, uplink int, remade func(netlink.Route) bool) bool {
	return rt.LinkIndex == uplink && rt.Table != unix.RT_TABLE_LOCAL && len(rt.MultiPath) == 0 &&
		(rt.Type == unix.RTN_UNICAST || rt.Type == 0) &&
		!(rt.Protocol == unix.RTPROT_KERNEL && remade(rt)) && rt.Protocol != unix.RTPROT_RA
}

// kernelRemakes returns whether the kernel makes rt itself on a link that
// holds addrs: a link route to the prefix of an address added without
// noprefixroute, or IPv6's link-local prefix fe80::/64 (every link has one).
// Not that of an IPv6 address with a lifetime (a DHCPv6 lease moved by
// manager: kernel): its prefix route outlives the address on the uplink,
// so it moves like any route. (A SLAAC address's moves with the RA role,
// slaac_linux.go.)
func kernelRemakes(addrs []netlink.Addr) func(netlink.Route) bool {
	prefixes := map[string]bool{"fe80::/64": true}
	for _, a := range addrs {
		lease := a.IP.To4() == nil && a.Flags&unix.IFA_F_PERMANENT == 0 && a.Flags&flagSLAAC == 0
		if a.Flags&unix.IFA_F_NOPREFIXROUTE == 0 && !lease {
			prefixes[(&net.IPNet{IP: a.IP.Mask(a.Mask), Mask: a.Mask}).String()] = true
		}
	}
	return func(rt netlink.Route) bool { return rt.Gw == nil && rt.Dst != nil && prefixes[rt.Dst.String()] }
}

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

func cp[T any](v T) *T { return &v }

func addrString(a netlink.Addr) string { return a.IPNet.String() }

// routeString renders a route the way `ip route` roughly does.
func routeString(rt netlink.Route) string {
	var b strings.Builder
	if ones, _ := rt.Dst.Mask.Size(); rt.Dst == nil || ones == 0 && rt.Dst.IP.IsUnspecified() {
		b.WriteString("default")
	} else {
		b.WriteString(rt.Dst.String())
	}
	if rt.Gw != nil {
		fmt.Fprintf(&b, " via %s", rt.Gw)
	}
	if rt.Src != nil {
		fmt.Fprintf(&b, " src %s", rt.Src)
	}
	if rt.Priority != 0 {
		fmt.Fprintf(&b, " metric %d", rt.Priority)
	}
	if rt.Table != unix.RT_TABLE_MAIN && rt.Table != unix.RT_TABLE_UNSPEC {
		fmt.Fprintf(&b, " table %d", rt.Table)
	}
	return b.String()
}

// sameRoute compares the kernel's key of two routes and their gateway.
func sameRoute(a, b netlink.Route) bool {
	return a.Family == b.Family && a.Dst.String() == b.Dst.String() && a.Gw.Equal(b.Gw) &&
		a.Priority == b.Priority && a.Tos == b.Tos && a.Table == b.Table
}

// movePlan is what moves from the uplink to the bridge, read before
// anything changes.
type movePlan struct {
	addrs  []netlink.Addr
	routes []netlink.Route
	neighs []netlink.Neigh // permanent entries
	probe  []net.IP        // what to probe on the bridge after the move (probeTargets)
	multi  []netlink.Route // multipath routes with a leg through the uplink
	rules  []netlink.Rule  // policy-routing rules naming the uplink (iif, oif)
}

func (p *movePlan) empty() bool {
	return len(p.addrs) == 0 && len(p.routes) == 0 && len(p.neighs) == 0 && len(p.multi) == 0 && len(p.rules) == 0
}

// planMove reads what has to move, and refuses, before any change, what
// cannot move: routes through nexthop objects on the uplink.
//
// br is the bridge's index (0: it does not exist yet). An uplink already in
// the bridge with no address nor route left to move is the steady state
// (a VM start on a ready bridge): what moves before the addresses leave the
// uplink (neighbours, multipath legs, rules) moved with them, and is not
// read again.
func (m *Manager) planMove(b desired.Bridge, up netlink.Link, brIndex int) (*movePlan, error) {
	bridge := b.Name
	all, err := m.addrs(up, func(netlink.Addr) bool { return true })
	if err != nil {
		return nil, err
	}
	addrs := slices.DeleteFunc(slices.Clone(all), func(a netlink.Addr) bool { return !movableAddr(a) })
	if err := m.checkDynamic(b, up, addrs); err != nil {
		return nil, err
	}
	remade := kernelRemakes(all)
	raw, err := m.routesVia(up.Attrs().Index)
	if err != nil {
		return nil, err
	}
	routes := splitRoutes(raw, func(rt netlink.Route) bool { return movableRoute(rt, up.Attrs().Index, remade) })
	if len(addrs) == 0 && len(routes) == 0 && brIndex != 0 && up.Attrs().MasterIndex == brIndex {
		return &movePlan{}, nil
	}
	neighs, err := m.permanentNeighs(up)
	if err != nil {
		return nil, err
	}
	multi := slices.DeleteFunc(raw, func(rt netlink.Route) bool { return !multipathVia(rt, up.Attrs().Index, brIndex) })
	routes = slices.DeleteFunc(routes, func(rt netlink.Route) bool { return inMultipath(rt, multi) })
	rules, err := m.uplinkRules(up.Attrs().Name)
	if err != nil {
		return nil, err
	}
	if len(addrs) == 0 && len(routes) == 0 {
		return &movePlan{neighs: neighs, multi: multi, rules: rules}, nil
	}
	ids, err := m.nexthopsVia(up.Attrs().Index)
	if err != nil {
		return nil, err
	}
	if len(ids) > 0 {
		return nil, fmt.Errorf("uplink %q of bridge %q is used by nexthop objects %v (ip nexthop), which virtbridge "+
			"does not move; replace the routes using them with plain ones (ip route replace ... via GW dev %s) "+
			"or set move_addresses: false for this bridge in the configuration: %w",
			up.Attrs().Name, bridge, ids, up.Attrs().Name, ErrUnmovable)
	}
	probe, err := m.probeTargets(b, up, routes)
	if err != nil {
		return nil, err
	}
	return &movePlan{addrs: addrs, routes: routes, neighs: neighs, probe: probe, multi: multi, rules: rules}, nil
}

// checkDynamic refuses to move a lease (dynamicAddr) of the uplink unless
// b's manager is "kernel": naming the address, its lifetime, the DHCP
// client holding it and the fixes (dhcp.Refusal).
func (m *Manager) checkDynamic(b desired.Bridge, up netlink.Link, addrs []netlink.Addr) error {
	if b.Manager == "kernel" {
		return nil
	}
	var leases []dhcp.Lease
	for _, a := range addrs {
		if dynamicAddr(a) {
			leases = append(leases, dhcp.Lease{Addr: addrString(a), ValidLft: a.ValidLft, PreferredLft: a.PreferedLft})
		}
	}
	if len(leases) == 0 {
		return nil
	}
	clients := dhcp.Clients("/proc", up.Attrs().Name, m.netns)
	return fmt.Errorf("%s: %w", dhcp.Refusal(b.Name, up.Attrs().Name, leases, clients), ErrDynamicAddress)
}

// moveAddresses moves the uplink's addresses and routes in p to the bridge;
// see the order above. It does nothing when p is empty, and reads the
// uplink back at the end: nothing movable may be left on it.
func (m *Manager) moveAddresses(r *run, p *movePlan) error {
	up, br := r.up, r.br
	upName, brName := up.Attrs().Name, r.b.Name
	addrs, routes := p.addrs, slices.Clone(p.routes)
	if p.empty() {
		return nil
	}
	brAddrs, err := m.addrs(br, func(netlink.Addr) bool { return true })
	if err != nil {
		return err
	}
	// 1. Addresses on the bridge: IPv4 in the uplink's order (primaries
	// before their secondaries); IPv6 oldest first (the kernel lists the
	// newest first), so the bridge lists them as the uplink did.
	for _, a := range addOrder(addrs) {
		if slices.ContainsFunc(brAddrs, func(b netlink.Addr) bool { return b.IPNet.String() == a.IPNet.String() }) {
			continue
		}
		if err := m.addAddr(r, br, a, upName, brName); err != nil {
			return err
		}
	}
	// 2. Routes on the bridge: routes without gateway first, so that a
	// gateway they make reachable is reachable when the others come.
	slices.SortStableFunc(routes, func(a, b netlink.Route) int { return boolInt(a.Gw != nil) - boolInt(b.Gw != nil) })
	brRoutes, err := m.routes(br.Attrs().Index, func(rt netlink.Route) bool { return rt.LinkIndex == br.Attrs().Index })
	if err != nil {
		return err
	}
	for _, rt := range routes {
		if slices.ContainsFunc(brRoutes, func(b netlink.Route) bool { return sameRoute(b, rt) }) {
			continue
		}
		if err := m.addRoute(r, rt, br.Attrs().Index, brName); err != nil {
			return err
		}
	}
	for _, n := range p.neighs {
		if err := m.addNeigh(r, n); err != nil {
			return err
		}
	}
	if err := m.moveMultipath(r, p.multi); err != nil {
		return err
	}
	if err := m.moveRules(r, p.rules); err != nil {
		return err
	}
	// 3. Routes and permanent neighbours off the uplink, in the reverse
	// order.
	for i := len(routes) - 1; i >= 0; i-- {
		if err := m.delRoute(r, routes[i], upName); err != nil {
			return err
		}
		r.record(change.RouteMoved, routeString(routes[i]), upName, brName)
	}
	for _, n := range p.neighs {
		if err := m.delNeigh(r, n); err != nil {
			return err
		}
		r.record(change.NeighMoved, neighString(n), upName, brName)
	}
	// 4. Addresses off the uplink, in the reverse of the order to add them
	// back: IPv4 secondaries before their primary (deleting a primary
	// first would delete its secondaries too).
	add := addOrder(addrs)
	for i := len(add) - 1; i >= 0; i-- {
		if err := m.delAddr(r, up, add[i], upName); err != nil {
			return err
		}
		r.record(change.AddressMoved, addrString(add[i]), upName, brName)
	}
	return m.verifyMoved(r)
}

// verifyMoved reads the uplink back: a route or address the kernel kept
// there (a delete that matched nothing) is an error, not a silent half-move.
func (m *Manager) verifyMoved(r *run) error {
	left, err := m.planMove(r.b, r.up, 0)
	if err != nil {
		return err
	}
	var what []string
	for _, a := range left.addrs {
		what = append(what, "address "+addrString(a))
	}
	for _, rt := range left.routes {
		what = append(what, "route "+routeString(rt))
	}
	for _, n := range left.neighs {
		what = append(what, "neighbour "+neighString(n))
	}
	for _, rule := range left.rules {
		what = append(what, "rule "+ruleString(rule))
	}
	for _, rt := range left.multi {
		what = append(what, "multipath route "+multipathString(rt, m.linkName))
	}
	if len(what) > 0 {
		return fmt.Errorf("moving addresses from %q to bridge %q: still on %q after the move: %s",
			r.up.Attrs().Name, r.b.Name, r.up.Attrs().Name, strings.Join(what, ", "))
	}
	return nil
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// addOrder is the order in which to add addrs (as dumped) on a link so that
// it lists them in the same order: IPv4 as dumped, IPv6 reversed.
func addOrder(addrs []netlink.Addr) []netlink.Addr {
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

func (m *Manager) addAddr(r *run, br netlink.Link, a netlink.Addr, upName, brName string) error {
	c := onLink(a, upName, brName)
	if c.IP.To4() == nil {
		c.Flags |= unix.IFA_F_NODAD
	}
	if err := m.step("address-add", addrString(a)); err != nil {
		return err
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

func (m *Manager) delAddr(r *run, up netlink.Link, a netlink.Addr, upName string) error {
	if err := m.step("address-del", addrString(a)); err != nil {
		return err
	}
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

func (m *Manager) addRoute(r *run, rt netlink.Route, br int, brName string) error {
	if err := m.step("route-add", routeString(rt)); err != nil {
		return err
	}
	c := routeFor(rt, br)
	if err := m.h.RouteAppend(cp(c)); err != nil {
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

func (m *Manager) delRoute(r *run, rt netlink.Route, upName string) error {
	if err := m.step("route-del", routeString(rt)); err != nil {
		return err
	}
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
