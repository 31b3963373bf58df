package links

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/virtbridge/virtbridge/internal/change"
	"github.com/virtbridge/virtbridge/internal/deadline"
	"github.com/virtbridge/virtbridge/internal/desired"
	"github.com/virtbridge/virtbridge/internal/revert"
)

// ErrInjected is wrapped by the failures a Fake was told to inject.
var ErrInjected = errors.New("injected failure")

// Fake is an in-memory network namespace for the unit tests of the
// backend's consumers: it holds links, their addresses, routes and
// permanent neighbours, and the policy-routing rules, as values. It makes
// no decision of its own: EnsureBridge builds a Snapshot of its state and
// applies the steps of the same Plan the Manager executes, so it refuses
// what the Manager refuses with the same messages, and reports the same
// changes, undo steps on the Reverter. It is pure Go and runs anywhere;
// String renders its state for tests to compare. The zero value is not
// usable: call NewFake. Not safe for concurrent use.
type Fake struct {
	links map[string]*FakeLink
	rules []string
	fail  map[string]bool
	macs  int
	next  int // the next ifindex
}

// FakeLink is one link of a Fake. Tests may change its fields directly to
// seed a state (a bridge that is down, with the wrong MTU...).
type FakeLink struct {
	Name string
	Kind string // "bridge", "device", "veth", "tuntap", "vlan", "wireless" (an 802.11 station)...
	// TunMode is "tap" or "tun" for a tuntap link (AddLink seeds "tap",
	// what libvirt makes), "" for the other kinds.
	TunMode string
	MAC     string
	Master  string
	Alias   string
	MTU     int
	Up      bool
	// Bridges only.
	STP          bool
	ForwardDelay int  // seconds
	MACPinned    bool // addr_assign_type NET_ADDR_SET
	// Addrs are as `ip addr` shows them: "10.77.0.2/24", optionally with
	// "noprefixroute", "temporary", "slaac" (made from a router
	// advertisement) and "valid_lft N preferred_lft N" (a lease; without
	// them an address is permanent). Routes are as `ip route` shows them:
	// "default via 10.77.0.1 metric 100", optionally with "src", "table"
	// and "proto" (kernel, boot, static, ra, dhcp; boot when absent).
	// A multipath route is held by the link of a leg that moves:
	// "10.9.0.0/24 nexthop via 10.77.0.1 dev eth0 nexthop via 10.66.0.1 dev eth1".
	// Neighs are "10.77.0.9 lladdr 52:54:00:00:00:09 permanent" (or
	// reachable, stale, failed).
	Addrs  []string
	Routes []string
	Neighs []string
	// Nexthops are the ids of nexthop objects (ip nexthop) through it.
	Nexthops []uint32

	index int
}

// NewFake returns an empty Fake.
func NewFake() *Fake {
	return &Fake{links: map[string]*FakeLink{}, fail: map[string]bool{}}
}

// AddLink seeds a link that is up, with MTU 1500; it replaces any link of
// that name. master is "" for none. It returns the link for further seeding.
func (f *Fake) AddLink(name, kind, mac, master string, addrs ...string) *FakeLink {
	f.next++
	l := &FakeLink{Name: name, Kind: kind, MAC: mac, Master: master, MTU: 1500, Up: true, Addrs: slices.Clone(addrs), index: f.next}
	switch kind {
	case "bridge":
		l.ForwardDelay = 15 // the kernel's default
	case "tuntap":
		l.TunMode = "tap"
	}
	f.links[name] = l
	return l
}

// AddRoute seeds a route through link.
func (f *Fake) AddRoute(link, route string) {
	l := f.mustLink(link)
	l.Routes = append(l.Routes, route)
}

// AddRule seeds a policy-routing rule, as `ip rule` shows it:
// "pref 100 iif eth0 lookup 100".
func (f *Fake) AddRule(rule string) { f.rules = append(f.rules, rule) }

// DelLink deletes the link named name, as `ip link del` does: its ports
// leave it. No such link is no error.
func (f *Fake) DelLink(name string) {
	delete(f.links, name)
	for _, l := range f.links {
		if l.Master == name {
			l.Master = ""
		}
	}
}

// Link returns the link named name, nil if there is none.
func (f *Fake) Link(name string) *FakeLink { return f.links[name] }

func (f *Fake) mustLink(name string) *FakeLink {
	l := f.links[name]
	if l == nil {
		panic(fmt.Sprintf("links.Fake: no link %q", name))
	}
	return l
}

// FailOn makes every later step of these kinds fail with ErrInjected. The
// steps are the Manager's (Op.Hook): bridge-create, bridge-update, link-up,
// enslave, address-add, route-add, neigh-add, rule-move, route-del,
// neigh-del, address-del, port-attach, alias-set.
func (f *Fake) FailOn(steps ...string) {
	for _, s := range steps {
		f.fail[s] = true
	}
}

func (f *Fake) step(step, object string) error {
	if f.fail[step] {
		return fmt.Errorf("%s %q: %w", step, object, ErrInjected)
	}
	return nil
}

// String renders the state, one line per link sorted by name, e.g.
//
//	br0 bridge mac=52:54:00:00:00:01 master=- mtu=1500 up stp=off delay=0 pinned alias="" addrs=[10.0.0.2/24] routes=[default via 10.0.0.1]
//
// followed by " neighs=[...]" when a link has some, and then the rules,
// one "rule ..." line each.
func (f *Fake) String() string {
	names := make([]string, 0, len(f.links))
	for n := range f.links {
		names = append(names, n)
	}
	slices.Sort(names)
	var b strings.Builder
	for _, n := range names {
		l := f.links[n]
		master := l.Master
		if master == "" {
			master = "-"
		}
		fmt.Fprintf(&b, "%s %s mac=%s master=%s mtu=%d %s", l.Name, l.Kind, l.MAC, master, l.MTU, upDownText(l.Up))
		if l.Kind == "bridge" {
			pin := "unpinned"
			if l.MACPinned {
				pin = "pinned"
			}
			fmt.Fprintf(&b, " stp=%s delay=%d %s", onOffText(l.STP), l.ForwardDelay, pin)
		}
		fmt.Fprintf(&b, " alias=%q addrs=[%s] routes=[%s]", l.Alias, strings.Join(l.Addrs, " "), strings.Join(l.Routes, "; "))
		if len(l.Neighs) > 0 {
			fmt.Fprintf(&b, " neighs=[%s]", strings.Join(l.Neighs, "; "))
		}
		b.WriteString("\n")
	}
	for _, r := range f.rules {
		b.WriteString("rule " + r + "\n")
	}
	return b.String()
}

// EnsureBridge does what Manager.EnsureBridge does, on the state: Plan
// over the Fake's Snapshot, its steps applied in memory. It is idempotent.
func (f *Fake) EnsureBridge(ctx context.Context, b desired.Bridge, rv *revert.Reverter) ([]change.Change, error) {
	if err := deadline.Ended(ctx, "making bridge %q", b.Name); err != nil {
		return nil, err
	}
	if rv == nil {
		rv = &revert.Reverter{}
	}
	s := f.Snapshot(b)
	steps, err := Plan(b, s)
	if err != nil {
		return nil, err
	}
	r := &fakeRun{f: f, b: b, rv: rv, s: s}
	if len(s.Uplinks) == 1 {
		up := f.links[s.Uplinks[0].Name]
		r.addrs, r.routes, r.neighs = slices.Clone(up.Addrs), slices.Clone(up.Routes), slices.Clone(up.Neighs)
	}
	for _, st := range steps {
		if err := r.apply(st); err != nil {
			return r.cs, err
		}
	}
	return r.cs, nil
}

// EnsurePort does what Manager.EnsurePort does, on the state: PlanPort
// over the tap and the bridge, its steps applied in memory. It is
// idempotent.
func (f *Fake) EnsurePort(ctx context.Context, p desired.Port, alias string, rv *revert.Reverter) ([]change.Change, error) {
	if err := deadline.Ended(ctx, "putting tap %q into bridge %q", p.Tap, p.Bridge); err != nil {
		return nil, err
	}
	if rv == nil {
		rv = &revert.Reverter{}
	}
	var tap, br *Link
	if l := f.links[p.Tap]; l != nil {
		tap = cp(f.linkValue(l))
	}
	if l := f.links[p.Bridge]; l != nil {
		br = cp(f.linkValue(l))
	}
	steps, err := PlanPort(p, alias, tap, br)
	if err != nil {
		return nil, err
	}
	var cs []change.Change
	r := &fakeRun{f: f, rv: rv}
	for _, st := range steps {
		if err := f.step(st.Op.Hook(), st.Object); err != nil {
			return cs, err
		}
		l := f.links[p.Tap]
		if st.Op == OpAttach {
			set(r, &l.Master, p.Bridge)
		} else {
			set(r, &l.Alias, st.Alias)
		}
		cs = append(cs, *st.Change)
	}
	return cs, nil
}

// BridgePorts lists the ports of bridge sorted by name, like
// Manager.BridgePorts. It only reads.
func (f *Fake) BridgePorts(bridge string) ([]PortInfo, error) {
	if br := f.links[bridge]; br == nil || br.Kind != "bridge" {
		return nil, fmt.Errorf("bridge %q does not exist: %w", bridge, ErrBridgeMissing)
	}
	out := []PortInfo{}
	for _, n := range slices.Sorted(mapKeys(f.links)) {
		if l := f.links[n]; l.Master == bridge {
			out = append(out, PortInfo{Name: n, Kind: l.Kind, MAC: l.MAC, Alias: l.Alias, Up: l.Up})
		}
	}
	return out, nil
}
