package links

import (
	"errors"
	"fmt"
	"net"
	"slices"

	"github.com/virtbridge/virtbridge/internal/owner/dhcp"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"
)

// Dumps of one link's addresses and routes, filtered by the kernel.
//
// Without NETLINK_GET_STRICT_CHK the kernel ignores the link index of an
// RTM_GETADDR dump request and the output device of an RTM_GETROUTE one:
// it walks every link (and every route) of the namespace and sends them
// all, and the caller throws away what is not the uplink's or the
// bridge's. On a host with a thousand taps that walk was the difference
// between a plain host and a busy one at prepare (docs/BENCHMARKS.md, F5).
// With the option set (Linux >= 4.20) the kernel checks dump requests
// strictly and honours ifa_index, rtm_table and RTA_OIF. A kernel without
// it refuses the option; the dumps then return everything, and the
// filters applied here as well keep the answers the same.

// setStrict asks the kernel to check and filter the Manager's rtnetlink
// dump requests strictly. A kernel that does not know the option keeps
// the old behaviour, which is not an error.
func (m *Manager) setStrict() error {
	err := m.h.SetStrictCheck(true)
	if err == nil {
		err = unix.SetsockoptInt(m.socks[unix.NETLINK_ROUTE].Socket.GetFd(),
			unix.SOL_NETLINK, unix.NETLINK_GET_STRICT_CHK, 1)
	}
	if errors.Is(err, unix.ENOPROTOOPT) {
		return nil
	}
	return err
}

// addrDump lists the addresses (both families) of the link with index,
// asking the kernel for that link's only; seen is the number of addresses
// the kernel sent, for the tests.
func (m *Manager) addrDump(index int) (as []netlink.Addr, seen int, err error) {
	req := m.request(unix.RTM_GETADDR, unix.NLM_F_DUMP)
	msg := nl.NewIfAddrmsg(unix.AF_UNSPEC)
	msg.Index = uint32(index)
	req.AddData(msg)
	msgs, err := req.Execute(unix.NETLINK_ROUTE, unix.RTM_NEWADDR)
	if err != nil {
		return nil, 0, err
	}
	for _, b := range msgs {
		a, ok, err := parseAddr(b)
		if err != nil {
			return nil, 0, err
		}
		if ok && a.LinkIndex == index {
			as = append(as, a)
		}
	}
	return as, len(msgs), nil
}

// parseAddr decodes one RTM_NEWADDR message as vishvananda/netlink's
// AddrList does (same fields, same rules for IFA_LOCAL and IFA_ADDRESS);
// ok is false for a message of a family other than IPv4 and IPv6.
func parseAddr(b []byte) (a netlink.Addr, ok bool, err error) {
	if len(b) < unix.SizeofIfAddrmsg {
		return a, false, fmt.Errorf("short RTM_NEWADDR message (%d bytes)", len(b))
	}
	msg := nl.DeserializeIfAddrmsg(b)
	if msg.Family != unix.AF_INET && msg.Family != unix.AF_INET6 {
		return a, false, nil
	}
	attrs, err := nl.ParseRouteAttr(b[msg.Len():])
	if err != nil {
		return a, false, err
	}
	a.LinkIndex, a.Scope = int(msg.Index), int(msg.Scope)
	slaac := false
	var local, dst *net.IPNet
	for _, at := range attrs {
		switch at.Attr.Type {
		case unix.IFA_ADDRESS:
			dst = &net.IPNet{IP: at.Value, Mask: net.CIDRMask(int(msg.Prefixlen), 8*len(at.Value))}
		case unix.IFA_LOCAL:
			n := 8 * len(at.Value)
			local = &net.IPNet{IP: at.Value, Mask: net.CIDRMask(n, n)}
		case unix.IFA_BROADCAST:
			a.Broadcast = at.Value
		case unix.IFA_LABEL:
			if len(at.Value) > 0 {
				a.Label = string(at.Value[:len(at.Value)-1])
			}
		case unix.IFA_FLAGS:
			if len(at.Value) >= 4 {
				a.Flags = int(nl.NativeEndian().Uint32(at.Value[:4]))
			}
		case unix.IFA_CACHEINFO:
			ci := nl.DeserializeIfaCacheInfo(at.Value)
			a.PreferedLft, a.ValidLft = int(ci.Prefered), int(ci.Valid)
		case ifaProto:
			if len(at.Value) >= 1 && at.Value[0] == dhcp.IfaprotKernelRA {
				slaac = true
			}
		}
	}
	switch {
	case local != nil && msg.Family == unix.AF_INET && dst != nil && local.IP.Equal(dst.IP):
		a.IPNet = dst
	case local != nil:
		a.IPNet, a.Peer = local, dst
	default:
		a.IPNet = dst
	}
	if slaac {
		a.Flags |= flagSLAAC
	}
	return a, true, nil
}

// IFA_PROTO (Linux 5.18) says who made an address. netlink.Addr has no
// field for it: parseAddr marks an address the kernel made from a router
// advertisement (SLAAC) with flagSLAAC, a bit no IFA_F_* flag uses, which
// addrFlags never sends back to the kernel.
const (
	ifaProto  = 11
	flagSLAAC = 1 << 30
)

// addrs lists l's addresses that keep says to, retrying a dump the kernel
// interrupted.
func (m *Manager) addrs(l netlink.Link, keep func(netlink.Addr) bool) ([]netlink.Addr, error) {
	var as []netlink.Addr
	var err error
	for range 5 {
		if as, _, err = m.addrDump(l.Attrs().Index); !errors.Is(err, netlink.ErrDumpInterrupted) {
			break
		}
	}
	if err != nil {
		return nil, fmt.Errorf("listing the addresses of %q: %w", l.Attrs().Name, err)
	}
	return slices.DeleteFunc(as, func(a netlink.Addr) bool { return !keep(a) }), nil
}

// routesVia lists the IPv4 and IPv6 routes of every table that use the
// link with index oif, as the kernel sends them (routeDump).
func (m *Manager) routesVia(oif int) ([]netlink.Route, error) {
	var out []netlink.Route
	for _, fam := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
		rs, err := m.routeDump(fam, oif)
		if err != nil {
			return nil, err
		}
		out = append(out, rs...)
	}
	return out, nil
}

// routeDump lists the routes of every table of family fam that use the
// link with index oif (a multipath route using it among others included), as
// the kernel sends them, retrying a dump the kernel interrupted.
func (m *Manager) routeDump(fam, oif int) ([]netlink.Route, error) {
	filter := &netlink.Route{Table: unix.RT_TABLE_UNSPEC, LinkIndex: oif} // every table
	var rs []netlink.Route
	var err error
	for range 5 {
		// RT_FILTER_TABLE only: netlink's own RT_FILTER_OIF would drop
		// multipath routes (their LinkIndex is 0); the kernel filters by
		// oif, from the request's RTA_OIF.
		rs, err = m.h.RouteListFiltered(fam, filter, netlink.RT_FILTER_TABLE)
		if !errors.Is(err, netlink.ErrDumpInterrupted) {
			break
		}
	}
	switch {
	case errors.Is(err, unix.ENOENT):
		return nil, nil // strict dumps: the family has no table, so no routes
	case err != nil:
		return nil, fmt.Errorf("listing routes: %w", err)
	}
	return rs, nil
}

// portDump lists the links whose master is the link with index master
// (a bridge's ports), asking the kernel for those only (IFLA_MASTER).
func (m *Manager) portDump(master int) ([]netlink.Link, error) {
	req := m.request(unix.RTM_GETLINK, unix.NLM_F_DUMP)
	req.AddData(nl.NewIfInfomsg(unix.AF_UNSPEC))
	req.AddData(nl.NewRtAttr(unix.IFLA_MASTER, nl.Uint32Attr(uint32(master))))
	msgs, err := req.Execute(unix.NETLINK_ROUTE, unix.RTM_NEWLINK)
	if err != nil {
		return nil, err
	}
	var ls []netlink.Link
	for _, b := range msgs {
		l, err := netlink.LinkDeserialize(nil, b)
		if err != nil {
			return nil, err
		}
		if l.Attrs().MasterIndex == master {
			ls = append(ls, l)
		}
	}
	return ls, nil
}
