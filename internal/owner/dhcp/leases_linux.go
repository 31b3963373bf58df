package dhcp

import (
	"fmt"
	"net"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// ifaProto is IFA_PROTO (Linux 5.18): who made the address;
// IfaprotKernelRA is the kernel from a router advertisement (SLAAC).
const (
	ifaProto        = 11
	IfaprotKernelRA = 2
)

// Leases lists the dynamic addresses (IsDynamic) of link uplink in the
// calling process's network namespace. It only reads.
func Leases(uplink string) ([]Lease, error) { return LeasesAt(netns.None(), uplink) }

// LeasesAt is Leases in network namespace ns (netns.None(): the calling
// process's).
func LeasesAt(ns netns.NsHandle, link string) ([]Lease, error) {
	h, err := netlink.NewHandleAt(ns, unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("opening netlink: %w", err)
	}
	defer h.Close()
	l, err := h.LinkByName(link)
	if err != nil {
		return nil, fmt.Errorf("reading link %q: %w", link, err)
	}
	s, err := nl.GetNetlinkSocketAt(ns, netns.None(), unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("opening netlink: %w", err)
	}
	defer s.Close()
	req := nl.NewNetlinkRequest(unix.RTM_GETADDR, unix.NLM_F_DUMP)
	req.Sockets = map[int]*nl.SocketHandle{unix.NETLINK_ROUTE: {Socket: s}}
	req.AddData(nl.NewIfAddrmsg(unix.AF_UNSPEC))
	msgs, err := req.Execute(unix.NETLINK_ROUTE, unix.RTM_NEWADDR)
	if err != nil {
		return nil, fmt.Errorf("listing the addresses of %q: %w", link, err)
	}
	var out []Lease
	for _, b := range msgs {
		if lease, ok := leaseOf(b, l.Attrs().Index); ok {
			out = append(out, lease)
		}
	}
	return out, nil
}

// NSInode is the inode of network namespace ns (netns.None(): the calling
// thread's), for Clients; 0 if it cannot be read.
func NSInode(ns netns.NsHandle) uint64 {
	if ns == netns.None() {
		return nsInode("/proc/thread-self/ns/net")
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(ns), &st); err != nil {
		return 0
	}
	return st.Ino
}

// leaseOf decodes one RTM_NEWADDR message; ok when it is a global address
// of the link with index that IsDynamic.
func leaseOf(b []byte, index int) (Lease, bool) {
	if len(b) < unix.SizeofIfAddrmsg {
		return Lease{}, false
	}
	msg := nl.DeserializeIfAddrmsg(b)
	if int(msg.Index) != index || msg.Scope != unix.RT_SCOPE_UNIVERSE ||
		(msg.Family != unix.AF_INET && msg.Family != unix.AF_INET6) {
		return Lease{}, false
	}
	attrs, err := nl.ParseRouteAttr(b[msg.Len():])
	if err != nil {
		return Lease{}, false
	}
	flags, proto := uint32(msg.Flags), uint8(0)
	var ip net.IP
	var l Lease
	for _, a := range attrs {
		switch a.Attr.Type {
		case unix.IFA_LOCAL:
			ip = a.Value
		case unix.IFA_ADDRESS:
			if ip == nil {
				ip = a.Value
			}
		case unix.IFA_FLAGS:
			if len(a.Value) >= 4 {
				flags = nl.NativeEndian().Uint32(a.Value[:4])
			}
		case unix.IFA_CACHEINFO:
			ci := nl.DeserializeIfaCacheInfo(a.Value)
			l.ValidLft, l.PreferredLft = int(ci.Valid), int(ci.Prefered)
		case ifaProto:
			if len(a.Value) >= 1 {
				proto = a.Value[0]
			}
		}
	}
	v6 := msg.Family == unix.AF_INET6
	if ip == nil || !IsDynamic(v6, flags&unix.IFA_F_PERMANENT != 0, proto == IfaprotKernelRA) {
		return Lease{}, false
	}
	l.Addr = (&net.IPNet{IP: ip, Mask: net.CIDRMask(int(msg.Prefixlen), 8*len(ip))}).String()
	return l, true
}
