package links

import (
	"errors"
	"fmt"
	"net"
	"slices"

	"github.com/vishvananda/netlink"

	"github.com/virtbridge/virtbridge/internal/desired"
	"github.com/virtbridge/virtbridge/internal/owner/dhcp"
)

// raw holds the netlink objects a Snapshot was made of, indexed by the
// values' IDs: the executor sends back to the kernel exactly what it read
// (labels, broadcast, flags, nexthop flags...).
type raw struct {
	bridge, up netlink.Link // nil when absent
	addrs      []netlink.Addr
	routes     []netlink.Route
	neighs     []netlink.Neigh
	rules      []netlink.Rule
}

// route is the netlink route behind rt (one sibling of an IPv6 multipath
// route when rt.Leg >= 0).
func (r *raw) route(rt Route) netlink.Route {
	x := r.routes[rt.ID]
	if rt.Leg >= 0 {
		return siblings(x)[rt.Leg]
	}
	return x
}

// snapshot reads what Plan needs for b: the bridge, the candidate uplinks
// and, of the uplink, what the decisions need. The steady path (a ready
// bridge) costs what it did: the two links, the bridge's options, the
// uplink's addresses and routes, kernel-filtered (docs/BENCHMARKS.md); the
// rest is read only when something may move (needDetail).
func (m *Manager) snapshot(b desired.Bridge) (Snapshot, *raw, error) {
	s := Snapshot{KeepsLeases: m.KeepsLeases}
	rw := &raw{}
	br, err := m.h.LinkByName(b.Name)
	switch {
	case isNotFound(err):
		br = nil
	case err != nil:
		return s, nil, fmt.Errorf("reading link %q: %w", b.Name, err)
	}
	if br != nil {
		bl, err := m.bridgeValue(br)
		if err != nil {
			return s, nil, err
		}
		s.Bridge, rw.bridge = &bl, br
		if bl.Kind != "bridge" {
			return s, rw, nil
		}
	}
	cands, err := m.uplinkCandidates(b, br)
	if err != nil {
		return s, nil, err
	}
	for _, l := range cands {
		s.Uplinks = append(s.Uplinks, m.linkValue(l, b.Name, br))
	}
	up, err := pickUplink(b, s)
	if err != nil || up == nil {
		return s, rw, nil // Plan refuses, or there is no uplink
	}
	for _, l := range cands {
		if l.Attrs().Index == up.Index {
			rw.up = l
		}
	}
	i := slices.IndexFunc(s.Uplinks, func(l Link) bool { return l.Index == up.Index })
	s.Uplinks = []Link{s.Uplinks[i]}
	up = &s.Uplinks[0]
	if up.Master != b.Name || br == nil {
		if up.Wireless, err = m.wireless(rw.up); err != nil {
			return s, nil, fmt.Errorf("uplink %q of bridge %q: %w", up.Name, b.Name, err)
		}
	}
	if err := m.readUplink(&s, rw, b, br); err != nil {
		return s, nil, err
	}
	if br != nil && s.Bridge.Alias != ManagedAlias {
		ports, err := m.ports(br)
		if err != nil {
			return s, nil, err
		}
		for _, p := range ports {
			s.Ports = append(s.Ports, m.linkValue(p, b.Name, br))
		}
	}
	return s, rw, nil
}

// readUplink reads the uplink's addresses, routes and, when something may
// move, the detail (neighbours, rules, nexthop objects, and what the
// bridge br, nil if none, already holds).
func (m *Manager) readUplink(s *Snapshot, rw *raw, b desired.Bridge, br netlink.Link) error {
	up := rw.up
	port := br != nil && up.Attrs().MasterIndex == br.Attrs().Index
	if !b.MoveAddresses && port {
		return nil
	}
	var err error
	if rw.addrs, err = m.addrs(up, func(netlink.Addr) bool { return true }); err != nil {
		return err
	}
	s.Addrs = addrValues(rw.addrs)
	if !b.MoveAddresses {
		return nil
	}
	if rw.routes, err = m.routesVia(up.Attrs().Index); err != nil {
		return err
	}
	names := map[int]string{up.Attrs().Index: up.Attrs().Name}
	if br != nil {
		names[br.Attrs().Index] = br.Attrs().Name
	}
	s.Routes = m.routeValues(rw.routes, names)
	if needClients(b, *s) {
		s.Clients = dhcp.Clients("/proc", up.Attrs().Name, m.netns)
	}
	if !needDetailFor(b, *s, &s.Uplinks[0]) {
		return nil
	}
	return m.readDetail(s, rw, up, br, names)
}

// readDetail reads the uplink's neighbours, rules and nexthop objects, and
// the addresses and routes already on the bridge br (nil: none).
func (m *Manager) readDetail(s *Snapshot, rw *raw, up, br netlink.Link, names map[int]string) error {
	var err error
	s.Detail = true
	if rw.neighs, err = m.neighsOf(up); err != nil {
		return err
	}
	s.Neighs = neighValues(rw.neighs)
	if rw.rules, err = m.uplinkRules(up.Attrs().Name); err != nil {
		return err
	}
	s.Rules = ruleValues(rw.rules)
	if s.Nexthops, err = m.nexthopsVia(up.Attrs().Index); err != nil {
		return err
	}
	if br == nil {
		return nil
	}
	as, err := m.addrs(br, func(netlink.Addr) bool { return true })
	if err != nil {
		return err
	}
	s.BridgeAddrs = addrValues(as)
	rs, err := m.routesVia(br.Attrs().Index)
	if err != nil {
		return err
	}
	s.BridgeRoutes = m.routeValues(rs, names)
	return nil
}

// uplinkCandidates are the link named b.Uplink, or the links wearing
// b.UplinkMAC (none when it does not parse: Plan says why).
func (m *Manager) uplinkCandidates(b desired.Bridge, br netlink.Link) ([]netlink.Link, error) {
	switch {
	case b.Uplink != "":
		l, err := m.h.LinkByName(b.Uplink)
		if isNotFound(err) {
			return nil, nil
		}
		if err != nil {
			return nil, fmt.Errorf("reading uplink %q: %w", b.Uplink, err)
		}
		return []netlink.Link{l}, nil
	case b.UplinkMAC != "":
		mac, err := net.ParseMAC(b.UplinkMAC)
		if err != nil {
			return nil, nil
		}
		ls, err := m.links()
		if err != nil {
			return nil, err
		}
		var out []netlink.Link
		for _, l := range ls {
			if l.Attrs().HardwareAddr.String() == mac.String() {
				out = append(out, l)
			}
		}
		return out, nil
	}
	return nil, nil
}

// linkValue is l as a snapshot Link; its master is named (one request)
// unless it is the bridge br (named bridge).
func (m *Manager) linkValue(l netlink.Link, bridge string, br netlink.Link) Link {
	a := l.Attrs()
	v := Link{Index: a.Index, Name: a.Name, Kind: l.Type(), MAC: a.HardwareAddr.String(), Alias: a.Alias,
		MTU: a.MTU, Up: a.Flags&net.FlagUp != 0, MasterIndex: a.MasterIndex}
	if t, ok := l.(*netlink.Tuntap); ok {
		v.TunTap = "tun"
		if t.Mode == netlink.TUNTAP_MODE_TAP {
			v.TunTap = "tap"
		}
	}
	switch {
	case a.MasterIndex == 0:
	case br != nil && a.MasterIndex == br.Attrs().Index:
		v.Master, v.MasterKind = bridge, "bridge"
	default:
		v.Master, v.MasterKind = m.linkNameKind(a.MasterIndex)
	}
	return v
}

// bridgeValue is the link named like the bridge, with a bridge's STP,
// forward delay and pinned MAC.
func (m *Manager) bridgeValue(br netlink.Link) (Link, error) {
	v := m.linkValue(br, "", nil)
	if v.Kind != "bridge" {
		return v, nil
	}
	o, err := m.bridgeOptsOf(v.Index)
	if err != nil {
		return v, fmt.Errorf("reading STP and forward delay of bridge %q: %w", v.Name, err)
	}
	v.STP, v.DelayCS = o.stp, o.delayCS
	v.MACPinned, v.PinKnown = m.macSet(br)
	return v, nil
}

func addrValues(as []netlink.Addr) []Addr {
	out := make([]Addr, 0, len(as))
	for i, a := range as {
		out = append(out, addrValue(i, a))
	}
	return out
}

func addrValue(i int, a netlink.Addr) Addr {
	return Addr{ID: i, Prefix: a.IPNet.String(), IPv6: a.IP.To4() == nil, Scope: a.Scope,
		Flags: a.Flags &^ flagSLAAC, SLAAC: a.Flags&flagSLAAC != 0, ValidLft: a.ValidLft, PreferredLft: a.PreferedLft}
}

// movableAddr reports whether an address of the uplink moves to the
// bridge (Addr.movable).
func movableAddr(a netlink.Addr) bool { return addrValue(0, a).movable() }

func addrString(a netlink.Addr) string { return a.IPNet.String() }

// routeValues are rs as snapshot Routes; names names the links of their
// multipath legs (looked up, and added, when missing).
func (m *Manager) routeValues(rs []netlink.Route, names map[int]string) []Route {
	out := make([]Route, 0, len(rs))
	for i, rt := range rs {
		v := routeValue(i, rt)
		for _, nh := range rt.MultiPath {
			name, ok := names[nh.LinkIndex]
			if !ok {
				name = m.linkName(nh.LinkIndex)
				names[nh.LinkIndex] = name
			}
			v.Legs = append(v.Legs, Leg{LinkIndex: nh.LinkIndex, Link: name, Gw: ipString(nh.Gw)})
		}
		out = append(out, v)
	}
	return out
}

func routeValue(i int, rt netlink.Route) Route {
	v := Route{ID: i, Leg: -1, IPv6: rt.Family == netlink.FAMILY_V6, Gw: ipString(rt.Gw), Src: ipString(rt.Src),
		Metric: rt.Priority, Table: rt.Table, Protocol: int(rt.Protocol), Type: rt.Type, Tos: rt.Tos, LinkIndex: rt.LinkIndex}
	if rt.Dst != nil {
		if ones, _ := rt.Dst.Mask.Size(); ones != 0 || !rt.Dst.IP.IsUnspecified() {
			v.Dst = rt.Dst.String()
		}
	}
	return v
}

// routeString renders a route the way `ip route` roughly does.
func routeString(rt netlink.Route) string { return routeValue(0, rt).String() }

func ipString(ip net.IP) string {
	if ip == nil {
		return ""
	}
	return ip.String()
}

func neighValues(ns []netlink.Neigh) []Neigh {
	out := make([]Neigh, 0, len(ns))
	for i, n := range ns {
		out = append(out, Neigh{ID: i, IP: ipString(n.IP), MAC: n.HardwareAddr.String(), IPv6: n.Family == netlink.FAMILY_V6,
			Permanent: n.State&netlink.NUD_PERMANENT != 0,
			Resolved:  n.HardwareAddr != nil && n.State&(netlink.NUD_INCOMPLETE|netlink.NUD_FAILED) == 0})
	}
	return out
}

func ruleValues(rs []netlink.Rule) []Rule {
	out := make([]Rule, 0, len(rs))
	for i, r := range rs {
		out = append(out, Rule{ID: i, Priority: r.Priority, Iif: r.IifName, Oif: r.OifName, Table: r.Table})
	}
	return out
}

// neighsOf lists l's IPv4 and IPv6 neighbour entries, retrying a dump
// the kernel interrupted.
func (m *Manager) neighsOf(l netlink.Link) ([]netlink.Neigh, error) {
	var out []netlink.Neigh
	for _, fam := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
		var ns []netlink.Neigh
		var err error
		for range 5 {
			if ns, err = m.neighDump(l.Attrs().Index, fam); !errors.Is(err, netlink.ErrDumpInterrupted) {
				break
			}
		}
		if err != nil {
			return nil, fmt.Errorf("listing the neighbour entries of %q: %w", l.Attrs().Name, err)
		}
		for _, n := range ns {
			if n.LinkIndex == l.Attrs().Index && n.IP != nil {
				out = append(out, n)
			}
		}
	}
	return out, nil
}
