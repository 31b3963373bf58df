package links

import (
	"errors"
	"fmt"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"
)

// Permanent neighbour entries (static ARP and NDP: `ip neigh add ...
// nud permanent dev uplink`) belong to the uplink's addresses: the kernel
// flushes them when the uplink's last address goes. They move to the
// bridge with the addresses: added on the bridge before the uplink's
// copies are deleted, each step with its undo.

// neighDump lists the neighbour entries of family fam on the link with
// index. With strict dump checking (setStrict) the kernel refuses a link
// index in the request's header (netlink's NeighList puts it there) and
// takes it as an NDA_IFINDEX attribute.
func (m *Manager) neighDump(index, fam int) ([]netlink.Neigh, error) {
	req := m.request(unix.RTM_GETNEIGH, unix.NLM_F_DUMP)
	req.AddData(&netlink.Ndmsg{Family: uint8(fam)})
	req.AddData(nl.NewRtAttr(unix.NDA_IFINDEX, nl.Uint32Attr(uint32(index))))
	msgs, err := req.Execute(unix.NETLINK_ROUTE, unix.RTM_NEWNEIGH)
	if err != nil {
		return nil, err
	}
	var out []netlink.Neigh
	for _, b := range msgs {
		n, err := netlink.NeighDeserialize(b)
		if err != nil {
			return nil, err
		}
		out = append(out, *n)
	}
	return out, nil
}

func neighString(n netlink.Neigh) string { return neighValues([]netlink.Neigh{n})[0].String() }

// neighOn is a copy of n to add on, or delete from, the link with index.
func neighOn(n netlink.Neigh, index int) *netlink.Neigh {
	return &netlink.Neigh{LinkIndex: index, Family: n.Family, State: netlink.NUD_PERMANENT,
		Flags: n.Flags & netlink.NTF_ROUTER, IP: n.IP, HardwareAddr: n.HardwareAddr}
}

// addNeigh adds n on the bridge; one already there is left alone.
func (m *Manager) addNeigh(r *run, n netlink.Neigh) error {
	c := neighOn(n, r.br.Attrs().Index)
	err := m.h.NeighAdd(c)
	if errors.Is(err, unix.EEXIST) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("adding neighbour %s to bridge %q: %w", neighString(n), r.b.Name, err)
	}
	r.rv.Add(func() error {
		err := m.h.NeighDel(c)
		if errors.Is(err, unix.ENOENT) {
			return nil
		}
		return m.wrap(fmt.Sprintf("deleting neighbour %s from bridge %q", neighString(n), r.b.Name), err)
	})
	return nil
}

// delNeigh deletes n from the uplink.
func (m *Manager) delNeigh(r *run, n netlink.Neigh) error {
	upName := r.up.Attrs().Name
	c := neighOn(n, n.LinkIndex)
	if err := m.h.NeighDel(c); err != nil && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("deleting neighbour %s from %q: %w", neighString(n), upName, err)
	}
	r.rv.Add(func() error {
		err := m.h.NeighAdd(c)
		if errors.Is(err, unix.EEXIST) {
			return nil
		}
		return m.wrap(fmt.Sprintf("adding neighbour %s back to %q", neighString(n), upName), err)
	})
	return nil
}
