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
	// KeepsLeases is set in virtbridged, which keeps the lease of a bridge
	// with manager: virtbridged itself (internal/owner/lease): only then
	// does such a bridge's dynamic address move. Elsewhere (the hook, the
	// CLI) it is refused, saying virtbridged must run.
	KeepsLeases bool
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
		return nil, notBridgeError(name, l.Type())
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
	var tapL, brL netlink.Link
	var tap, br *Link
	if p.Tap != "" {
		l, err := m.h.LinkByName(p.Tap)
		if err != nil && !isNotFound(err) {
			return nil, fmt.Errorf("reading tap %q: %w", p.Tap, err)
		}
		tapL = l
	}
	if tapL != nil {
		l, err := m.h.LinkByName(p.Bridge)
		if err != nil && !isNotFound(err) {
			return nil, fmt.Errorf("reading link %q: %w", p.Bridge, err)
		}
		if brL = l; l != nil {
			br = cp(m.linkValue(l, "", nil))
		}
		tap = cp(m.linkValue(tapL, p.Bridge, brL))
	}
	steps, err := PlanPort(p, alias, tap, br)
	if err != nil {
		return nil, err
	}
	var cs []change.Change
	for _, st := range steps {
		if err := m.step(st.Op.Hook(), st.Object); err != nil {
			return cs, err
		}
		if err := m.execPort(st, tapL, brL, rv); err != nil {
			return cs, err
		}
		cs = append(cs, *st.Change)
	}
	return cs, nil
}

// execPort executes one step of PlanPort, with its undo on rv.
func (m *Manager) execPort(st Step, tap, br netlink.Link, rv *revert.Reverter) error {
	name := tap.Attrs().Name
	switch st.Op {
	case OpAttach:
		if err := m.h.LinkSetMaster(tap, br); err != nil {
			return fmt.Errorf("attaching tap %q to bridge %q: %w", name, br.Attrs().Name, err)
		}
		rv.Add(func() error { return m.restoreMaster(tap, st.FromMaster) })
	case OpTapAlias:
		if err := m.h.LinkSetAlias(tap, st.Alias); err != nil {
			return fmt.Errorf("setting the alias of tap %q to %q: %w", name, st.Alias, err)
		}
		rv.Add(func() error { return m.wrap("restoring the alias of "+name, m.h.LinkSetAlias(tap, st.FromAlias)) })
	}
	return nil
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
