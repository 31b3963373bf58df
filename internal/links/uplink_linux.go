package links

import (
	"bytes"
	"errors"
	"net"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// macOwners returns the links of ls that own mac (see uplinkByMAC).
func macOwners(ls []netlink.Link, mac net.HardwareAddr) []netlink.Link {
	var found []netlink.Link
	for _, l := range ls {
		if bytes.Equal(l.Attrs().HardwareAddr, mac) && !macCarrier(l.Type()) {
			found = append(found, l)
		}
	}
	return found
}

// NameByMAC names the one link of the calling process's network namespace
// that owns mac, as an uplink_mac: selects it at prepare; "" when no link
// or several do, or the links cannot be read. It is the host's side of
// config.CheckUplinks, for check-config, the hook and the daemon.
func NameByMAC(mac net.HardwareAddr) string {
	h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		return ""
	}
	defer h.Close()
	var ls []netlink.Link
	for range 5 {
		if ls, err = h.LinkList(); !errors.Is(err, netlink.ErrDumpInterrupted) {
			break
		}
	}
	if err != nil {
		return ""
	}
	if found := macOwners(ls, mac); len(found) == 1 {
		return found[0].Attrs().Name
	}
	return ""
}
