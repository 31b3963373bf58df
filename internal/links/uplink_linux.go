package links

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"strings"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/virtbridge/virtbridge/internal/change"
	"github.com/virtbridge/virtbridge/internal/desired"
)

// resolveUplink finds b's uplink (by name or by MAC) and checks it can be
// enslaved to br (nil: the bridge does not exist yet). It changes nothing.
// It returns nil when b has no uplink.
func (m *Manager) resolveUplink(b desired.Bridge, br netlink.Link) (netlink.Link, error) {
	var up netlink.Link
	switch {
	case b.Uplink != "":
		l, err := m.h.LinkByName(b.Uplink)
		if isNotFound(err) {
			return nil, fmt.Errorf("uplink %q of bridge %q: no link named %q in this network namespace; "+
				"check `ip link` and the uplink: key in the configuration: %w", b.Uplink, b.Name, b.Uplink, ErrUplinkMissing)
		}
		if err != nil {
			return nil, fmt.Errorf("reading uplink %q: %w", b.Uplink, err)
		}
		up = l
	case b.UplinkMAC != "":
		l, err := m.uplinkByMAC(b)
		if err != nil {
			return nil, err
		}
		up = l
	default:
		return nil, nil
	}
	brIndex := 0
	if br != nil {
		brIndex = br.Attrs().Index
	}
	if err := checkUplink(b, up, brIndex, m.linkNameKind); err != nil {
		return nil, err
	}
	if brIndex != 0 && up.Attrs().MasterIndex == brIndex {
		return up, nil // a port already: no 802.11 station is (the kernel refuses them)
	}
	wl, err := m.wireless(up)
	if err != nil {
		return nil, fmt.Errorf("uplink %q of bridge %q: %w", up.Attrs().Name, b.Name, err)
	}
	if wl {
		return nil, wirelessError(b.Name, up.Attrs().Name)
	}
	return up, nil
}

// checkUplink refuses an uplink that is a bridge or already has a master
// other than the bridge (index brIndex).
func checkUplink(b desired.Bridge, up netlink.Link, brIndex int, nameOf func(int) (string, string)) error {
	a := up.Attrs()
	if up.Type() == "bridge" {
		return fmt.Errorf("uplink %q of bridge %q is itself a bridge, which cannot be enslaved to another bridge; "+
			"name the NIC under it in the configuration: %w", a.Name, b.Name, ErrUplinkBusy)
	}
	if a.MasterIndex == 0 || a.MasterIndex == brIndex {
		return nil
	}
	owner, kind := nameOf(a.MasterIndex)
	return busyError(b.Name, a.Name, owner, kind)
}

// uplinkByMAC finds the one link that owns b.UplinkMAC. Bridges and VLANs
// carry their lower device's MAC without owning it, so they do not count;
// any other tie is refused rather than guessed.
func (m *Manager) uplinkByMAC(b desired.Bridge) (netlink.Link, error) {
	mac, err := net.ParseMAC(b.UplinkMAC)
	if err != nil {
		return nil, fmt.Errorf("uplink_mac %q of bridge %q: %w", b.UplinkMAC, b.Name, err)
	}
	ls, err := m.links()
	if err != nil {
		return nil, err
	}
	found := macOwners(ls, mac)
	switch len(found) {
	case 0:
		return nil, fmt.Errorf("uplink of bridge %q: no link with MAC %s in this network namespace; "+
			"check `ip link` and the uplink_mac: key in the configuration: %w", b.Name, mac, ErrUplinkMissing)
	case 1:
		return found[0], nil
	}
	var names []string
	for _, l := range found {
		names = append(names, fmt.Sprintf("%s (%s)", l.Attrs().Name, l.Type()))
	}
	return nil, fmt.Errorf("uplink of bridge %q: MAC %s is carried by %s; name the one to enslave with uplink: in the configuration: %w",
		b.Name, mac, strings.Join(names, ", "), ErrUplinkAmbiguous)
}

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

// enslave puts the uplink into the bridge, and brings it up, if needed.
func (m *Manager) enslave(r *run) error {
	up, br := r.up, r.br
	name := up.Attrs().Name
	if up.Attrs().MasterIndex != br.Attrs().Index {
		if err := m.step("enslave", name); err != nil {
			return err
		}
		if err := m.h.LinkSetMaster(up, br); err != nil {
			return fmt.Errorf("enslaving %q to bridge %q: %w", name, r.b.Name, err)
		}
		r.rv.Add(func() error { return m.restoreMaster(up, 0) })
		r.enslaved = true
		r.record(change.UplinkEnslaved, name, "", r.b.Name)
	}
	if up.Attrs().Flags&net.FlagUp == 0 {
		if err := m.setUp(r, up, change.UplinkEnslaved); err != nil {
			return err
		}
	}
	return m.reread(r)
}
