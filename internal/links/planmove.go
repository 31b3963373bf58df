package links

import (
	"fmt"
	"net"
	"slices"
	"strings"

	"github.com/virtbridge/virtbridge/internal/change"
	"github.com/virtbridge/virtbridge/internal/desired"
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
//     then the permanent neighbours, the multipath legs and the rules;
//  3. each route is deleted from the uplink (by its own nexthop, so the
//     bridge's copy stays), then each permanent neighbour;
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

// movePlan is what moves from the uplink to the bridge.
type movePlan struct {
	addrs  []Addr
	routes []Route
	neighs []Neigh  // permanent entries
	probe  []string // what to probe on the bridge after the move (probeTargets)
	multi  []Route  // multipath routes with a leg through the uplink
	rules  []Rule   // policy-routing rules naming the uplink (iif, oif)
}

func (p movePlan) empty() bool {
	return len(p.addrs) == 0 && len(p.routes) == 0 && len(p.neighs) == 0 && len(p.multi) == 0 && len(p.rules) == 0
}

// movable returns the uplink's addresses and routes that move (IPv6
// multipath routes split into their siblings, see siblings).
func (p *planner) movable() ([]Addr, []Route) {
	var addrs []Addr
	remade := map[string]bool{"fe80::/64": true}
	for _, a := range p.s.Addrs {
		if a.movable() {
			addrs = append(addrs, a)
		}
		// Not the prefix of an IPv6 address with a lifetime (a DHCPv6
		// lease moved by manager: kernel): its prefix route outlives the
		// address on the uplink, so it moves like any route. (A SLAAC
		// address's moves with the RA role, slaac_linux.go.)
		lease := a.IPv6 && a.Flags&ifaPermanent == 0 && !a.SLAAC
		if a.Flags&ifaNoPrefixRoute == 0 && !lease {
			remade[a.network()] = true
		}
	}
	var routes []Route
	for _, rt := range splitSiblings(p.s.Routes) {
		if movableRoute(rt, p.up.Index, remade) {
			routes = append(routes, rt)
		}
	}
	return addrs, routes
}

// movableRoute reports whether a route of the uplink moves: the unicast
// routes of every table but the kernel's local one through the uplink
// alone (a route of table 100 used by an `ip rule ... lookup 100` is as
// much the host's as the main table's), except those the kernel
// re-makes itself with the addresses on the bridge (remade: the prefix
// routes of addresses without noprefixroute, and fe80::/64) and those
// learnt from router advertisements (proto ra), which move with the RA
// role (OpTakeRA, slaac_linux.go). A `proto kernel` route
// the kernel will not re-make moves like any other: NetworkManager adds
// its addresses with noprefixroute and installs their prefix routes itself,
// as proto kernel with its own metric.
func movableRoute(rt Route, uplink int, remade map[string]bool) bool {
	kernelMade := rt.Gw == "" && rt.Dst != "" && remade[rt.Dst]
	return rt.LinkIndex == uplink && rt.Table != tableLocal && len(rt.Legs) == 0 && rt.unicast() &&
		!(rt.Protocol == protoKernel && kernelMade) && rt.Protocol != protoRA
}

// splitSiblings returns rs with each IPv6 multipath route as its
// siblings: an IPv6 route with ECMP siblings is dumped as one multipath
// route, yet each sibling is a route of its own, added (appended) and
// deleted alone. A move stopped between adding a route on the bridge and
// deleting it from the uplink (a SIGKILL) leaves such a pair; listed as
// one multipath route it would be neither moved nor seen on the bridge.
// IPv4 multipath routes are one route and stay whole.
func splitSiblings(rs []Route) []Route {
	var out []Route
	for _, rt := range rs {
		if !rt.IPv6 || len(rt.Legs) == 0 {
			out = append(out, rt)
			continue
		}
		for i, l := range rt.Legs {
			c := rt
			c.Legs, c.Leg, c.LinkIndex, c.Gw = nil, i, l.LinkIndex, l.Gw
			out = append(out, c)
		}
	}
	return out
}

// multipathVia reports whether rt (as dumped, IPv6 siblings not split) is
// a unicast multipath route, not in the local table, with a leg through
// the link with index uplink and, for IPv6, one through a link that is
// neither the uplink nor the bridge (index br, 0 if none yet).
func multipathVia(rt Route, uplink, br int) bool {
	if len(rt.Legs) == 0 || rt.Table == tableLocal || !rt.unicast() {
		return false
	}
	via, other := false, false
	for _, l := range rt.Legs {
		via = via || l.LinkIndex == uplink
		other = other || l.LinkIndex != uplink && l.LinkIndex != br
	}
	return via && (!rt.IPv6 || other)
}

// inMultipath reports whether rt, an IPv6 sibling, belongs to one of rs.
func inMultipath(rt Route, rs []Route) bool {
	return slices.ContainsFunc(rs, func(x Route) bool {
		return x.IPv6 == rt.IPv6 && x.Dst == rt.Dst && x.Metric == rt.Metric && x.Table == rt.Table
	})
}

// planMove decides what moves, and refuses, before any change, what
// cannot: a lease (refusedLeases), routes through nexthop
// objects on the uplink. An uplink already in the bridge with no address
// nor route left to move is the steady state (a VM start on a ready
// bridge): what moves before the addresses leave the uplink (neighbours,
// multipath legs, rules) moved with them, and is not looked at again.
func (p *planner) planMove() (movePlan, error) {
	b, up := p.b, p.up
	addrs, routes := p.movable()
	if ls := refusedLeases(b, p.s, addrs); len(ls) > 0 {
		return movePlan{}, leaseRefusal(b, p.s, up.Name, ls)
	}
	if len(addrs) == 0 && len(routes) == 0 && p.port() {
		return movePlan{}, nil
	}
	brIndex := 0
	if p.s.Bridge != nil {
		brIndex = p.s.Bridge.Index
	}
	var neighs []Neigh
	for _, n := range p.s.Neighs {
		if n.Permanent && n.IP != "" {
			neighs = append(neighs, n)
		}
	}
	var multi []Route
	for _, rt := range p.s.Routes {
		if multipathVia(rt, up.Index, brIndex) {
			multi = append(multi, rt)
		}
	}
	routes = slices.DeleteFunc(routes, func(rt Route) bool { return inMultipath(rt, multi) })
	if len(addrs) == 0 && len(routes) == 0 {
		return movePlan{neighs: neighs, multi: multi, rules: p.s.Rules}, nil
	}
	if len(p.s.Nexthops) > 0 {
		return movePlan{}, nexthopError(b.Name, up.Name, p.s.Nexthops)
	}
	probe, err := p.probeTargets(routes)
	if err != nil {
		return movePlan{}, err
	}
	return movePlan{addrs: addrs, routes: routes, neighs: neighs, probe: probe, multi: multi, rules: p.s.Rules}, nil
}

// probeTargets returns what to probe after moving routes: b's probe
// target, or the gateways of the moved default routes of the main table
// that the host had resolved on the uplink (a gateway the host had never
// reached proves nothing either way). IPv4 gateways answer at once; an
// IPv6 one only after the bridge's link-local address passed duplicate
// address detection (~2 s here), which the hook's deadline cannot afford:
// IPv6 is probed only on a host without IPv4 gateway to probe. A negative
// b.ProbeTimeout probes nothing.
func (p *planner) probeTargets(routes []Route) ([]string, error) {
	if targets, set, err := configuredProbe(p.b); set {
		return targets, err
	}
	var v4, v6 []string
	for _, rt := range routes {
		if rt.Gw == "" || rt.Table != tableMain || rt.Dst != "" {
			continue
		}
		resolved := slices.ContainsFunc(p.s.Neighs, func(n Neigh) bool { return n.Resolved && sameIP(n.IP, rt.Gw) })
		switch {
		case !resolved || slices.ContainsFunc(append(v4, v6...), func(s string) bool { return sameIP(s, rt.Gw) }):
		case rt.IPv6:
			v6 = append(v6, rt.Gw)
		default:
			v4 = append(v4, rt.Gw)
		}
	}
	if len(v4) > 0 {
		return v4, nil
	}
	return v6, nil
}

// configuredProbe is what b's configuration says to probe, when it says
// (set): nothing with a negative probe_timeout, else its probe_target.
func configuredProbe(b desired.Bridge) (targets []string, set bool, err error) {
	switch {
	case b.ProbeTimeout < 0:
		return nil, true, nil
	case b.ProbeTarget == "":
		return nil, false, nil
	case net.ParseIP(b.ProbeTarget) == nil:
		return nil, true, fmt.Errorf("probe_target %q of bridge %q is no IP address", b.ProbeTarget, b.Name)
	}
	return []string{b.ProbeTarget}, true, nil
}

// moveSteps are the steps of mv, in the order above.
func (p *planner) moveSteps(mv movePlan) {
	if mv.empty() {
		return
	}
	brName, upName := p.b.Name, p.up.Name
	moved := func(kind change.Kind, object string) *change.Change {
		return &change.Change{Kind: kind, Object: object, Before: upName, After: brName}
	}
	// 1. Addresses on the bridge: IPv4 in the uplink's order (primaries
	// before their secondaries); IPv6 oldest first (the kernel lists the
	// newest first), so the bridge lists them as the uplink did.
	add := addOrder(mv.addrs)
	for _, a := range add {
		if !slices.ContainsFunc(p.s.BridgeAddrs, func(x Addr) bool { return x.Prefix == a.Prefix }) {
			p.add(Step{Op: OpAddAddr, Object: a.Prefix, Link: brName, Addr: a})
		}
	}
	// 2. Routes on the bridge: routes without gateway first, so that a
	// gateway they make reachable is reachable when the others come.
	routes := slices.Clone(mv.routes)
	slices.SortStableFunc(routes, func(a, b Route) int { return boolInt(a.Gw != "") - boolInt(b.Gw != "") })
	var onBridge []Route
	if br := p.s.Bridge; br != nil {
		for _, rt := range splitSiblings(p.s.BridgeRoutes) {
			if rt.LinkIndex == br.Index {
				onBridge = append(onBridge, rt)
			}
		}
	}
	for _, rt := range routes {
		if !slices.ContainsFunc(onBridge, rt.same) {
			p.add(Step{Op: OpAddRoute, Object: rt.String(), Link: brName, Route: rt})
		}
	}
	for _, n := range mv.neighs {
		p.add(Step{Op: OpAddNeigh, Object: n.String(), Link: brName, Neigh: n})
	}
	for _, rt := range mv.multi {
		p.add(Step{Op: OpMultipath, Object: rt.String(), Link: brName, Route: rt, Change: moved(change.RouteMoved, rt.String())})
	}
	for _, r := range mv.rules {
		p.add(Step{Op: OpMoveRule, Object: r.String(), Link: brName, Rule: r, Change: moved(change.RuleMoved, r.String())})
	}
	// 3. Routes and permanent neighbours off the uplink, in the reverse
	// order.
	for _, rt := range slices.Backward(routes) {
		p.add(Step{Op: OpDelRoute, Object: rt.String(), Link: upName, Route: rt, Change: moved(change.RouteMoved, rt.String())})
	}
	for _, n := range mv.neighs {
		p.add(Step{Op: OpDelNeigh, Object: n.String(), Link: upName, Neigh: n, Change: moved(change.NeighMoved, n.String())})
	}
	// 4. Addresses off the uplink, in the reverse of the order to add them
	// back: IPv4 secondaries before their primary (deleting a primary
	// first would delete its secondaries too).
	for _, a := range slices.Backward(add) {
		p.add(Step{Op: OpDelAddr, Object: a.Prefix, Link: upName, Addr: a, Change: moved(change.AddressMoved, a.Prefix)})
	}
	p.add(Step{Op: OpVerify, Object: upName, Link: upName})
}

// addOrder is the order in which to add addrs (as dumped) on a link so that
// it lists them in the same order: IPv4 as dumped, IPv6 reversed.
func addOrder(addrs []Addr) []Addr {
	var v4, v6 []Addr
	for _, a := range addrs {
		if a.IPv6 {
			v6 = append(v6, a)
		} else {
			v4 = append(v4, a)
		}
	}
	slices.Reverse(v6)
	return append(v4, v6...)
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// planRelease plans the move back of ReleaseBridge: from the bridge
// (s.Uplinks[0]) to the uplink (s.Bridge), back being a kernel-managed
// bridge named like the uplink: the same steps in the same order, no probe.
func planRelease(back desired.Bridge, s Snapshot) ([]Step, error) {
	p := &planner{b: back, s: s, up: &s.Uplinks[0]}
	mv, err := p.planMove()
	if err != nil {
		return nil, err
	}
	p.moveSteps(mv)
	return p.steps, nil
}

// leftover lists, for the check after a move, what a fresh snapshot (with
// detail) still shows movable on the uplink: nothing may be left.
func leftover(b desired.Bridge, s Snapshot) []string {
	if len(s.Uplinks) == 0 {
		return nil
	}
	up := s.Uplinks[0]
	for i := range s.Uplinks {
		if s.Uplinks[i].Master == b.Name {
			up = s.Uplinks[i]
		}
	}
	b.Manager, b.ProbeTimeout = "kernel", -1 // what is left is reported, not refused nor probed
	s.Bridge, s.Nexthops = nil, nil
	p := &planner{b: b, s: s, up: &up}
	mv, _ := p.planMove()
	var what []string
	for _, a := range mv.addrs {
		what = append(what, "address "+a.Prefix)
	}
	for _, rt := range mv.routes {
		what = append(what, "route "+rt.String())
	}
	for _, n := range mv.neighs {
		what = append(what, "neighbour "+n.String())
	}
	for _, r := range mv.rules {
		what = append(what, "rule "+r.String())
	}
	for _, rt := range mv.multi {
		what = append(what, "multipath route "+rt.String())
	}
	return what
}

// leftoverError is the error of a move that left something on the uplink.
func leftoverError(bridge, uplink string, what []string) error {
	if len(what) == 0 {
		return nil
	}
	return fmt.Errorf("moving addresses from %q to bridge %q: still on %q after the move: %s",
		uplink, bridge, uplink, strings.Join(what, ", "))
}
