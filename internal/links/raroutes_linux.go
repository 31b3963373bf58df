package links

import (
	"errors"
	"fmt"
	"net"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"
)

// Raw IPv6 route and address requests for what vishvananda/netlink does
// not carry: a route's expiry (RTA_CACHEINFO in a dump, RTA_EXPIRES in a
// request) and router preference (RTA_PREF), and an address's IFA_PROTO.

// raRoute is an IPv6 route learnt from router advertisements, with what
// it takes to add it elsewhere.
type raRoute struct {
	dst      *net.IPNet // nil: default
	gw       net.IP
	table    int
	proto    int
	metric   int
	expires  int // seconds left; 0: none
	pref     int // RTA_PREF; -1: none
	hasPref  bool
	linkName string // for messages
}

func (r raRoute) String() string {
	s := "default"
	if r.dst != nil {
		s = r.dst.String()
	}
	if r.gw != nil {
		s += " via " + r.gw.String()
	}
	s += fmt.Sprintf(" proto %s metric %d", protoName(r.proto), r.metric)
	if r.table != unix.RT_TABLE_MAIN {
		s += fmt.Sprintf(" table %d", r.table)
	}
	if r.expires > 0 {
		s += fmt.Sprintf(" expires %ds", r.expires)
	}
	return s
}

func protoName(p int) string {
	switch p {
	case unix.RTPROT_RA:
		return "ra"
	case unix.RTPROT_KERNEL:
		return "kernel"
	}
	return fmt.Sprint(p)
}

// isDefault: a route to ::/0.
func (r raRoute) isDefault() bool { return r.dst == nil }

// copied is r as added on another link: a default route one metric up
// (see step 4 in slaac_linux.go), the others as they are.
func (r raRoute) copied() raRoute {
	if r.isDefault() {
		r.metric++
	}
	return r
}

// sameKey: same table, destination, gateway and metric (the kernel's key).
func (r raRoute) sameKey(o raRoute) bool {
	return r.table == o.table && r.dst.String() == o.dst.String() && r.gw.Equal(o.gw) && r.metric == o.metric
}

// v6Routes dumps the IPv6 unicast routes of every table through the link
// with index oif (not multipath ones), with expiry and preference.
func (m *Manager) v6Routes(oif int) ([]raRoute, error) {
	var msgs [][]byte
	var err error
	for range 5 {
		req := m.request(unix.RTM_GETROUTE, unix.NLM_F_DUMP)
		req.AddData(&nl.RtMsg{RtMsg: unix.RtMsg{Family: unix.AF_INET6}})
		req.AddData(nl.NewRtAttr(unix.RTA_OIF, nl.Uint32Attr(uint32(oif))))
		if msgs, err = req.Execute(unix.NETLINK_ROUTE, unix.RTM_NEWROUTE); !errors.Is(err, netlink.ErrDumpInterrupted) {
			break
		}
	}
	if errors.Is(err, unix.ENOENT) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("listing IPv6 routes: %w", err)
	}
	var out []raRoute
	for _, b := range msgs {
		r, ok, err := parseV6Route(b, oif)
		if err != nil {
			return nil, err
		}
		if ok {
			out = append(out, r)
		}
	}
	return out, nil
}

// parseV6Route decodes one RTM_NEWROUTE; ok is false for a route that is
// not a plain unicast one through oif (local, multicast, multipath).
func parseV6Route(b []byte, oif int) (r raRoute, ok bool, err error) {
	if len(b) < unix.SizeofRtMsg {
		return r, false, fmt.Errorf("short RTM_NEWROUTE message (%d bytes)", len(b))
	}
	msg := nl.DeserializeRtMsg(b)
	if msg.Family != unix.AF_INET6 || msg.Type != unix.RTN_UNICAST || msg.Table == unix.RT_TABLE_LOCAL {
		return r, false, nil
	}
	attrs, err := nl.ParseRouteAttr(b[msg.Len():])
	if err != nil {
		return r, false, err
	}
	r = raRoute{table: int(msg.Table), proto: int(msg.Protocol), pref: -1}
	via := 0
	for _, a := range attrs {
		switch a.Attr.Type {
		case unix.RTA_DST:
			r.dst = &net.IPNet{IP: net.IP(a.Value), Mask: net.CIDRMask(int(msg.Dst_len), 128)}
		case unix.RTA_GATEWAY:
			r.gw = net.IP(a.Value)
		case unix.RTA_OIF:
			via = int(nl.NativeEndian().Uint32(a.Value))
		case unix.RTA_PRIORITY:
			r.metric = int(nl.NativeEndian().Uint32(a.Value))
		case unix.RTA_TABLE:
			r.table = int(nl.NativeEndian().Uint32(a.Value))
		case unix.RTA_CACHEINFO:
			if len(a.Value) >= 12 { // rta_clntref, rta_lastuse, rta_expires (USER_HZ)
				if e := int32(nl.NativeEndian().Uint32(a.Value[8:12])); e > 0 {
					r.expires = int((e + userHZ - 1) / userHZ)
				}
			}
		case unix.RTA_PREF:
			if len(a.Value) >= 1 {
				r.pref, r.hasPref = int(a.Value[0]), true
			}
		}
	}
	if via != oif {
		return r, false, nil
	}
	return r, true, nil
}

// addV6Route adds r through the link with index oif, appended (as
// addRoute does): IPv6 keys a route by destination and metric whatever its
// device, so it sits beside a route of the same key on the other link
// (ECMP siblings, until that one is deleted); the same route through oif
// is EEXIST.
func (m *Manager) addV6Route(r raRoute, oif int) error {
	return m.v6RouteRequest(unix.RTM_NEWROUTE, unix.NLM_F_CREATE|unix.NLM_F_APPEND|unix.NLM_F_ACK, r, oif)
}

// delV6Route deletes r from the link with index oif.
func (m *Manager) delV6Route(r raRoute, oif int) error {
	return m.v6RouteRequest(unix.RTM_DELROUTE, unix.NLM_F_ACK, r, oif)
}

func (m *Manager) v6RouteRequest(typ, flags int, r raRoute, oif int) error {
	req := m.request(typ, flags)
	msg := &nl.RtMsg{RtMsg: unix.RtMsg{Family: unix.AF_INET6, Protocol: uint8(r.proto),
		Scope: unix.RT_SCOPE_UNIVERSE, Type: unix.RTN_UNICAST, Table: unix.RT_TABLE_UNSPEC}}
	if r.table < 256 {
		msg.Table = uint8(r.table)
	}
	if r.dst != nil {
		ones, _ := r.dst.Mask.Size()
		msg.Dst_len = uint8(ones)
	}
	req.AddData(msg)
	if r.dst != nil {
		req.AddData(nl.NewRtAttr(unix.RTA_DST, r.dst.IP.To16()))
	}
	if r.gw != nil {
		req.AddData(nl.NewRtAttr(unix.RTA_GATEWAY, r.gw.To16()))
	}
	req.AddData(nl.NewRtAttr(unix.RTA_OIF, nl.Uint32Attr(uint32(oif))))
	req.AddData(nl.NewRtAttr(unix.RTA_PRIORITY, nl.Uint32Attr(uint32(r.metric))))
	req.AddData(nl.NewRtAttr(unix.RTA_TABLE, nl.Uint32Attr(uint32(r.table))))
	if typ == unix.RTM_NEWROUTE {
		if r.expires > 0 {
			req.AddData(nl.NewRtAttr(unix.RTA_EXPIRES, nl.Uint32Attr(uint32(r.expires))))
		}
		if r.hasPref {
			req.AddData(nl.NewRtAttr(unix.RTA_PREF, []byte{uint8(r.pref)}))
		}
	}
	_, err := req.Execute(unix.NETLINK_ROUTE, 0)
	return err
}

// addV6Addr adds a (an IPv6 address as dumped) on the link with index
// link with its flags (addrFlags and nodad), its lifetimes and IFA_PROTO
// proto (0: none), which vishvananda/netlink cannot send.
func (m *Manager) addV6Addr(a netlink.Addr, link, proto int) error {
	req := m.request(unix.RTM_NEWADDR, unix.NLM_F_CREATE|unix.NLM_F_EXCL|unix.NLM_F_ACK)
	msg := nl.NewIfAddrmsg(unix.AF_INET6)
	ones, _ := a.Mask.Size()
	msg.Prefixlen, msg.Index, msg.Scope = uint8(ones), uint32(link), unix.RT_SCOPE_UNIVERSE
	req.AddData(msg)
	req.AddData(nl.NewRtAttr(unix.IFA_LOCAL, a.IP.To16()))
	req.AddData(nl.NewRtAttr(unix.IFA_ADDRESS, a.IP.To16()))
	req.AddData(nl.NewRtAttr(unix.IFA_FLAGS, nl.Uint32Attr(uint32(addrFlags(a)|unix.IFA_F_NODAD))))
	if a.ValidLft > 0 || a.PreferedLft > 0 {
		ci := nl.IfaCacheInfo{IfaCacheinfo: unix.IfaCacheinfo{Prefered: uint32(a.PreferedLft), Valid: uint32(a.ValidLft)}}
		req.AddData(nl.NewRtAttr(unix.IFA_CACHEINFO, ci.Serialize()))
	}
	if proto != 0 {
		req.AddData(nl.NewRtAttr(ifaProto, []byte{uint8(proto)}))
	}
	_, err := req.Execute(unix.NETLINK_ROUTE, 0)
	return err
}
