package doctor

import (
	"fmt"
	"net"
	"os"
	"path/filepath"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/virtbridge/virtbridge/internal/links"
	"github.com/virtbridge/virtbridge/internal/owner/dhcp"
)

// HostLinks reads the links of one network namespace over netlink, bridge
// settings through internal/links, and which links are 802.11 from sysfs.
type HostLinks struct {
	// NS is the namespace to read; nil means the calling process's.
	NS *netns.NsHandle
	// SysRoot is a sysfs mounted in that namespace; "" means /sys. (sysfs
	// shows the namespace it was mounted in: `ip netns exec` remounts it.)
	SysRoot string
}

var _ Links = HostLinks{}

// Links returns every link with its addresses; it changes nothing.
func (h HostLinks) Links() ([]Link, error) {
	ns := netns.None()
	if h.NS != nil {
		ns = *h.NS
	}
	nh, err := netlink.NewHandleAt(ns, unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("opening netlink: %w", err)
	}
	defer nh.Close()
	lm, err := links.NewAt(ns)
	if err != nil {
		return nil, err
	}
	defer lm.Close()
	ls, err := nh.LinkList()
	if err != nil {
		return nil, fmt.Errorf("listing links: %w", err)
	}
	names := map[int]string{}
	for _, l := range ls {
		names[l.Attrs().Index] = l.Attrs().Name
	}
	out := make([]Link, 0, len(ls))
	for _, l := range ls {
		a := l.Attrs()
		dl := Link{Name: a.Name, Index: a.Index, Kind: l.Type(), Master: names[a.MasterIndex],
			Up: a.Flags&net.FlagUp != 0, MTU: a.MTU, MAC: a.HardwareAddr.String(), Wireless: h.wireless(a.Name)}
		if dl.Addresses, err = addresses(nh, l); err != nil {
			return nil, err
		}
		if len(dl.Addresses) > 0 {
			leases, err := dhcp.LeasesAt(ns, a.Name)
			if err != nil {
				return nil, err
			}
			for _, l := range leases {
				dl.Leases = append(dl.Leases, l.String())
			}
			if len(leases) > 0 {
				dl.DHCPClients = dhcp.Clients("/proc", a.Name, dhcp.NSInode(ns))
			}
		}
		if dl.Master != "" && dl.Kind != "tuntap" {
			if dl.Stranded, err = stranded(nh, l); err != nil {
				return nil, err
			}
		}
		if dl.Kind == "bridge" {
			info, err := lm.BridgeState(a.Name)
			if err != nil {
				return nil, err
			}
			dl.STP, dl.ForwardDelay = info.STP, info.ForwardDelay
			if dl.RA, err = lm.RAStateOf(a.Name); err != nil {
				return nil, err
			}
		}
		out = append(out, dl)
	}
	return out, nil
}

// addresses returns l's IPv4 and global, permanent IPv6 addresses: the
// ones the links backend moves from an uplink to its bridge as the host's
// (link-local addresses belong to every link; SLAAC and temporary ones
// move with the router-advertisement role, and a port's are reported by
// stranded).
func addresses(nh *netlink.Handle, l netlink.Link) ([]string, error) {
	as, err := nh.AddrList(l, netlink.FAMILY_ALL)
	if err != nil {
		return nil, fmt.Errorf("listing addresses of %q: %w", l.Attrs().Name, err)
	}
	out := []string{}
	for _, a := range as {
		if a.IP.To4() != nil || a.Scope == unix.RT_SCOPE_UNIVERSE && !a.IP.IsLinkLocalUnicast() &&
			a.Flags&unix.IFA_F_PERMANENT != 0 && a.Flags&unix.IFA_F_TEMPORARY == 0 {
			out = append(out, a.IPNet.String())
		}
	}
	return out, nil
}

// wireless tells an 802.11 interface by the sysfs entries cfg80211 (phy80211)
// and wireless extensions (wireless) give it.
func (h HostLinks) wireless(name string) bool {
	root := h.SysRoot
	if root == "" {
		root = "/sys"
	}
	for _, e := range []string{"phy80211", "wireless"} {
		if _, err := os.Stat(filepath.Join(root, "class", "net", name, e)); err == nil {
			return true
		}
	}
	return false
}

// stranded lists what port l still carries for the host: its unicast
// routes of every table but the local one (the link-local prefix
// fe80::/64 aside, every link has it) and its permanent neighbour entries.
func stranded(nh *netlink.Handle, l netlink.Link) ([]string, error) {
	rs, err := nh.RouteListFiltered(netlink.FAMILY_ALL, &netlink.Route{LinkIndex: l.Attrs().Index, Table: unix.RT_TABLE_UNSPEC},
		netlink.RT_FILTER_OIF|netlink.RT_FILTER_TABLE)
	if err != nil {
		return nil, fmt.Errorf("listing the routes of %q: %w", l.Attrs().Name, err)
	}
	as, err := nh.AddrList(l, netlink.FAMILY_V6)
	if err != nil {
		return nil, fmt.Errorf("listing addresses of %q: %w", l.Attrs().Name, err)
	}
	var learnt []string
	prefixes := map[string]bool{} // of the learnt addresses: their prefix routes are learnt too
	for _, a := range as {
		// Not permanent: made from router advertisements (SLAAC), or a
		// DHCPv6 lease; either way nothing refreshes it on a port.
		if a.Scope == unix.RT_SCOPE_UNIVERSE && !a.IP.IsLinkLocalUnicast() && a.Flags&unix.IFA_F_PERMANENT == 0 {
			learnt = append(learnt, "address "+a.IPNet.String()+raLearnt)
			prefixes[(&net.IPNet{IP: a.IP.Mask(a.Mask), Mask: a.Mask}).String()] = true
		}
	}
	var out []string
	for _, rt := range rs {
		if rt.Table == unix.RT_TABLE_LOCAL || !(rt.Type == unix.RTN_UNICAST || rt.Type == 0) ||
			rt.Dst != nil && rt.Dst.String() == "fe80::/64" {
			continue
		}
		dst := "default"
		if rt.Dst != nil {
			if ones, _ := rt.Dst.Mask.Size(); ones > 0 {
				dst = rt.Dst.String()
			}
		}
		s := "route " + dst
		if rt.Gw != nil {
			s += " via " + rt.Gw.String()
		}
		if rt.Protocol == unix.RTPROT_RA || rt.Gw == nil && rt.Dst != nil && prefixes[rt.Dst.String()] {
			s += raLearnt
		}
		if rt.Table != unix.RT_TABLE_MAIN {
			s += fmt.Sprintf(" table %d", rt.Table)
		}
		out = append(out, s)
	}
	out = append(out, learnt...)
	ns, err := nh.NeighList(l.Attrs().Index, netlink.FAMILY_ALL)
	if err != nil {
		return nil, fmt.Errorf("listing the neighbour entries of %q: %w", l.Attrs().Name, err)
	}
	for _, n := range ns {
		if n.State&netlink.NUD_PERMANENT != 0 && n.IP != nil {
			out = append(out, "neighbour "+n.IP.String())
		}
	}
	return out, nil
}
