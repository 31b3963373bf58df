package networkd

import (
	"encoding/binary"
	"fmt"

	"github.com/vishvananda/netlink/nl"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// netlink.Bridge has no field for a bridge's STP state or forward delay:
// they travel here in raw RTM_GETLINK/RTM_NEWLINK requests, on a socket
// bound to networkd's namespace.

// userHZ is the kernel's USER_HZ: IFLA_BR_FORWARD_DELAY travels in
// hundredths of a second.
const userHZ = 100

// stpDelay is a bridge's STP state and forward delay (seconds).
type stpDelay struct {
	stp   bool
	delay int
}

func request(ns netns.NsHandle, proto, flags int) (*nl.NetlinkRequest, func(), error) {
	s, err := nl.GetNetlinkSocketAt(ns, netns.None(), unix.NETLINK_ROUTE)
	if err != nil {
		return nil, nil, fmt.Errorf("opening netlink: %w", err)
	}
	req := nl.NewNetlinkRequest(proto, flags)
	req.Sockets = map[int]*nl.SocketHandle{unix.NETLINK_ROUTE: {Socket: s}}
	return req, s.Close, nil
}

// readSTP reads the STP state and forward delay of bridge index in ns.
func readSTP(ns netns.NsHandle, index int) (stpDelay, error) {
	req, done, err := request(ns, unix.RTM_GETLINK, 0)
	if err != nil {
		return stpDelay{}, err
	}
	defer done()
	msg := nl.NewIfInfomsg(unix.AF_UNSPEC)
	msg.Index = int32(index)
	req.AddData(msg)
	msgs, err := req.Execute(unix.NETLINK_ROUTE, unix.RTM_NEWLINK)
	if err != nil {
		return stpDelay{}, err
	}
	if len(msgs) != 1 || len(msgs[0]) < unix.SizeofIfInfomsg {
		return stpDelay{}, fmt.Errorf("unexpected answer to RTM_GETLINK: %d messages", len(msgs))
	}
	var o stpDelay
	data := nested(msgs[0][unix.SizeofIfInfomsg:], unix.IFLA_LINKINFO, nl.IFLA_INFO_DATA)
	if data == nil {
		return o, fmt.Errorf("no bridge attributes in the kernel's answer")
	}
	attrs, err := nl.ParseRouteAttr(data)
	if err != nil {
		return o, err
	}
	for _, a := range attrs {
		switch a.Attr.Type & nl.NLA_TYPE_MASK {
		case unix.IFLA_BR_STP_STATE:
			o.stp = binary.NativeEndian.Uint32(a.Value) != 0
		case unix.IFLA_BR_FORWARD_DELAY:
			o.delay = int((binary.NativeEndian.Uint32(a.Value) + userHZ/2) / userHZ)
		}
	}
	return o, nil
}

// nested walks b's attributes down the path of types, nil when missing.
func nested(b []byte, path ...uint16) []byte {
	for _, t := range path {
		attrs, err := nl.ParseRouteAttr(b)
		if err != nil {
			return nil
		}
		b = nil
		for _, a := range attrs {
			if a.Attr.Type&nl.NLA_TYPE_MASK == t {
				b = a.Value
				break
			}
		}
		if b == nil {
			return nil
		}
	}
	return b
}

// setSTP sets the forward delay (when delay > 0) and the STP state of
// bridge index in ns, in one request: the kernel takes the delay before
// the STP state, so a delay STP needs is in place when it starts.
func setSTP(ns netns.NsHandle, index int, o stpDelay) error {
	req, done, err := request(ns, unix.RTM_NEWLINK, unix.NLM_F_ACK)
	if err != nil {
		return err
	}
	defer done()
	msg := nl.NewIfInfomsg(unix.AF_UNSPEC)
	msg.Index = int32(index)
	req.AddData(msg)
	li := nl.NewRtAttr(unix.IFLA_LINKINFO, nil)
	li.AddRtAttr(nl.IFLA_INFO_KIND, nl.NonZeroTerminated("bridge"))
	data := li.AddRtAttr(nl.IFLA_INFO_DATA, nil)
	if o.delay > 0 {
		data.AddRtAttr(unix.IFLA_BR_FORWARD_DELAY, nl.Uint32Attr(uint32(o.delay*userHZ)))
	}
	stp := uint32(0)
	if o.stp {
		stp = 1
	}
	data.AddRtAttr(unix.IFLA_BR_STP_STATE, nl.Uint32Attr(stp))
	req.AddData(li)
	_, err = req.Execute(unix.NETLINK_ROUTE, 0)
	return err
}
