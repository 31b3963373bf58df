// Package handoff decides, per bridge, whether its uplink's owner makes
// the bridge — NetworkManager or systemd-networkd, detected over D-Bus —
// or the kernel path does, and drives the owner's handoff with its probe
// and undo. It is what apply.Host.Owners calls in EnsureBridge's place.
package handoff

import (
	"context"
	"errors"
	"fmt"
	"os"
	"syscall"
	"time"

	"github.com/godbus/dbus/v5"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/virtbridge/virtbridge/internal/change"
	"github.com/virtbridge/virtbridge/internal/desired"
	"github.com/virtbridge/virtbridge/internal/links"
	"github.com/virtbridge/virtbridge/internal/owner"
	"github.com/virtbridge/virtbridge/internal/owner/gwprobe"
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
	return o, func() {
		if o.conn != nil {
			o.conn.Close()
		}
	}, nil
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

// kernelMade reports whether b is a bridge the kernel path already made
// right: it carries virtbridge's alias (a manager's bridge does not), its
// uplink is its port and holds no address of the host's any more. Then
// there is nothing to hand over and no manager to ask. Read-only.
func (o *Owners) kernelMade(b desired.Bridge) bool {
	h, err := netlink.NewHandleAt(o.NS)
	if err != nil {
		return false
	}
	defer h.Close()
	br, err := h.LinkByName(b.Name)
	if err != nil || br.Type() != "bridge" || br.Attrs().Alias != links.ManagedAlias {
		return false
	}
	up, err := h.LinkByName(b.Uplink)
	if err != nil || up.Attrs().MasterIndex != br.Attrs().Index {
		return false
	}
	addrs, err := h.AddrList(up, netlink.FAMILY_ALL)
	if err != nil {
		return false
	}
	for _, a := range addrs {
		if a.IP.IsGlobalUnicast() {
			return false
		}
	}
	return true
}

// EnsureBridge hands b over to the manager owning its uplink
// (apply.Owners): NetworkManager first, then systemd-networkd; with
// manager: networkmanager or networkd only that one, and a refusal when it
// does not own the uplink. A bridge with manager: kernel or virtbridged
// (virtbridged keeps its lease, internal/owner/lease), one whose uplink
// nobody owns, one without an uplink, and one that keeps its addresses off
// the bridge (move_addresses: false) are the kernel path's (handled
// false). Detection failures refuse rather than go the kernel
// path under a manager's feet. The undo pushed on rv gives the uplink back
// to its owner's own configuration.
func (o *Owners) EnsureBridge(ctx context.Context, b desired.Bridge, rv *revert.Reverter) ([]change.Change, bool, error) {
	if b.Manager == "kernel" || b.Manager == "virtbridged" || !b.MoveAddresses || (b.Uplink == "" && b.UplinkMAC == "") {
		return nil, false, nil
	}
	forced := b.Manager == "networkmanager" || b.Manager == "networkd"
	if o.NM == nil && o.Networkd == nil && o.Dial == nil && !forced {
		return nil, false, nil // no manager to ask: the kernel path
	}
	uplink, err := o.uplink(b)
	if err != nil || uplink == "" {
		return nil, false, err
	}
	b.Uplink = uplink
	if !forced && o.kernelMade(b) {
		return nil, false, nil
	}
	if err := o.managers(); err != nil {
		return nil, true, fmt.Errorf("bridge %q: %w", b.Name, err)
	}
	if b.Manager != "networkd" {
		if cs, handled, err := o.viaNM(ctx, b, rv); handled || err != nil {
			return cs, true, err
		}
	}
	if b.Manager != "networkmanager" {
		if cs, handled, err := o.viaNetworkd(ctx, b, rv); handled || err != nil {
			return cs, true, err
		}
	}
	if forced {
		return nil, true, fmt.Errorf("bridge %q: the configuration says manager: %s, but %s does not manage uplink %q; "+
			"set manager: auto (or kernel) for this bridge, or let %s manage %s", b.Name, b.Manager, managerName(b.Manager), uplink, managerName(b.Manager), uplink)
	}
	return nil, false, nil
}

func managerName(m string) string {
	if m == "networkd" {
		return "systemd-networkd"
	}
	return "NetworkManager"
}

// viaNM hands b over to NetworkManager when it owns the uplink (handled).
func (o *Owners) viaNM(ctx context.Context, b desired.Bridge, rv *revert.Reverter) ([]change.Change, bool, error) {
	if o.NM == nil {
		return nil, false, nil
	}
	if _, ok, err := o.NM.Detect(ctx, b.Uplink); err != nil || !ok {
		if err != nil {
			err = fmt.Errorf("bridge %q: %w", b.Name, err)
		}
		return nil, false, err
	}
	probe, seen, err := o.probe(b)
	if err != nil {
		return nil, true, err
	}
	timeout, err := o.timeout(ctx, b)
	if err != nil {
		return nil, true, err
	}
	r, err := o.NM.Handover(ctx, nm.Spec{Bridge: b, Timeout: timeout, Probe: probe})
	if err == nil && len(r.Changes) > 0 {
		rv.Add(func() error { return o.NM.Release(ctx, b, r) })
		if madeBridge(r.Changes) {
			r.Changes = append(r.Changes, probed(b, "NetworkManager", r.Handoff, r.Probe, seen))
		}
	}
	return r.Changes, true, err
}

// viaNetworkd hands b over to systemd-networkd when it owns the uplink
// (handled).
func (o *Owners) viaNetworkd(ctx context.Context, b desired.Bridge, rv *revert.Reverter) ([]change.Change, bool, error) {
	if o.Networkd == nil {
		return nil, false, nil
	}
	if _, ok, err := o.Networkd.Detect(ctx, b.Uplink); err != nil || !ok {
		if err != nil {
			err = fmt.Errorf("bridge %q: %w", b.Name, err)
		}
		return nil, false, err
	}
	probe, seen, err := o.probe(b)
	if err != nil {
		return nil, true, err
	}
	timeout, err := o.timeout(ctx, b)
	if err != nil {
		return nil, true, err
	}
	s := networkd.Spec{Bridge: b, Timeout: timeout, Probe: probe, NS: o.NS, Root: o.Root}
	r, err := o.Networkd.Handover(ctx, s)
	if err == nil && len(r.Changes) > 0 {
		rv.Add(func() error { return o.Networkd.Release(ctx, s, r) })
		if madeBridge(r.Changes) {
			r.Changes = append(r.Changes, probed(b, "systemd-networkd", r.Handoff, r.Probe, seen))
		}
	}
	return r.Changes, true, err
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

// uplink names b's uplink: b.Uplink, or the link carrying b.UplinkMAC
// that is no bridge or VLAN ("" when none: the kernel path refuses it).
func (o *Owners) uplink(b desired.Bridge) (string, error) {
	if b.Uplink != "" {
		return b.Uplink, nil
	}
	h, err := netlink.NewHandleAt(o.NS)
	if err != nil {
		return "", fmt.Errorf("bridge %q: opening netlink: %w", b.Name, err)
	}
	defer h.Close()
	ls, err := h.LinkList()
	if err != nil {
		return "", fmt.Errorf("bridge %q: listing links: %w", b.Name, err)
	}
	var found []string
	for _, l := range ls {
		if k := l.Type(); k != "bridge" && k != "vlan" && l.Attrs().HardwareAddr.String() == b.UplinkMAC {
			found = append(found, l.Attrs().Name)
		}
	}
	if len(found) != 1 {
		return "", nil // missing or ambiguous: the kernel path says so
	}
	return found[0], nil
}

// probe is the check after the handoff: the default gateway answers
// through the bridge when the uplink carries the default route; otherwise
// there is no gateway to ask, and the owner's own check (the bridge
// configured with an address where the uplink had one) is the verdict.
// What the probe saw is stored in seen (its Gateway nil when none).
func (o *Owners) probe(b desired.Bridge) (probe func(context.Context, string) error, seen *gwprobe.Result, err error) {
	seen = &gwprobe.Result{}
	h, err := netlink.NewHandleAt(o.NS)
	if err != nil {
		return nil, seen, fmt.Errorf("bridge %q: opening netlink: %w", b.Name, err)
	}
	defer h.Close()
	l, err := h.LinkByName(b.Uplink)
	if err != nil {
		return nil, seen, fmt.Errorf("bridge %q: reading uplink %q: %w", b.Name, b.Uplink, err)
	}
	routes, err := h.RouteList(l, netlink.FAMILY_V4)
	if err != nil {
		return nil, seen, fmt.Errorf("bridge %q: listing the routes of %q: %w", b.Name, b.Uplink, err)
	}
	for _, r := range routes {
		if (r.Dst == nil || r.Dst.IP.IsUnspecified()) && r.Gw != nil {
			ns := o.NS
			return func(ctx context.Context, link string) error {
				res, err := gwprobe.Gateway(ctx, ns, link)
				*seen = res
				return err
			}, seen, nil
		}
	}
	return nil, seen, nil
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

// probed is the record of a handoff to a manager and of the probe after
// it, with their times: a host change, journaled like the kernel path's
// probe (change.UplinkProbed, the gateway as its object; the bridge when
// there was no gateway to probe).
func probed(b desired.Bridge, manager string, handoff, probe time.Duration, seen *gwprobe.Result) change.Change {
	if seen.Gateway == nil {
		return change.Change{Kind: change.UplinkProbed, Object: b.Name,
			After: fmt.Sprintf("%s handoff took %v; no default gateway through %q to probe", manager, handoff.Round(time.Millisecond), b.Uplink)}
	}
	return change.Change{Kind: change.UplinkProbed, Object: seen.Gateway.String(),
		After: fmt.Sprintf("answered on %s in %v, after the %s handoff of %v", b.Name, probe.Round(time.Millisecond), manager, handoff.Round(time.Millisecond))}
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
