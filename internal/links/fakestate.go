package links

import (
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"

	"github.com/virtbridge/virtbridge/internal/change"
	"github.com/virtbridge/virtbridge/internal/desired"
	"github.com/virtbridge/virtbridge/internal/revert"
)

// Snapshot is what Plan sees of the Fake's state for bridge b, as the
// Manager reads it from the kernel (with every detail: reading costs
// nothing here).
func (f *Fake) Snapshot(b desired.Bridge) Snapshot {
	var s Snapshot
	if l := f.links[b.Name]; l != nil {
		v := f.linkValue(l)
		s.Bridge = &v
		if l.Kind != "bridge" {
			return s
		}
	}
	switch {
	case b.Uplink != "":
		if l := f.links[b.Uplink]; l != nil {
			s.Uplinks = []Link{f.linkValue(l)}
		}
	case b.UplinkMAC != "":
		if mac, err := net.ParseMAC(b.UplinkMAC); err == nil {
			for _, n := range slices.Sorted(mapKeys(f.links)) {
				if l := f.links[n]; sameMAC(l.MAC, mac) {
					s.Uplinks = append(s.Uplinks, f.linkValue(l))
				}
			}
		}
	}
	if up, err := pickUplink(b, s); err == nil && up != nil {
		f.uplinkState(&s, f.links[up.Name])
		s.Uplinks = []Link{*up}
	}
	if br := f.links[b.Name]; br != nil && br.Alias != ManagedAlias {
		for _, n := range slices.Sorted(mapKeys(f.links)) {
			if l := f.links[n]; l.Master == b.Name {
				s.Ports = append(s.Ports, f.linkValue(l))
			}
		}
	}
	return s
}

// uplinkState fills what s holds of uplink up.
func (f *Fake) uplinkState(s *Snapshot, up *FakeLink) {
	s.Detail = true
	for i, a := range up.Addrs {
		s.Addrs = append(s.Addrs, parseFakeAddr(i, a))
	}
	for i, rt := range up.Routes {
		s.Routes = append(s.Routes, f.parseRoute(i, rt, up.index))
	}
	for i, n := range up.Neighs {
		s.Neighs = append(s.Neighs, parseFakeNeigh(i, n))
	}
	for i, r := range f.rules {
		if rule := parseFakeRule(i, r); rule.Iif == up.Name || rule.Oif == up.Name {
			s.Rules = append(s.Rules, rule)
		}
	}
	s.Nexthops = slices.Clone(up.Nexthops)
	if br := f.links[s.bridgeName()]; br != nil {
		for i, a := range br.Addrs {
			s.BridgeAddrs = append(s.BridgeAddrs, parseFakeAddr(i, a))
		}
		for i, rt := range br.Routes {
			s.BridgeRoutes = append(s.BridgeRoutes, f.parseRoute(i, rt, br.index))
		}
	}
}

func (s *Snapshot) bridgeName() string {
	if s.Bridge == nil {
		return ""
	}
	return s.Bridge.Name
}

func (f *Fake) linkValue(l *FakeLink) Link {
	v := Link{Index: l.index, Name: l.Name, Kind: l.Kind, MAC: l.MAC, Alias: l.Alias, Master: l.Master,
		MTU: l.MTU, Up: l.Up, Wireless: l.Kind == "wireless",
		STP: l.STP, DelayCS: uint32(l.ForwardDelay) * 100, MACPinned: l.MACPinned, PinKnown: true}
	if hw, err := net.ParseMAC(l.MAC); err == nil {
		v.MAC = hw.String()
	}
	if m := f.links[l.Master]; m != nil {
		v.MasterKind, v.MasterIndex = m.Kind, m.index
	}
	v.TunTap = l.TunMode
	return v
}

// parseFakeAddr reads one FakeLink.Addrs entry.
func parseFakeAddr(id int, s string) Addr {
	fs := strings.Fields(s)
	a := Addr{ID: id, Flags: ifaPermanent}
	if len(fs) == 0 {
		return a
	}
	a.Prefix = fs[0]
	if ip, n, err := net.ParseCIDR(fs[0]); err == nil {
		a.Prefix = (&net.IPNet{IP: ip, Mask: n.Mask}).String()
		a.IPv6 = ip.To4() == nil
		if ip.IsLinkLocalUnicast() {
			a.Scope = scopeLink
		}
	}
	for i := 1; i < len(fs); i++ {
		switch fs[i] {
		case "noprefixroute":
			a.Flags |= ifaNoPrefixRoute
		case "temporary":
			a.Flags |= ifaTemporary
		case "slaac":
			a.SLAAC = true
		case "valid_lft", "preferred_lft":
			if i+1 < len(fs) {
				n, _ := strconv.Atoi(fs[i+1])
				if fs[i] == "valid_lft" {
					a.ValidLft, a.Flags = n, a.Flags&^ifaPermanent
				} else {
					a.PreferredLft = n
				}
				i++
			}
		}
	}
	return a
}

// movedFakeAddr is address entry s as it is added on the bridge: static
// (no lifetime the kernel could expire), its noprefixroute kept.
func movedFakeAddr(s string) string {
	fs := strings.Fields(s)
	out := fs[:1]
	if slices.Contains(fs, "noprefixroute") {
		out = append(out, "noprefixroute")
	}
	return strings.Join(out, " ")
}

var fakeProtos = map[string]int{"kernel": protoKernel, "boot": protoBoot, "static": protoStatic, "ra": protoRA, "dhcp": 16}

// parseRoute reads one FakeLink.Routes entry of the link with index; a
// multipath route ("10.9.0.0/24 nexthop via 10.77.0.1 dev eth0 nexthop
// via 10.66.0.1 dev eth1") is held by the link of a leg that moves.
func (f *Fake) parseRoute(id int, s string, index int) Route {
	head, legs, multi := strings.Cut(s, " nexthop ")
	rt := parseFakeRoute(id, head, index)
	if multi {
		rt.LinkIndex = 0
		for _, leg := range strings.Split(legs, " nexthop ") {
			l := parseFakeRoute(0, "default "+leg, 0)
			fs := strings.Fields(leg)
			if i := slices.Index(fs, "dev"); i >= 0 && i+1 < len(fs) {
				l.LinkIndex = f.indexOf(fs[i+1])
				rt.Legs = append(rt.Legs, Leg{LinkIndex: l.LinkIndex, Link: fs[i+1], Gw: l.Gw})
			}
		}
		rt.IPv6 = rt.IPv6 || len(rt.Legs) > 0 && strings.Contains(rt.Legs[0].Gw, ":")
	}
	return rt
}

func (f *Fake) indexOf(name string) int {
	if l := f.links[name]; l != nil {
		return l.index
	}
	return 0
}

func parseFakeRoute(id int, s string, index int) Route {
	fs := strings.Fields(s)
	rt := Route{ID: id, Leg: -1, Table: tableMain, Protocol: protoBoot, Type: rtnUnicast, LinkIndex: index}
	if len(fs) > 0 && fs[0] != "default" {
		rt.Dst = fs[0]
		if _, n, err := net.ParseCIDR(fs[0]); err == nil {
			rt.Dst = n.String()
		}
	}
	for i := 1; i+1 < len(fs); i += 2 {
		v := fs[i+1]
		switch fs[i] {
		case "via":
			rt.Gw = v
		case "src":
			rt.Src = v
		case "metric":
			rt.Metric, _ = strconv.Atoi(v)
		case "table":
			rt.Table, _ = strconv.Atoi(v)
		case "proto":
			if p, ok := fakeProtos[v]; ok {
				rt.Protocol = p
			} else {
				rt.Protocol, _ = strconv.Atoi(v)
			}
		}
	}
	rt.IPv6 = strings.Contains(rt.Dst+rt.Gw, ":")
	return rt
}

// parseFakeNeigh reads one FakeLink.Neighs entry.
func parseFakeNeigh(id int, s string) Neigh {
	fs := strings.Fields(s)
	n := Neigh{ID: id}
	if len(fs) > 0 {
		n.IP, n.IPv6 = fs[0], strings.Contains(fs[0], ":")
	}
	if i := slices.Index(fs, "lladdr"); i >= 0 && i+1 < len(fs) {
		n.MAC = fs[i+1]
	}
	n.Permanent = slices.Contains(fs, "permanent")
	n.Resolved = n.MAC != "" && !slices.Contains(fs, "failed") && !slices.Contains(fs, "incomplete")
	return n
}

// parseFakeRule reads one rule of the Fake.
func parseFakeRule(id int, s string) Rule {
	fs := strings.Fields(s)
	r := Rule{ID: id}
	for i := 0; i+1 < len(fs); i += 2 {
		switch fs[i] {
		case "pref":
			r.Priority, _ = strconv.Atoi(fs[i+1])
		case "iif":
			r.Iif = fs[i+1]
		case "oif":
			r.Oif = fs[i+1]
		case "lookup":
			r.Table, _ = strconv.Atoi(fs[i+1])
		}
	}
	return r
}

// fakeRun is one Fake.EnsureBridge call.
type fakeRun struct {
	f  *Fake
	b  desired.Bridge
	rv *revert.Reverter
	cs []change.Change
	s  Snapshot
	// The uplink's entries when the snapshot was made, by the IDs of its
	// values.
	addrs, routes, neighs []string
}

func (r *fakeRun) br() *FakeLink { return r.f.links[r.b.Name] }
func (r *fakeRun) up() *FakeLink { return r.f.links[r.s.Uplinks[0].Name] }

// set changes *field to v, with its undo.
func set[T any](r *fakeRun, field *T, v T) {
	old := *field
	*field = v
	r.rv.Add(func() error { *field = old; return nil })
}

// apply applies one step to the state, with its undo, and records its
// change.
func (r *fakeRun) apply(st Step) error {
	f := r.f
	if h := st.Op.Hook(); h != "" && st.Op != OpMTU {
		if err := f.step(h, st.Object); err != nil {
			return err
		}
	}
	switch st.Op {
	case OpCreate:
		r.create(st)
	case OpSetOpts:
		set(r, &r.br().STP, st.STP)
		set(r, &r.br().ForwardDelay, delaySeconds(st.DelayCS))
	case OpPinMAC:
		set(r, &r.br().MAC, st.MAC)
		set(r, &r.br().MACPinned, true)
	case OpUp:
		set(r, &f.links[st.Link].Up, true)
	case OpEnslave:
		set(r, &r.up().Master, r.b.Name)
	case OpMTU:
		return r.mtu(st)
	case OpAddAddr:
		addItem(r, &r.br().Addrs, movedFakeAddr(r.addrs[st.Addr.ID]))
	case OpDelAddr:
		delItem(r, &r.up().Addrs, r.addrs[st.Addr.ID])
	case OpAddRoute:
		addItem(r, &r.br().Routes, r.routes[st.Route.ID])
	case OpDelRoute:
		delItem(r, &r.up().Routes, r.routes[st.Route.ID])
	case OpAddNeigh:
		addItem(r, &r.br().Neighs, r.neighs[st.Neigh.ID])
	case OpDelNeigh:
		delItem(r, &r.up().Neighs, r.neighs[st.Neigh.ID])
	case OpMultipath:
		rt := r.routes[st.Route.ID]
		delItem(r, &r.up().Routes, rt)
		fs := strings.Fields(rt)
		for i := 1; i < len(fs); i++ {
			if fs[i-1] == "dev" && fs[i] == r.up().Name {
				fs[i] = r.b.Name
			}
		}
		addItem(r, &r.br().Routes, strings.Join(fs, " "))
	case OpMoveRule:
		set(r, &f.rules[st.Rule.ID], st.Rule.on(r.up().Name, r.b.Name).String())
	case OpVerify:
		if err := leftoverError(r.b.Name, r.up().Name, leftover(r.b, f.Snapshot(r.b))); err != nil {
			return err
		}
	case OpTakeRA:
		// The RA role lives in sysctls and in what the kernel learnt,
		// which the Fake does not hold.
	case OpProbe:
		for _, ip := range st.Probe {
			r.record(change.UplinkProbed, ip, "", "answered on "+r.b.Name+" (in memory)")
		}
	case OpAlias:
		set(r, &r.br().Alias, ManagedAlias)
	case OpNotice:
		if c, ok := foreignNotice(r.b.Name, r.cs, st.Others); ok {
			r.cs = append(r.cs, c)
		}
	default:
		return fmt.Errorf("bridge %q: step %s cannot be applied in memory", r.b.Name, st)
	}
	if st.Change != nil {
		r.cs = append(r.cs, *st.Change)
	}
	return nil
}

func (r *fakeRun) record(kind change.Kind, object, before, after string) {
	r.cs = append(r.cs, change.Change{Kind: kind, Object: object, Before: before, After: after})
}

// create adds the bridge, with the uplink's MAC or a made-up one.
func (r *fakeRun) create(st Step) {
	f, name, mac := r.f, r.b.Name, st.MAC
	if mac == "" {
		f.macs++
		mac = fmt.Sprintf("02:00:00:00:00:%02x", f.macs)
	}
	f.next++
	f.links[name] = &FakeLink{Name: name, Kind: "bridge", MAC: mac, MTU: 1500, Up: true, index: f.next,
		STP: st.STP, ForwardDelay: delaySeconds(st.DelayCS), MACPinned: true, Alias: ManagedAlias}
	r.rv.Add(func() error { f.DelLink(name); return nil })
	r.cs = append(r.cs, createdChange(st, mac))
}

// mtu is OpMTU: the value set when it differs; when it is right, Keep
// is no change to the state (the kernel's flag is not modelled).
func (r *fakeRun) mtu(st Step) error {
	br := r.br()
	if br.MTU == st.MTU && !st.Keep {
		return nil
	}
	if err := r.f.step("bridge-update", st.Object); err != nil {
		return err
	}
	if br.MTU != st.MTU {
		r.cs = append(r.cs, mtuChange(st, br.MTU))
		set(r, &br.MTU, st.MTU)
	}
	return nil
}

// addItem appends item to list unless it is there already.
func addItem(r *fakeRun, list *[]string, item string) {
	if !slices.Contains(*list, item) {
		set(r, list, append(slices.Clone(*list), item))
	}
}

// delItem deletes item from list; one already gone is no error.
func delItem(r *fakeRun, list *[]string, item string) {
	if i := slices.Index(*list, item); i >= 0 {
		set(r, list, slices.Delete(slices.Clone(*list), i, i+1))
	}
}

func mapKeys[V any](m map[string]V) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}
