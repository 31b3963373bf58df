package doctor

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"

	"github.com/virtbridge/virtbridge/internal/config"
	"github.com/virtbridge/virtbridge/internal/links"
)

// Link is one network interface as the checks see it.
type Link struct {
	Name   string
	Index  int
	Kind   string // netlink kind: bridge, veth, tuntap, vlan, device, ...
	Master string // the bridge (or bond...) it is enslaved to, or ""
	Up     bool
	MTU    int
	MAC    string
	// Addresses are its IPv4 and global IPv6 addresses, in CIDR form.
	Addresses []string
	// Leases are its dynamic addresses (a finite lifetime: a DHCP lease),
	// "10.0.0.5/24 (valid for 20 s more)"; DHCPClients the DHCP client
	// processes bound to it ("dhclient (pid 812)"), read only when it
	// holds leases.
	Leases      []string
	DHCPClients []string
	// Stranded is what a bridge port (not a tap) still carries that the
	// host uses: routes of every table through it and permanent neighbour
	// entries ("route default via 2001:db8::1", "neighbour 10.0.0.9").
	// Read only for ports.
	Stranded []string
	// Wireless: an 802.11 interface.
	Wireless bool
	// STP and ForwardDelay (seconds) are read for bridges only.
	STP          bool
	ForwardDelay int
	// RA is what a bridge does with IPv6 router advertisements
	// (net.ipv6.conf.NAME.accept_ra, .forwarding) and what it learnt from
	// them; read for bridges only.
	RA links.RAState
}

// Links reads the network interfaces of the namespace under inspection.
type Links interface {
	Links() ([]Link, error)
}

// Managers says what NetworkManager and systemd-networkd make of an
// interface: they may undo what virtbridge did, or fight over it.
type Managers interface {
	// Of reads it; what one manager said is kept when the other fails.
	Of(l Link) (LinkManagers, error)
}

func linkByName(ls []Link, name string) (Link, bool) {
	i := slices.IndexFunc(ls, func(l Link) bool { return l.Name == name })
	if i < 0 {
		return Link{}, false
	}
	return ls[i], true
}

// portsOf returns the links enslaved to bridge, sorted by name.
func portsOf(ls []Link, bridge string) []Link {
	var out []Link
	for _, l := range ls {
		if l.Master == bridge {
			out = append(out, l)
		}
	}
	slices.SortFunc(out, func(a, b Link) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// errUplinkAmbiguous: several links carry the configured uplink MAC.
var errUplinkAmbiguous = errors.New("ambiguous uplink")

// findUplink returns the link b enslaves, by name or MAC, as the links
// backend resolves it: bridges and VLANs carry their lower device's MAC
// without owning it and never count. ok is false when there is none (or
// when b has no uplink).
func findUplink(b config.Bridge, ls []Link) (Link, bool, error) {
	if b.Uplink != "" {
		l, ok := linkByName(ls, b.Uplink)
		return l, ok, nil
	}
	if b.UplinkMAC == nil {
		return Link{}, false, nil
	}
	var found []Link
	for _, l := range ls {
		mac, err := net.ParseMAC(l.MAC)
		if err == nil && bytes.Equal(mac, b.UplinkMAC) && l.Kind != "bridge" && l.Kind != "vlan" {
			found = append(found, l)
		}
	}
	switch len(found) {
	case 0:
		return Link{}, false, nil
	case 1:
		return found[0], true, nil
	}
	var names []string
	for _, l := range found {
		names = append(names, l.Name)
	}
	return Link{}, false, fmt.Errorf("MAC %s is carried by %s: %w", b.UplinkMAC, strings.Join(names, ", "), errUplinkAmbiguous)
}
