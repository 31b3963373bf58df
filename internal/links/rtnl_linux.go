package links

import (
	"errors"
	"fmt"
	"net"
	"syscall"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"
)

// What vishvananda/netlink does not cover is done here with raw requests on
// the Manager's own sockets (bound to its namespace): the bridge's STP state
// and forward delay (netlink.Bridge has no field for either) and the nl80211
// question "is this link a wireless station?".

// userHZ is the kernel's USER_HZ: IFLA_BR_FORWARD_DELAY travels in clock_t
// units, hundredths of a second, whatever the kernel's HZ.
const userHZ = 100

// bridgeOpts are the bridge attributes read and written over netlink.
type bridgeOpts struct {
	stp     bool   // IFLA_BR_STP_STATE != 0 (1: kernel STP, 2: user-space STP)
	delayCS uint32 // IFLA_BR_FORWARD_DELAY in centiseconds
}

func (o bridgeOpts) delaySeconds() int { return int((o.delayCS + userHZ/2) / userHZ) }

// request makes a netlink request that travels on the Manager's sockets.
func (m *Manager) request(proto, flags int) *nl.NetlinkRequest {
	req := nl.NewNetlinkRequest(proto, flags)
	req.Sockets = m.socks
	return req
}

// newBridge is the spec of a bridge created in one RTM_NEWLINK, with its
// final settings, so that no observer sees it with the kernel's defaults.
type newBridge struct {
	name string
	mac  net.HardwareAddr // IFLA_ADDRESS given at birth: addr_assign_type NET_ADDR_SET
	opts bridgeOpts
	up   bool
}

// addBridge creates the bridge (NLM_F_EXCL: EEXIST when the name is taken).
func (m *Manager) addBridge(b newBridge) error {
	req := m.request(unix.RTM_NEWLINK, unix.NLM_F_CREATE|unix.NLM_F_EXCL|unix.NLM_F_ACK)
	msg := nl.NewIfInfomsg(unix.AF_UNSPEC)
	if b.up {
		msg.Flags, msg.Change = unix.IFF_UP, unix.IFF_UP
	}
	req.AddData(msg)
	req.AddData(nl.NewRtAttr(unix.IFLA_IFNAME, nl.ZeroTerminated(b.name)))
	if b.mac != nil {
		req.AddData(nl.NewRtAttr(unix.IFLA_ADDRESS, []byte(b.mac)))
	}
	// br_changelink applies IFLA_BR_FORWARD_DELAY before IFLA_BR_STP_STATE,
	// so a delay of 2..30 s is accepted before STP is switched on.
	req.AddData(bridgeLinkinfo(&b.opts.delayCS, &b.opts.stp))
	_, err := req.Execute(unix.NETLINK_ROUTE, 0)
	return err
}

// setBridgeOpts changes the given attributes of an existing bridge; nil
// leaves one alone. The kernel applies the delay before the STP state.
func (m *Manager) setBridgeOpts(index int, delayCS *uint32, stp *bool) error {
	req := m.request(unix.RTM_NEWLINK, unix.NLM_F_ACK)
	msg := nl.NewIfInfomsg(unix.AF_UNSPEC)
	msg.Index = int32(index)
	req.AddData(msg)
	req.AddData(bridgeLinkinfo(delayCS, stp))
	_, err := req.Execute(unix.NETLINK_ROUTE, 0)
	return err
}

func bridgeLinkinfo(delayCS *uint32, stp *bool) *nl.RtAttr {
	li := nl.NewRtAttr(unix.IFLA_LINKINFO, nil)
	li.AddRtAttr(nl.IFLA_INFO_KIND, nl.NonZeroTerminated("bridge"))
	data := li.AddRtAttr(nl.IFLA_INFO_DATA, nil)
	if delayCS != nil {
		data.AddRtAttr(unix.IFLA_BR_FORWARD_DELAY, nl.Uint32Attr(*delayCS))
	}
	if stp != nil {
		v := uint32(0)
		if *stp {
			v = 1
		}
		data.AddRtAttr(unix.IFLA_BR_STP_STATE, nl.Uint32Attr(v))
	}
	return li
}

// bridgeOptsOf reads the STP state and forward delay of bridge index.
func (m *Manager) bridgeOptsOf(index int) (bridgeOpts, error) {
	req := m.request(unix.RTM_GETLINK, 0)
	msg := nl.NewIfInfomsg(unix.AF_UNSPEC)
	msg.Index = int32(index)
	req.AddData(msg)
	msgs, err := req.Execute(unix.NETLINK_ROUTE, unix.RTM_NEWLINK)
	if err != nil {
		return bridgeOpts{}, err
	}
	if len(msgs) != 1 || len(msgs[0]) < unix.SizeofIfInfomsg {
		return bridgeOpts{}, fmt.Errorf("unexpected answer to RTM_GETLINK: %d messages", len(msgs))
	}
	data, err := nested(msgs[0][unix.SizeofIfInfomsg:], unix.IFLA_LINKINFO, nl.IFLA_INFO_DATA)
	if err != nil {
		return bridgeOpts{}, err
	}
	attrs, err := nl.ParseRouteAttr(data)
	if err != nil {
		return bridgeOpts{}, err
	}
	var o bridgeOpts
	seen := 0
	for _, a := range attrs {
		if len(a.Value) < 4 {
			continue
		}
		switch a.Attr.Type & nl.NLA_TYPE_MASK {
		case unix.IFLA_BR_STP_STATE:
			o.stp = nl.NativeEndian().Uint32(a.Value) != 0
			seen++
		case unix.IFLA_BR_FORWARD_DELAY:
			o.delayCS = nl.NativeEndian().Uint32(a.Value)
			seen++
		}
	}
	if seen != 2 {
		return bridgeOpts{}, errors.New("the kernel reported no STP state or forward delay for the bridge")
	}
	return o, nil
}

// nested walks a path of nested attributes and returns the payload of the
// last one.
func nested(b []byte, path ...uint16) ([]byte, error) {
	for _, want := range path {
		attrs, err := nl.ParseRouteAttr(b)
		if err != nil {
			return nil, err
		}
		found := false
		for _, a := range attrs {
			if a.Attr.Type&nl.NLA_TYPE_MASK == want {
				b, found = a.Value, true
				break
			}
		}
		if !found {
			return nil, fmt.Errorf("netlink attribute %d missing", want)
		}
	}
	return b, nil
}

// nl80211Wireless reports whether link is an 802.11 interface, asking
// nl80211 in the Manager's namespace (NL80211_CMD_GET_INTERFACE answers
// only for interfaces that have a wireless_dev). Reading
// /sys/class/net/NAME/wireless would answer for whatever namespace /sys was
// mounted in, which is not the Manager's when it was made with NewAt. A
// kernel without cfg80211 has no nl80211 family and no 802.11 station.
func (m *Manager) nl80211Wireless(link netlink.Link) (bool, error) {
	fam, err := m.h.GenlFamilyGet("nl80211")
	if errors.Is(err, syscall.ENOENT) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("looking up the nl80211 netlink family: %w", err)
	}
	req := m.request(int(fam.ID), 0)
	req.AddData(&nl.Genlmsg{Command: unix.NL80211_CMD_GET_INTERFACE})
	req.AddData(nl.NewRtAttr(unix.NL80211_ATTR_IFINDEX, nl.Uint32Attr(uint32(link.Attrs().Index))))
	_, err = req.Execute(unix.NETLINK_GENERIC, 0)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, syscall.ENODEV), errors.Is(err, syscall.EINVAL),
		errors.Is(err, syscall.ENOENT), errors.Is(err, syscall.EOPNOTSUPP):
		return false, nil
	}
	return false, fmt.Errorf("asking nl80211 about %q: %w", link.Attrs().Name, err)
}

// nexthopsVia lists the ids of the nexthop objects (ip nexthop) that send
// traffic out of link index oif. Routes using them are invisible as such to
// vishvananda/netlink (it parses them as plain routes in the kernel's compat
// mode, or without device otherwise), and moving them would mean moving the
// objects. A kernel without nexthop objects has none.
func (m *Manager) nexthopsVia(oif int) ([]uint32, error) {
	req := m.request(unix.RTM_GETNEXTHOP, unix.NLM_F_DUMP)
	req.AddData(nhmsg{}) // AF_UNSPEC; before the attributes, as RawData would not be
	req.AddData(nl.NewRtAttr(unix.NHA_OIF, nl.Uint32Attr(uint32(oif))))
	msgs, err := req.Execute(unix.NETLINK_ROUTE, unix.RTM_NEWNEXTHOP)
	switch {
	case errors.Is(err, syscall.EOPNOTSUPP):
		return nil, nil
	case err != nil && !errors.Is(err, netlink.ErrDumpInterrupted):
		return nil, fmt.Errorf("listing nexthop objects: %w", err)
	}
	var ids []uint32
	for _, msg := range msgs {
		if len(msg) < unix.SizeofNhmsg {
			continue
		}
		attrs, err := nl.ParseRouteAttr(msg[unix.SizeofNhmsg:])
		if err != nil {
			return nil, err
		}
		id, via := uint32(0), false
		for _, a := range attrs {
			switch a.Attr.Type & nl.NLA_TYPE_MASK {
			case unix.NHA_ID:
				id = nl.NativeEndian().Uint32(a.Value)
			case unix.NHA_OIF:
				via = int(nl.NativeEndian().Uint32(a.Value)) == oif
			}
		}
		if via {
			ids = append(ids, id)
		}
	}
	return ids, nil
}

// nhmsg is struct nhmsg, all zero: a dump of every family.
type nhmsg struct{}

func (nhmsg) Len() int          { return unix.SizeofNhmsg }
func (nhmsg) Serialize() []byte { return make([]byte, unix.SizeofNhmsg) }
