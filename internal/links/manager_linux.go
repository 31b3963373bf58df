package links

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/virtbridge/virtbridge/internal/change"
	"github.com/virtbridge/virtbridge/internal/deadline"
	"github.com/virtbridge/virtbridge/internal/desired"
	"github.com/virtbridge/virtbridge/internal/owner/dhcp"
	"github.com/virtbridge/virtbridge/internal/revert"
)

// Manager is the link backend over rtnetlink for one network namespace.
// Every call goes through netlink sockets opened in that namespace when the
// Manager was made; no thread ever switches namespace afterwards. A Manager
// is not safe for concurrent use.
type Manager struct {
	h     *netlink.Handle
	socks map[int]*nl.SocketHandle // raw requests (bridge attributes, nl80211)

	// sysfs is the root of a sysfs mounted in the Manager's namespace ("/sys"
	// for New), or "" when there is none. It is only read for the bridge's
	// addr_assign_type, which netlink does not report.
	sysfs string
	// wireless tells whether a link is an 802.11 station.
	wireless func(netlink.Link) (bool, error)
	// netns is the inode of the Manager's network namespace, to tell the
	// DHCP clients of its links from those of other namespaces (0: any).
	netns uint64
	// ns is the namespace NewAt was given (closed: the process's own), for
	// the per-link IPv6 settings under /proc/sys (inNS).
	ns netns.NsHandle
	// hook, when set (tests only), runs before every change and fails it by
	// returning an error.
	hook func(step, object string) error
}

// New returns a Manager for the calling process's network namespace.
func New() (*Manager, error) {
	m, err := NewAt(netns.None())
	if err != nil {
		return nil, err
	}
	m.sysfs = "/sys"
	return m, nil
}

// NewAt returns a Manager for the network namespace ns; the caller keeps
// ns open until Close. netns.None() means the current namespace.
func NewAt(ns netns.NsHandle) (*Manager, error) {
	h, err := netlink.NewHandleAt(ns, unix.NETLINK_ROUTE, unix.NETLINK_GENERIC)
	if err != nil {
		return nil, fmt.Errorf("opening netlink in the network namespace: %w", err)
	}
	m := &Manager{h: h, socks: map[int]*nl.SocketHandle{}}
	for _, proto := range []int{unix.NETLINK_ROUTE, unix.NETLINK_GENERIC} {
		s, err := nl.GetNetlinkSocketAt(ns, netns.None(), proto)
		if err != nil {
			m.Close()
			return nil, fmt.Errorf("opening netlink in the network namespace: %w", err)
		}
		// No SetExtAck: netlink v1.3.1 misparses an error carried by
		// NLMSG_DONE with extended-ack TLVs, and panics (seen on a dump).
		m.socks[proto] = &nl.SocketHandle{Socket: s}
	}
	if err := m.setStrict(); err != nil {
		m.Close()
		return nil, fmt.Errorf("asking the kernel for filtered netlink dumps: %w", err)
	}
	m.wireless = m.nl80211Wireless
	m.netns = dhcp.NSInode(ns)
	m.ns = ns
	return m, nil
}

// Close releases the Manager's netlink sockets. It is idempotent.
func (m *Manager) Close() {
	if m.h != nil {
		m.h.Close()
		m.h = nil
	}
	for k, s := range m.socks {
		s.Close()
		delete(m.socks, k)
	}
}

// step runs the test hook before a change.
func (m *Manager) step(step, object string) error {
	if m.hook == nil {
		return nil
	}
	return m.hook(step, object)
}

// run is one EnsureBridge call: the bridge's spec, the undo stack and the
// changes made so far.
type run struct {
	b   desired.Bridge
	rv  *revert.Reverter
	cs  []change.Change
	br  netlink.Link // the bridge, re-read after each change that matters
	up  netlink.Link // the uplink, nil when the bridge has none
	new bool         // the bridge was created by this run
	// enslaved: this run put the uplink into the bridge.
	enslaved bool
	// foreign: the bridge existed without ManagedAlias.
	foreign bool
}

func (r *run) record(kind change.Kind, object, before, after string) {
	r.cs = append(r.cs, change.Change{Kind: kind, Object: object, Before: before, After: after})
}

// EnsureBridge makes bridge b exist with its settings and, when b has an
// uplink, enslaves it and (b.MoveAddresses) moves the uplink's addresses
// and routes to the bridge, and its router-advertisement role (SLAAC:
// accept_ra, what it learnt, see slaac_linux.go). It is idempotent: it reads, compares and
// changes only the difference, pushes the undo of every change on rv, and
// returns the changes made (none when the host already matches). It refuses,
// before changing anything, a non-bridge link named like the bridge, a
// missing, busy, ambiguous or wireless uplink. On error the changes made so
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
	r := &run{b: b, rv: rv}
	br, err := m.existingBridge(b.Name)
	if err != nil {
		return nil, err
	}
	if r.up, err = m.resolveUplink(b, br); err != nil {
		return nil, err
	}
	var plan *movePlan
	if r.up != nil && b.MoveAddresses {
		brIndex := 0
		if br != nil {
			brIndex = br.Attrs().Index
		}
		if plan, err = m.planMove(b, r.up, brIndex); err != nil {
			return nil, err
		}
	}
	if err := m.checkStaysAddressed(b, r.up, br); err != nil {
		return nil, err
	}
	if br == nil {
		err = m.createBridge(r)
	} else {
		r.br, r.foreign = br, br.Attrs().Alias != ManagedAlias
		err = m.reapplyBridge(r)
	}
	if err == nil && r.up != nil {
		err = m.enslave(r)
	}
	if err == nil {
		err = m.ensureMTU(r)
	}
	if err == nil && plan != nil {
		err = m.moveAddresses(r, plan)
	}
	if err == nil && plan != nil {
		err = m.takeRA(r, b.IPv6Forward) // slaac_linux.go
	}
	if err == nil && plan != nil && !plan.empty() && len(plan.probe) > 0 {
		err = m.probe(ctx, r, plan.probe, b.ProbeTimeout)
	}
	if err == nil && r.foreign {
		err = m.takeOver(r)
	}
	return r.cs, err
}

// takeOver marks a bridge someone else made as managed (ManagedAlias),
// unless it carries an alias of its own, and adds the ForeignBridge notice
// of this run's changes on it.
func (m *Manager) takeOver(r *run) error {
	if r.br.Attrs().Alias == "" {
		if err := m.step("alias-set", r.b.Name); err != nil {
			return err
		}
		if err := m.h.LinkSetAlias(r.br, ManagedAlias); err != nil {
			return fmt.Errorf("setting the alias of bridge %q: %w", r.b.Name, err)
		}
		br := r.br
		r.rv.Add(func() error { return m.wrap("restoring the alias of bridge "+r.b.Name, m.h.LinkSetAlias(br, "")) })
		r.record(change.AliasSet, r.b.Name, "", ManagedAlias)
	}
	if len(r.cs) == 0 {
		return nil
	}
	return m.noteForeign(r)
}

// noteForeign adds the ForeignBridge notice of this run's changes on a
// bridge virtbridge did not create, naming its ports that are neither its
// uplink nor taps (tun/tap devices: what libvirt gives a VM NIC).
func (m *Manager) noteForeign(r *run) error {
	ports, err := m.ports(r.br)
	if err != nil {
		return err
	}
	var others []string
	for _, p := range ports {
		if p.Type() != "tuntap" && (r.up == nil || p.Attrs().Index != r.up.Attrs().Index) {
			others = append(others, fmt.Sprintf("%s (%s)", p.Attrs().Name, p.Type()))
		}
	}
	if c, ok := foreignNotice(r.b.Name, r.cs, others); ok {
		r.cs = append(r.cs, c)
	}
	return nil
}

// existingBridge returns the bridge named name, nil if there is no link of
// that name, and an ErrNotBridge error if the link is something else.
func (m *Manager) existingBridge(name string) (netlink.Link, error) {
	l, err := m.h.LinkByName(name)
	if isNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading link %q: %w", name, err)
	}
	if l.Type() != "bridge" {
		return nil, fmt.Errorf("bridge %q: a link of that name exists and is a %s, not a bridge; "+
			"rename or delete it (ip link del %s) or give the bridge another name in the configuration: %w",
			name, l.Type(), name, ErrNotBridge)
	}
	return l, nil
}

func isNotFound(err error) bool {
	var nf netlink.LinkNotFoundError
	return errors.As(err, &nf) || errors.Is(err, unix.ENODEV)
}

// linkNameKind names the link with index i and its kind, for messages.
func (m *Manager) linkNameKind(i int) (string, string) {
	if l, err := m.h.LinkByIndex(i); err == nil {
		return l.Attrs().Name, l.Type()
	}
	return fmt.Sprintf("ifindex %d", i), ""
}

// linkName names the link with index i, for messages.
func (m *Manager) linkName(i int) string {
	name, _ := m.linkNameKind(i)
	return name
}

// EnsurePort puts the tap p.Tap into bridge p.Bridge and sets its interface
// alias (IFLA_IFALIAS) to alias. It is idempotent: a tap already in its
// bridge with that alias is left alone and no change is returned. Undo
// steps on rv put back the tap's old master and alias. A missing tap or
// bridge is an error wrapping ErrTapMissing or ErrBridgeMissing. A link
// that is no tun/tap device in tap mode, or whose MAC is not the one
// libvirt gives the NIC's tap (TapMAC), is refused before any change with
// an error wrapping ErrNotTap: it is not this VM's tap. A ctx that has
// ended starts nothing (a *deadline.Error).
func (m *Manager) EnsurePort(ctx context.Context, p desired.Port, alias string, rv *revert.Reverter) ([]change.Change, error) {
	if err := deadline.Ended(ctx, "putting tap %q into bridge %q", p.Tap, p.Bridge); err != nil {
		return nil, err
	}
	if rv == nil {
		rv = &revert.Reverter{}
	}
	if p.Tap == "" {
		return nil, fmt.Errorf("port %s of bridge %q names no tap: %w", p.MAC, p.Bridge, ErrTapMissing)
	}
	tap, err := m.h.LinkByName(p.Tap)
	if isNotFound(err) {
		return nil, fmt.Errorf("tap %q of bridge %q: no link named %q in this network namespace "+
			"(the VM's NIC is not plugged yet, or it is already gone): %w", p.Tap, p.Bridge, p.Tap, ErrTapMissing)
	}
	if err != nil {
		return nil, fmt.Errorf("reading tap %q: %w", p.Tap, err)
	}
	if err := checkTap(p, tapKind(tap), tap.Attrs().HardwareAddr.String()); err != nil {
		return nil, err
	}
	br, err := m.existingBridge(p.Bridge)
	if err != nil {
		return nil, err
	}
	if br == nil {
		return nil, fmt.Errorf("tap %q: bridge %q does not exist: %w", p.Tap, p.Bridge, ErrBridgeMissing)
	}
	var cs []change.Change
	if old := tap.Attrs().MasterIndex; old != br.Attrs().Index {
		before := ""
		if old != 0 {
			before = m.linkName(old)
		}
		if err := m.step("port-attach", p.Tap); err != nil {
			return cs, err
		}
		if err := m.h.LinkSetMaster(tap, br); err != nil {
			return cs, fmt.Errorf("attaching tap %q to bridge %q: %w", p.Tap, p.Bridge, err)
		}
		rv.Add(func() error { return m.restoreMaster(tap, old) })
		cs = append(cs, change.Change{Kind: change.PortAttached, Object: p.Tap, Before: before, After: p.Bridge})
	}
	if old := tap.Attrs().Alias; old != alias {
		if err := m.step("alias-set", p.Tap); err != nil {
			return cs, err
		}
		if err := m.h.LinkSetAlias(tap, alias); err != nil {
			return cs, fmt.Errorf("setting the alias of tap %q to %q: %w", p.Tap, alias, err)
		}
		rv.Add(func() error { return m.wrap("restoring the alias of "+p.Tap, m.h.LinkSetAlias(tap, old)) })
		cs = append(cs, change.Change{Kind: change.AliasSet, Object: p.Tap, Before: old, After: alias})
	}
	return cs, nil
}

// tapKind is "tap" for a tun/tap device in tap mode, else what the link
// is, for checkTap.
func tapKind(l netlink.Link) string {
	t, ok := l.(*netlink.Tuntap)
	return tapWhat(l.Type(), ok && t.Mode == netlink.TUNTAP_MODE_TAP)
}

func (m *Manager) restoreMaster(l netlink.Link, master int) error {
	err := m.h.LinkSetMasterByIndex(l, master)
	if isNotFound(err) {
		return nil // the link is gone: nothing left to restore
	}
	return m.wrap(fmt.Sprintf("restoring the master of %q", l.Attrs().Name), err)
}

// wrap prefixes err with what was being done; nil stays nil.
func (m *Manager) wrap(what string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%s: %w", what, err)
}

// links lists every link, retrying a dump the kernel interrupted.
func (m *Manager) links() ([]netlink.Link, error) {
	var ls []netlink.Link
	var err error
	for range 5 {
		if ls, err = m.h.LinkList(); !errors.Is(err, netlink.ErrDumpInterrupted) {
			break
		}
	}
	if err != nil {
		return nil, fmt.Errorf("listing links: %w", err)
	}
	slices.SortFunc(ls, func(a, b netlink.Link) int { return a.Attrs().Index - b.Attrs().Index })
	return ls, nil
}

// checkStaysAddressed refuses to enslave an uplink that is not yet a port
// of br and holds addresses that b says not to move (addressedError).
func (m *Manager) checkStaysAddressed(b desired.Bridge, up, br netlink.Link) error {
	if up == nil || b.MoveAddresses || br != nil && up.Attrs().MasterIndex == br.Attrs().Index {
		return nil
	}
	as, err := m.addrStrings(up)
	if err != nil || len(as) == 0 {
		return err
	}
	return addressedError(b.Name, up.Attrs().Name, as)
}
