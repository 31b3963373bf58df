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
	conn *dbus.Conn
}

// ForHost returns Owners for the calling process's namespace over the
// system bus, connected when first needed; close closes that connection.
// Without a system bus (no D-Bus socket) no manager can own an uplink:
// every bridge goes the kernel path.
func ForHost() (o *Owners, close func(), err error) {
	o = &Owners{NS: netns.None()}
	if _, err := os.Stat(SystemBus); errors.Is(err, os.ErrNotExist) || !initNetns() {
		return o, func() {}, nil
	}
	o.Dial = func() (*dbus.Conn, error) { return dbus.ConnectSystemBus() }
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
// not done yet.
func (o *Owners) managers() error {
	if o.Dial == nil || o.conn != nil {
		return nil
	}
	conn, err := o.Dial()
	if err != nil {
		return fmt.Errorf("connecting to the system D-Bus to ask NetworkManager and systemd-networkd who owns the uplinks: %w", err)
	}
	o.conn, o.NM, o.Networkd = conn, nm.New(conn), networkd.New(conn)
	return nil
}

// initNetns reports whether the calling process runs in the machine's
// network namespace (PID 1's). The system bus is not per namespace: in
// another namespace (a container, a test lab) its managers would answer
// for links of the same name elsewhere, so they are not asked. When PID
// 1's namespace cannot be read (not root) the answer is yes.
func initNetns() bool {
	var self, init syscall.Stat_t
	if syscall.Stat("/proc/self/ns/net", &self) != nil || syscall.Stat("/proc/1/ns/net", &init) != nil {
		return true
	}
	return self.Ino == init.Ino && self.Dev == init.Dev
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

// handover executes the plan's handover step h through its manager, with
// the probe of the gateways h names on the bridge (none: the manager's
// own check is the verdict).
func (o *Owners) handover(ctx context.Context, b desired.Bridge, h links.Handover, lm *links.Manager, rv *revert.Reverter) ([]change.Change, error) {
	b.Uplink, b.STP, b.ForwardDelay, b.MTU = h.Uplink, h.STP, h.ForwardDelay, h.MTU
	var probe func(context.Context, string) error
	if len(h.Probe) > 0 {
		probe = func(ctx context.Context, bridge string) error {
			_, err := lm.Probe(ctx, bridge, h.Uplink, h.Probe, h.ProbeTimeout)
			return err
		}
	}
	if h.Manager == owner.NetworkManager {
		r, err := o.NM.Handover(ctx, nm.Spec{Bridge: b, Timeout: o.Timeout, Probe: probe})
		if err == nil && len(r.Changes) > 0 {
			rv.Add(func() error { return o.NM.Release(ctx, b, r) })
		}
		return r.Changes, err
	}
	s := networkd.Spec{Bridge: b, Timeout: o.Timeout, Probe: probe, NS: o.NS, Root: o.Root}
	r, err := o.Networkd.Handover(ctx, s)
	if err == nil && len(r.Changes) > 0 {
		rv.Add(func() error { return o.Networkd.Release(ctx, s, r) })
	}
	return r.Changes, err
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
