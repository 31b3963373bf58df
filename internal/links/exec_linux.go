package links

import (
	"context"
	"fmt"
	"net"

	"github.com/vishvananda/netlink"

	"github.com/virtbridge/virtbridge/internal/change"
	"github.com/virtbridge/virtbridge/internal/deadline"
	"github.com/virtbridge/virtbridge/internal/desired"
	"github.com/virtbridge/virtbridge/internal/revert"
)

// run is one EnsureBridge (or ReleaseBridge) call: the bridge's spec, the
// undo stack, the changes made so far, and the links the steps act on.
type run struct {
	b   desired.Bridge
	rv  *revert.Reverter
	cs  []change.Change
	br  netlink.Link // the bridge, re-read after each change that matters
	up  netlink.Link // the uplink, nil when the bridge has none
	raw *raw         // what the snapshot was read from
	new bool         // the bridge was created by this run
	// back: a release's backwards run; a dynamic address keeps what is
	// left of its lifetime on the uplink (a lease virtbridged kept).
	back bool
}

func (r *run) record(kind change.Kind, object, before, after string) {
	r.cs = append(r.cs, change.Change{Kind: kind, Object: object, Before: before, After: after})
}

// EnsureBridge makes bridge b exist with its settings and, when b has an
// uplink, enslaves it and (b.MoveAddresses) moves the uplink's addresses
// and routes to the bridge, and its router-advertisement role (SLAAC:
// accept_ra, what it learnt, see slaac_linux.go). It is idempotent: it reads a Snapshot, lets
// Plan decide, and executes the steps, pushing the undo of every change on
// rv; it returns the changes made (none when the host already matches).
// Plan's refusals come before any change. On error the changes made so
// far are returned with it; rv.Fail() takes them back. A ctx that has
// ended starts nothing (a *deadline.Error); netlink requests themselves do
// not wait.
func (m *Manager) EnsureBridge(ctx context.Context, b desired.Bridge, rv *revert.Reverter) ([]change.Change, error) {
	if err := deadline.Ended(ctx, "making bridge %q", b.Name); err != nil {
		return nil, err
	}
	if rv == nil {
		rv = &revert.Reverter{}
	}
	s, rw, err := m.snapshot(b)
	if err != nil {
		return nil, err
	}
	steps, err := Plan(b, s)
	if err != nil {
		return nil, err
	}
	r := &run{b: b, rv: rv, br: rw.bridge, up: rw.up, raw: rw}
	for _, st := range steps {
		if err := m.exec(ctx, r, st); err != nil {
			return r.cs, err
		}
	}
	return r.cs, nil
}

// Snapshot is what Plan sees of b in the Manager's namespace, without the
// owner (Snapshot.Owner: internal/owner/handoff fills it in): read-only,
// and on a ready bridge as cheap as a steady EnsureBridge's own read.
func (m *Manager) Snapshot(b desired.Bridge) (Snapshot, error) {
	s, _, err := m.snapshot(b)
	return s, err
}

// exec executes one step over netlink, with its undo on r.rv, and records
// its change.
func (m *Manager) exec(ctx context.Context, r *run, st Step) error {
	if h := st.Op.Hook(); h != "" && st.Op != OpMTU {
		if err := m.step(h, st.Object); err != nil {
			return err
		}
	}
	var err error
	switch st.Op {
	case OpCreate:
		err = m.createBridge(r, st)
	case OpSetOpts:
		err = m.setOpt(r, bridgeOpts{stp: st.FromSTP, delayCS: st.FromDelayCS}, bridgeOpts{stp: st.STP, delayCS: st.DelayCS})
	case OpPinMAC:
		err = m.pinMAC(r, st)
	case OpUp:
		l := r.up
		if st.Link == r.b.Name {
			l = r.br
		}
		err = m.setUp(r, l)
	case OpEnslave:
		err = m.enslave(r)
	case OpMTU:
		return m.ensureMTU(r, st)
	case OpAddAddr:
		err = m.addAddr(r, r.raw.addrs[st.Addr.ID])
	case OpDelAddr:
		err = m.delAddr(r, r.raw.addrs[st.Addr.ID])
	case OpAddRoute:
		err = m.addRoute(r, r.raw.route(st.Route))
	case OpDelRoute:
		err = m.delRoute(r, r.raw.route(st.Route))
	case OpAddNeigh:
		err = m.addNeigh(r, r.raw.neighs[st.Neigh.ID])
	case OpDelNeigh:
		err = m.delNeigh(r, r.raw.neighs[st.Neigh.ID])
	case OpMultipath:
		err = m.moveMultipath(r, r.raw.routes[st.Route.ID], st.Object)
	case OpMoveRule:
		err = m.moveRule(r, r.raw.rules[st.Rule.ID])
	case OpVerify:
		err = m.verifyMoved(r)
	case OpTakeRA:
		err = m.takeRA(r, r.b.IPv6Forward) // slaac_linux.go
	case OpProbe:
		err = m.probe(ctx, r, parseIPs(st.Probe), r.b.ProbeTimeout)
	case OpAlias:
		err = m.setAlias(r)
	case OpNotice:
		if c, ok := foreignNotice(r.b.Name, r.cs, st.Others); ok {
			r.cs = append(r.cs, c)
		}
	case OpHandover:
		err = fmt.Errorf("bridge %q: uplink %q is %s's, which makes the bridge: the kernel path does not (internal/owner/handoff hands it over)",
			r.b.Name, st.Handover.Uplink, managerName(st.Handover.Manager))
	default:
		err = fmt.Errorf("bridge %q: unknown step %q", r.b.Name, st.Op)
	}
	if err == nil && st.Change != nil {
		r.cs = append(r.cs, *st.Change)
	}
	return err
}

func parseIPs(ss []string) []net.IP {
	var out []net.IP
	for _, s := range ss {
		out = append(out, net.ParseIP(s))
	}
	return out
}

// setAlias marks a bridge someone else made as managed (ManagedAlias).
func (m *Manager) setAlias(r *run) error {
	if err := m.h.LinkSetAlias(r.br, ManagedAlias); err != nil {
		return fmt.Errorf("setting the alias of bridge %q: %w", r.b.Name, err)
	}
	br := r.br
	r.rv.Add(func() error { return m.wrap("restoring the alias of bridge "+r.b.Name, m.h.LinkSetAlias(br, "")) })
	return nil
}

// verifyMoved reads the uplink back: a route or address the kernel kept
// there (a delete that matched nothing) is an error, not a silent half-move.
func (m *Manager) verifyMoved(r *run) error {
	b := r.b
	b.Manager = "kernel"
	s := Snapshot{Uplinks: []Link{m.linkValue(r.up, "", nil)}}
	if err := m.readUplink(&s, &raw{up: r.up}, b, nil); err != nil {
		return err
	}
	return leftoverError(r.b.Name, r.up.Attrs().Name, leftover(b, s))
}

// enslave puts the uplink into the bridge.
func (m *Manager) enslave(r *run) error {
	up, name := r.up, r.up.Attrs().Name
	if err := m.h.LinkSetMaster(up, r.br); err != nil {
		return fmt.Errorf("enslaving %q to bridge %q: %w", name, r.b.Name, err)
	}
	r.rv.Add(func() error { return m.restoreMaster(up, 0) })
	return nil
}
