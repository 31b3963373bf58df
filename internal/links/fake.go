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

// Fake is an in-memory model of a network namespace's links that behaves
// like Manager: same order of steps, same refusals (wrapping the same Err*
// values), same changes reported, undo steps on the Reverter. It is pure Go
// and runs anywhere; String renders its state for tests to compare. The
// zero value is not usable: call NewFake. Not safe for concurrent use.
type Fake struct {
	links map[string]*FakeLink
	fail  map[string]bool
	macs  int
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
	// Addrs are "10.77.0.2/24"-style; those starting with "fe80:" stay on
	// their link. Routes are free text, e.g. "default via 10.77.0.1 metric
	// 100"; every route of the uplink moves.
	Addrs  []string
	Routes []string
}

// NewFake returns an empty Fake.
func NewFake() *Fake {
	return &Fake{links: map[string]*FakeLink{}, fail: map[string]bool{}}
}

// AddLink seeds a link that is up, with MTU 1500; it replaces any link of
// that name. master is "" for none. It returns the link for further seeding.
func (f *Fake) AddLink(name, kind, mac, master string, addrs ...string) *FakeLink {
	l := &FakeLink{Name: name, Kind: kind, MAC: mac, Master: master, MTU: 1500, Up: true, Addrs: slices.Clone(addrs)}
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
// steps are the Manager's: bridge-create, bridge-update, link-up, enslave,
// address-add, route-add, route-del, address-del, port-attach, alias-set.
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
		fmt.Fprintf(&b, " alias=%q addrs=[%s] routes=[%s]\n", l.Alias, strings.Join(l.Addrs, " "), strings.Join(l.Routes, "; "))
	}
	return b.String()
}

func onOffText(b bool) string {
	if b {
		return "on"
	}
	return "off"
}

func upDownText(b bool) string {
	if b {
		return "up"
	}
	return "down"
}

// fakeRun is one Fake.EnsureBridge call.
type fakeRun struct {
	b      desired.Bridge
	rv     *revert.Reverter
	cs     []change.Change
	br, up *FakeLink
}

func (r *fakeRun) record(kind change.Kind, object, before, after string) {
	r.cs = append(r.cs, change.Change{Kind: kind, Object: object, Before: before, After: after})
}

// EnsureBridge does what Manager.EnsureBridge does, on the model. It is
// idempotent.
func (f *Fake) EnsureBridge(ctx context.Context, b desired.Bridge, rv *revert.Reverter) ([]change.Change, error) {
	if err := deadline.Ended(ctx, "making bridge %q", b.Name); err != nil {
		return nil, err
	}
	if rv == nil {
		rv = &revert.Reverter{}
	}
	r := &fakeRun{b: b, rv: rv, br: f.links[b.Name]}
	if r.br != nil && r.br.Kind != "bridge" {
		return nil, fmt.Errorf("bridge %q: a link of that name exists and is a %s, not a bridge: %w", b.Name, r.br.Kind, ErrNotBridge)
	}
	up, err := f.uplink(b, r.br)
	if err != nil {
		return nil, err
	}
	r.up = up
	if up != nil && !b.MoveAddresses && (r.br == nil || up.Master != b.Name) {
		if as := movableFakeAddrs(up); len(as) > 0 {
			return nil, addressedError(b.Name, up.Name, as)
		}
	}
	foreign := r.br != nil && r.br.Alias != ManagedAlias
	if r.br == nil {
		err = f.create(r)
	} else {
		err = f.reapply(r)
	}
	if err == nil && up != nil {
		err = f.enslave(r)
	}
	if err == nil && b.MTU != 0 {
		err = setField(r, f, "bridge-update", &r.br.MTU, b.MTU, func(v int) string { return fmt.Sprintf("mtu %d", v) })
	}
	if err == nil && up != nil && b.MoveAddresses {
		err = f.move(r)
	}
	if err == nil && foreign && r.br.Alias == "" {
		if err = f.step("alias-set", b.Name); err == nil {
			br := r.br
			br.Alias = ManagedAlias
			rv.Add(func() error { br.Alias = ""; return nil })
			r.record(change.AliasSet, b.Name, "", ManagedAlias)
		}
	}
	if err == nil && foreign {
		var others []string
		for _, n := range slices.Sorted(mapKeys(f.links)) {
			if l := f.links[n]; l.Master == b.Name && l.Kind != "tuntap" && l != up {
				others = append(others, fmt.Sprintf("%s (%s)", n, l.Kind))
			}
		}
		if c, ok := foreignNotice(b.Name, r.cs, others); ok {
			r.cs = append(r.cs, c)
		}
	}
	return r.cs, err
}

// uplink resolves and checks b's uplink, with the Manager's refusals.
func (f *Fake) uplink(b desired.Bridge, br *FakeLink) (*FakeLink, error) {
	var up *FakeLink
	switch {
	case b.Uplink != "":
		if up = f.links[b.Uplink]; up == nil {
			return nil, fmt.Errorf("uplink %q of bridge %q: no link named %q in this network namespace; "+
				"check `ip link` and the uplink: key in the configuration: %w", b.Uplink, b.Name, b.Uplink, ErrUplinkMissing)
		}
	case b.UplinkMAC != "":
		var found []string
		for _, n := range slices.Sorted(mapKeys(f.links)) {
			if l := f.links[n]; strings.EqualFold(l.MAC, b.UplinkMAC) && !macCarrier(l.Kind) {
				found = append(found, n)
			}
		}
		switch len(found) {
		case 0:
			return nil, fmt.Errorf("uplink of bridge %q: no link with MAC %s in this network namespace: %w", b.Name, b.UplinkMAC, ErrUplinkMissing)
		case 1:
			up = f.links[found[0]]
		default:
			return nil, fmt.Errorf("uplink of bridge %q: MAC %s is carried by %s: %w", b.Name, b.UplinkMAC, strings.Join(found, ", "), ErrUplinkAmbiguous)
		}
	default:
		return nil, nil
	}
	switch {
	case up.Kind == "bridge":
		return nil, fmt.Errorf("uplink %q of bridge %q is itself a bridge: %w", up.Name, b.Name, ErrUplinkBusy)
	case up.Master != "" && up.Master != b.Name:
		kind := ""
		if o, ok := f.links[up.Master]; ok {
			kind = o.Kind
		}
		return nil, busyError(b.Name, up.Name, up.Master, kind)
	case up.Kind == "wireless":
		return nil, wirelessError(b.Name, up.Name)
	}
	return up, nil
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

func (f *Fake) create(r *fakeRun) error {
	if err := f.step("bridge-create", r.b.Name); err != nil {
		return err
	}
	mac := ""
	if r.up != nil {
		mac = r.up.MAC
	} else {
		f.macs++
		mac = fmt.Sprintf("02:00:00:00:00:%02x", f.macs)
	}
	r.br = &FakeLink{Name: r.b.Name, Kind: "bridge", MAC: mac, MTU: 1500, Up: true,
		STP: r.b.STP, ForwardDelay: r.b.ForwardDelay, MACPinned: true, Alias: ManagedAlias}
	f.links[r.b.Name] = r.br
	name := r.b.Name
	r.rv.Add(func() error {
		delete(f.links, name)
		for _, l := range f.links {
			if l.Master == name {
				l.Master = ""
			}
		}
		return nil
	})
	r.record(change.BridgeCreated, name, "", fmt.Sprintf("stp %s, forward_delay %d, mac %s, up", onOffText(r.b.STP), r.b.ForwardDelay, mac))
	return nil
}

func (f *Fake) reapply(r *fakeRun) error {
	br := r.br
	// As Manager: STP off alone first, then delay and STP in one change.
	if br.STP && !r.b.STP {
		if err := setField(r, f, "bridge-update", &br.STP, false, func(v bool) string { return "stp " + onOffText(v) }); err != nil {
			return err
		}
	}
	if br.STP != r.b.STP || br.ForwardDelay != r.b.ForwardDelay {
		if err := f.step("bridge-update", br.Name); err != nil {
			return err
		}
		var before, after []string
		if br.ForwardDelay != r.b.ForwardDelay {
			before = append(before, fmt.Sprintf("forward_delay %d", br.ForwardDelay))
			after = append(after, fmt.Sprintf("forward_delay %d", r.b.ForwardDelay))
		}
		if br.STP != r.b.STP {
			before = append(before, "stp "+onOffText(br.STP))
			after = append(after, "stp "+onOffText(r.b.STP))
		}
		oldSTP, oldDelay := br.STP, br.ForwardDelay
		br.STP, br.ForwardDelay = r.b.STP, r.b.ForwardDelay
		r.rv.Add(func() error { br.STP, br.ForwardDelay = oldSTP, oldDelay; return nil })
		r.record(change.BridgeUpdated, br.Name, strings.Join(before, ", "), strings.Join(after, ", "))
	}
	want := br.MAC
	if r.up != nil {
		want = r.up.MAC
	}
	if want != br.MAC || !br.MACPinned {
		if err := f.step("bridge-update", br.Name); err != nil {
			return err
		}
		before := "mac " + br.MAC
		if want == br.MAC {
			before += " (not pinned: follows the ports)"
		}
		oldMAC, oldPin := br.MAC, br.MACPinned
		br.MAC, br.MACPinned = want, true
		r.rv.Add(func() error { br.MAC, br.MACPinned = oldMAC, oldPin; return nil })
		r.record(change.BridgeUpdated, br.Name, before, "mac "+want+" (pinned)")
	}
	if !br.Up {
		return setField(r, f, "link-up", &br.Up, true, upDownText)
	}
	return nil
}

// setField changes *field of bridge r.br to want if it differs, with its
// undo and its change (show renders a value).
func setField[T comparable](r *fakeRun, f *Fake, step string, field *T, want T, show func(T) string) error {
	if *field == want {
		return nil
	}
	if err := f.step(step, r.br.Name); err != nil {
		return err
	}
	old := *field
	*field = want
	r.rv.Add(func() error { *field = old; return nil })
	r.record(change.BridgeUpdated, r.br.Name, show(old), show(want))
	return nil
}

func (f *Fake) enslave(r *fakeRun) error {
	up := r.up
	if up.Master != r.br.Name {
		if err := f.step("enslave", up.Name); err != nil {
			return err
		}
		up.Master = r.br.Name
		r.rv.Add(func() error { up.Master = ""; return nil })
		r.record(change.UplinkEnslaved, up.Name, "", r.br.Name)
	}
	if !up.Up {
		if err := f.step("link-up", up.Name); err != nil {
			return err
		}
		up.Up = true
		r.rv.Add(func() error { up.Up = false; return nil })
		r.record(change.UplinkEnslaved, up.Name, "down", "up")
	}
	return nil
}

// move moves addresses and routes in the Manager's order: add on the
// bridge, routes then addresses off the uplink.
// movableFakeAddrs are the addresses of l that move to a bridge: all but
// the link-local ones.
func movableFakeAddrs(l *FakeLink) []string {
	var addrs []string
	for _, a := range l.Addrs {
		if !strings.HasPrefix(strings.ToLower(a), "fe80:") {
			addrs = append(addrs, a)
		}
	}
	return addrs
}

func (f *Fake) move(r *fakeRun) error {
	up, br := r.up, r.br
	addrs := movableFakeAddrs(up)
	routes := slices.Clone(up.Routes)
	for _, a := range addrs {
		if err := f.addTo(r, "address-add", a, &br.Addrs); err != nil {
			return err
		}
	}
	for _, rt := range routes {
		if err := f.addTo(r, "route-add", rt, &br.Routes); err != nil {
			return err
		}
	}
	for _, rt := range slices.Backward(routes) {
		if err := f.delFrom(r, "route-del", rt, &up.Routes); err != nil {
			return err
		}
		r.record(change.RouteMoved, rt, up.Name, br.Name)
	}
	for _, a := range slices.Backward(addrs) {
		if err := f.delFrom(r, "address-del", a, &up.Addrs); err != nil {
			return err
		}
		r.record(change.AddressMoved, a, up.Name, br.Name)
	}
	return nil
}

func (f *Fake) addTo(r *fakeRun, step, item string, list *[]string) error {
	if slices.Contains(*list, item) {
		return nil
	}
	if err := f.step(step, item); err != nil {
		return err
	}
	*list = append(*list, item)
	r.rv.Add(func() error {
		*list = slices.DeleteFunc(*list, func(s string) bool { return s == item })
		return nil
	})
	return nil
}

func (f *Fake) delFrom(r *fakeRun, step, item string, list *[]string) error {
	i := slices.Index(*list, item)
	if i < 0 {
		return nil
	}
	if err := f.step(step, item); err != nil {
		return err
	}
	*list = slices.Delete(*list, i, i+1)
	r.rv.Add(func() error { *list = slices.Insert(*list, min(i, len(*list)), item); return nil })
	return nil
}

// EnsurePort does what Manager.EnsurePort does, on the model, with the
// same refusals (a link that is no tuntap in TunMode "tap", or whose MAC
// is not TapMAC of the NIC, wraps ErrNotTap). It is idempotent.
func (f *Fake) EnsurePort(ctx context.Context, p desired.Port, alias string, rv *revert.Reverter) ([]change.Change, error) {
	if err := deadline.Ended(ctx, "putting tap %q into bridge %q", p.Tap, p.Bridge); err != nil {
		return nil, err
	}
	if rv == nil {
		rv = &revert.Reverter{}
	}
	tap := f.links[p.Tap]
	if p.Tap == "" || tap == nil {
		return nil, fmt.Errorf("tap %q of bridge %q: no link named %q in this network namespace: %w", p.Tap, p.Bridge, p.Tap, ErrTapMissing)
	}
	if err := checkTap(p, tapWhat(tap.Kind, tap.TunMode == "tap"), tap.MAC); err != nil {
		return nil, err
	}
	br := f.links[p.Bridge]
	if br == nil {
		return nil, fmt.Errorf("tap %q: bridge %q does not exist: %w", p.Tap, p.Bridge, ErrBridgeMissing)
	}
	if br.Kind != "bridge" {
		return nil, fmt.Errorf("bridge %q: a link of that name exists and is a %s, not a bridge: %w", p.Bridge, br.Kind, ErrNotBridge)
	}
	var cs []change.Change
	if old := tap.Master; old != p.Bridge {
		if err := f.step("port-attach", p.Tap); err != nil {
			return cs, err
		}
		tap.Master = p.Bridge
		rv.Add(func() error { tap.Master = old; return nil })
		cs = append(cs, change.Change{Kind: change.PortAttached, Object: p.Tap, Before: old, After: p.Bridge})
	}
	if old := tap.Alias; old != alias {
		if err := f.step("alias-set", p.Tap); err != nil {
			return cs, err
		}
		tap.Alias = alias
		rv.Add(func() error { tap.Alias = old; return nil })
		cs = append(cs, change.Change{Kind: change.AliasSet, Object: p.Tap, Before: old, After: alias})
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
