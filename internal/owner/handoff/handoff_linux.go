// Package handoff asks, per bridge, who owns its uplink — NetworkManager
// or systemd-networkd, detected over D-Bus — puts the answer into the
// kernel path's snapshot, lets the one planner (links.Plan) decide, and
// executes its handover step through that manager, with the common probe
// (links.Manager.Probe) and undo. It is what apply.Host.Owners calls in
// EnsureBridge's place.
package handoff

import (
	"context"
	"errors"
	"fmt"
	"os"
	"syscall"
	"time"

	"github.com/godbus/dbus/v5"
	"github.com/vishvananda/netns"

	"github.com/virtbridge/virtbridge/internal/change"
	"github.com/virtbridge/virtbridge/internal/desired"
	"github.com/virtbridge/virtbridge/internal/links"
	"github.com/virtbridge/virtbridge/internal/owner"
	"github.com/virtbridge/virtbridge/internal/owner/networkd"
	"github.com/virtbridge/virtbridge/internal/owner/nm"
	"github.com/virtbridge/virtbridge/internal/revert"
)

// SystemBus is where the system D-Bus listens.
const SystemBus = "/run/dbus/system_bus_socket"

// The managers' names on the bus.
const (
	nmBus       = "org.freedesktop.NetworkManager"
	networkdBus = "org.freedesktop.network1"
)

// Owners hands bridges over to the manager owning their uplink. The zero
// value is not usable: see ForHost, or fill the fields (tests).
type Owners struct {
	NM       *nm.Client       // nil: NetworkManager is not asked
	Networkd *networkd.Client // nil: systemd-networkd is not asked
	NS       netns.NsHandle   // the network namespace the managers run in
	Root     string           // where their file system is seen ("" for /)
	Timeout  time.Duration    // activation and probe (30 s when zero)
	// Links reads the snapshots and probes, in namespace NS: the kernel
	// path's Manager, shared (the engine's); nil: one of its own, opened
	// when first needed and closed by Close.
	Links    *links.Manager
	ownLinks *links.Manager
	// Dial, when set, connects to the bus the managers answer on, at the
	// first bridge that needs them asked (then NM and Networkd are set
	// from it): a host whose bridges the kernel path already made right
	// connects to nobody, which keeps the hook's steady prepare free of
	// D-Bus.
	Dial func() (*dbus.Conn, error)
	// SameNetns, with Dial: a manager is asked only when its process
	// runs in the caller's network namespace (ForHost sets it).
	SameNetns bool
	conn      *dbus.Conn
}

// ForHost returns Owners for the calling process's namespace over the
// system bus, connected when first needed; close closes that connection.
// Without a system bus (no D-Bus socket) no manager can own an uplink:
// every bridge goes the kernel path. A manager on the bus is asked only
// when it runs in the caller's network namespace (see managers).
func ForHost() (o *Owners, close func(), err error) {
	o = &Owners{NS: netns.None()}
	if _, err := os.Stat(SystemBus); errors.Is(err, os.ErrNotExist) {
		return o, func() {}, nil
	}
	o.Dial = func() (*dbus.Conn, error) { return dbus.ConnectSystemBus() }
	o.SameNetns = true
	return o, o.Close, nil
}

// Close closes the bus connection and the links Manager Owners opened. It
// is idempotent.
func (o *Owners) Close() {
	if o.conn != nil {
		o.conn.Close()
		o.conn = nil
	}
	if o.ownLinks != nil {
		o.ownLinks.Close()
		o.ownLinks = nil
	}
}

// links is the Manager that reads the snapshots and probes.
func (o *Owners) links() (*links.Manager, error) {
	if o.Links != nil {
		return o.Links, nil
	}
	if o.ownLinks == nil {
		m, err := links.NewAt(o.NS)
		if err != nil {
			return nil, err
		}
		o.ownLinks = m
	}
	return o.ownLinks, nil
}

// managers connects to the managers' bus when Dial says how and that was
// not done yet. With SameNetns, a manager whose process runs in another
// network namespace than the caller's is not asked: it answers for links
// of the same name elsewhere.
func (o *Owners) managers() error {
	if o.Dial == nil || o.conn != nil {
		return nil
	}
	conn, err := o.Dial()
	if err != nil {
		return fmt.Errorf("connecting to the system D-Bus to ask NetworkManager and systemd-networkd who owns the uplinks: %w", err)
	}
	o.conn, o.NM, o.Networkd = conn, nm.New(conn), networkd.New(conn)
	if o.SameNetns && !inOurNetns(conn, nmBus) {
		o.NM = nil
	}
	if o.SameNetns && !inOurNetns(conn, networkdBus) {
		o.Networkd = nil
	}
	return nil
}

// inOurNetns reports whether the process owning bus name runs in the
// caller's network namespace. The system bus is not per namespace: the
// machine's bus seen from a container or a test lab carries managers of
// another namespace, and a host namespace with its own mount namespace
// (its own /run/dbus) carries its own. A name without owner is said ours
// (the manager's client then finds it absent); a namespace that cannot be
// read (not root; hidden or denied under virtbridged's unit) too, as
// nothing better can be told.
func inOurNetns(conn *dbus.Conn, name string) bool {
	var pid uint32
	if err := conn.BusObject().Call("org.freedesktop.DBus.GetConnectionUnixProcessID", 0, name).Store(&pid); err != nil {
		return true
	}
	var self, other syscall.Stat_t
	if syscall.Stat("/proc/thread-self/ns/net", &self) != nil {
		return true
	}
	if err := syscall.Stat(fmt.Sprintf("/proc/%d/ns/net", pid), &other); err != nil {
		// Not readable: virtbridged's unit hides other users' processes
		// (ProtectProc=invisible: networkd runs as systemd-network, ENOENT)
		// and keeps no CAP_SYS_PTRACE (EACCES). Asking is the safe side:
		// not asking would take the kernel path under its feet.
		return true
	}
	return self.Ino == other.Ino && self.Dev == other.Dev
}

// EnsureBridge hands b over to the manager owning its uplink
// (apply.Owners): it reads the snapshot links.Plan decides on, asks
// NetworkManager, then systemd-networkd (with manager: networkmanager or
// networkd only that one) who owns the uplink, only when the plan needs
// to know (links.NeedsOwner: not for a bridge the kernel path already
// made ready, so a steady prepare dials no D-Bus), and executes the
// plan's handover step through that manager, probing the gateways the
// plan names with the kernel path's probe. The planner's refusals are the
// kernel path's (a missing, ambiguous, busy or wireless uplink, a link
// of the bridge's name that is no bridge, routes through nexthop
// objects), and manager: networkmanager or networkd is refused when that
// manager does not own the uplink. A bridge with manager: kernel or
// virtbridged (virtbridged keeps its lease, internal/owner/lease), one
// whose uplink nobody owns, one without an uplink, and one that keeps
// its addresses off the bridge (move_addresses: false) are the kernel
// path's (handled false). Detection failures refuse rather than go the
// kernel path under a manager's feet. The undo pushed on rv gives the
// uplink back to its owner's own configuration.
func (o *Owners) EnsureBridge(ctx context.Context, b desired.Bridge, rv *revert.Reverter) ([]change.Change, bool, error) {
	if b.Manager == "kernel" || b.Manager == "virtbridged" || !b.MoveAddresses || (b.Uplink == "" && b.UplinkMAC == "") {
		return nil, false, nil
	}
	forced := b.Manager == "networkmanager" || b.Manager == "networkd"
	if o.NM == nil && o.Networkd == nil && o.Dial == nil && !forced {
		return nil, false, nil // no manager to ask: the kernel path
	}
	lm, err := o.links()
	if err != nil {
		return nil, true, fmt.Errorf("bridge %q: %w", b.Name, err)
	}
	s, err := lm.Snapshot(b)
	if err != nil {
		return nil, true, fmt.Errorf("bridge %q: %w", b.Name, err)
	}
	uplink, need := links.NeedsOwner(b, s)
	if uplink == "" || !need && !forced {
		return nil, false, nil // the kernel path's: ready, or its refusal
	}
	w, err := o.detect(ctx, b, uplink)
	if err != nil {
		return nil, true, fmt.Errorf("bridge %q: %w", b.Name, err)
	}
	s.Owner = &w
	steps, err := links.Plan(b, s)
	if err != nil {
		return nil, true, err
	}
	if w.Kind != owner.NetworkManager && w.Kind != owner.Networkd {
		return nil, false, nil // nobody manages the uplink: the kernel path
	}
	for _, st := range steps {
		if st.Op == links.OpHandover {
			cs, err := o.handover(ctx, b, *st.Handover, lm, rv)
			return cs, true, err
		}
	}
	return nil, true, nil // the manager's bridge is ready
}

// detect asks the managers b's manager: setting allows, in order, who
// owns uplink: owner.Kernel when none does.
func (o *Owners) detect(ctx context.Context, b desired.Bridge, uplink string) (owner.Owner, error) {
	if err := o.managers(); err != nil {
		return owner.Owner{}, err
	}
	if o.NM != nil && b.Manager != "networkd" {
		if w, ok, err := o.NM.Detect(ctx, uplink); ok || err != nil {
			return w, err
		}
	}
	if o.Networkd != nil && b.Manager != "networkmanager" {
		if w, ok, err := o.Networkd.Detect(ctx, uplink); ok || err != nil {
			return w, err
		}
	}
	return owner.Owner{Kind: owner.Kernel, Uplink: uplink}, nil
}

// handover executes the plan's handover step h through its manager,
// within timeout (o.timeout), with the kernel path's probe of the
// gateways h names on the bridge (none: the manager's own check is the
// verdict). A handover that made the bridge is recorded with the probe
// and both times (probed).
func (o *Owners) handover(ctx context.Context, b desired.Bridge, h links.Handover, lm *links.Manager, rv *revert.Reverter) ([]change.Change, error) {
	b.Uplink, b.STP, b.ForwardDelay, b.MTU = h.Uplink, h.STP, h.ForwardDelay, h.MTU
	timeout, err := o.timeout(ctx, b)
	if err != nil {
		return nil, err
	}
	var seen []change.Change
	var probe func(context.Context, string) error
	if len(h.Probe) > 0 {
		probe = func(ctx context.Context, bridge string) error {
			cs, err := lm.Probe(ctx, bridge, h.Uplink, h.Probe, h.ProbeTimeout)
			seen = cs
			return err
		}
	}
	var cs []change.Change
	var handoff, took time.Duration
	manager := "NetworkManager"
	if h.Manager == owner.NetworkManager {
		var r nm.Result
		r, err = o.NM.Handover(ctx, nm.Spec{Bridge: b, Timeout: timeout, Probe: probe})
		if err == nil && len(r.Changes) > 0 {
			rv.Add(func() error { return o.NM.Release(ctx, b, r) })
		}
		cs, handoff, took = r.Changes, r.Handoff, r.Probe
	} else {
		manager = "systemd-networkd"
		s := networkd.Spec{Bridge: b, Timeout: timeout, Probe: probe, NS: o.NS, Root: o.Root}
		var r networkd.Result
		r, err = o.Networkd.Handover(ctx, s)
		if err == nil && len(r.Changes) > 0 {
			rv.Add(func() error { return o.Networkd.Release(ctx, s, r) })
		}
		cs, handoff, took = r.Changes, r.Handoff, r.Probe
	}
	if err == nil && madeBridge(cs) {
		cs = append(cs, probed(b, manager, handoff, took, seen)...)
	}
	return cs, err
}

// rollbackReserve is kept from the caller's deadline (the hook's
// hook_timeout, past which the hook's process ends) for the rollback of a
// handoff whose activation or probe failed: NetworkManager's checkpoint
// rollback or networkd's files removed, and the uplink's own
// configuration active again (about 1-2 s, more under load).
const rollbackReserve = 8 * time.Second

// timeout bounds a manager's activation and probe: o.Timeout (30 s when
// zero), and no later than rollbackReserve before ctx's deadline, so that
// a failed handoff is rolled back before the caller gives up. With less
// than a second left for the handoff it refuses, changing nothing.
func (o *Owners) timeout(ctx context.Context, b desired.Bridge) (time.Duration, error) {
	t := o.Timeout
	if t == 0 {
		t = 30 * time.Second
	}
	d, ok := ctx.Deadline()
	if !ok {
		return t, nil
	}
	if left := time.Until(d); left-rollbackReserve < min(t, time.Second) {
		return 0, fmt.Errorf("bridge %q: handing uplink %q over to its manager: %v left before the deadline, too little to hand it over "+
			"and still roll back (%v are kept for that); raise hook_timeout", b.Name, b.Uplink, left.Round(time.Millisecond), rollbackReserve)
	}
	return min(t, time.Until(d)-rollbackReserve), nil
}

// madeBridge reports whether changes hand an uplink over (the manager
// made the bridge), not only re-apply settings to a bridge handed over
// before.
func madeBridge(changes []change.Change) bool {
	for _, c := range changes {
		if c.Kind == change.BridgeCreated {
			return true
		}
	}
	return false
}

// probed records a handoff to a manager and the probe after it, with
// their times: host changes, journaled like the kernel path's probe
// (change.UplinkProbed, the gateway as its object; the bridge when there
// was no gateway to probe). seen is what the probe recorded.
func probed(b desired.Bridge, manager string, handoff, probe time.Duration, seen []change.Change) []change.Change {
	if len(seen) == 0 {
		return []change.Change{{Kind: change.UplinkProbed, Object: b.Name,
			After: fmt.Sprintf("%s handoff took %v; no default gateway through %q to probe", manager, handoff.Round(time.Millisecond), b.Uplink)}}
	}
	var out []change.Change
	for _, c := range seen {
		c.After += fmt.Sprintf(", after the %s handoff of %v (probe %v)", manager, handoff.Round(time.Millisecond), probe.Round(time.Millisecond))
		out = append(out, c)
	}
	return out
}

// Owner tells, read-only, whether NetworkManager or systemd-networkd owns
// link (asked in that order; the one not set is not asked): for plan,
// status and doctor. Neither owning it is no error.
func (o *Owners) Owner(ctx context.Context, link string) (owner.Owner, bool, error) {
	if err := o.managers(); err != nil {
		return owner.Owner{}, false, err
	}
	if o.NM != nil {
		if w, ok, err := o.NM.Detect(ctx, link); ok || err != nil {
			return w, ok, err
		}
	}
	if o.Networkd != nil {
		return o.Networkd.Detect(ctx, link)
	}
	return owner.Owner{}, false, nil
}
