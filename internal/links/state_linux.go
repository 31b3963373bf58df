package links

import (
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"

	"github.com/vishvananda/netlink"
)

// BridgePorts lists the ports of bridge, sorted by name, with their MAC and
// alias. It only reads. A missing bridge is an error wrapping
// ErrBridgeMissing.
func (m *Manager) BridgePorts(bridge string) ([]PortInfo, error) {
	br, err := m.existingBridge(bridge)
	if err != nil {
		return nil, err
	}
	if br == nil {
		return nil, fmt.Errorf("bridge %q does not exist: %w", bridge, ErrBridgeMissing)
	}
	ports, err := m.ports(br)
	if err != nil {
		return nil, err
	}
	out := []PortInfo{}
	for _, p := range ports {
		a := p.Attrs()
		out = append(out, PortInfo{Name: a.Name, Kind: p.Type(), MAC: a.HardwareAddr.String(),
			Alias: a.Alias, Up: a.Flags&net.FlagUp != 0})
	}
	return out, nil
}

// ports returns br's ports sorted by name.
func (m *Manager) ports(br netlink.Link) ([]netlink.Link, error) {
	var ls []netlink.Link
	var err error
	for range 5 {
		if ls, err = m.portDump(br.Attrs().Index); !errors.Is(err, netlink.ErrDumpInterrupted) {
			break
		}
	}
	if err != nil {
		return nil, fmt.Errorf("listing the ports of %q: %w", br.Attrs().Name, err)
	}
	ls = slices.DeleteFunc(ls, func(l netlink.Link) bool { return l.Attrs().MasterIndex != br.Attrs().Index })
	slices.SortFunc(ls, func(a, b netlink.Link) int { return strings.Compare(a.Attrs().Name, b.Attrs().Name) })
	return ls, nil
}

// BridgeState reads what the kernel has for bridge name. It only reads; a
// missing bridge or a link of another kind is reported in the result, not
// as an error.
func (m *Manager) BridgeState(name string) (BridgeInfo, error) {
	info := BridgeInfo{Name: name, Addresses: []string{}, UplinkAddresses: []string{}}
	l, err := m.h.LinkByName(name)
	if isNotFound(err) {
		return info, nil
	}
	if err != nil {
		return info, fmt.Errorf("reading link %q: %w", name, err)
	}
	a := l.Attrs()
	info.Exists, info.Kind = true, l.Type()
	info.Up, info.MTU, info.MAC = a.Flags&net.FlagUp != 0, a.MTU, a.HardwareAddr.String()
	if l.Type() != "bridge" {
		return info, nil
	}
	info.IsBridge, info.Kind = true, ""
	o, err := m.bridgeOptsOf(a.Index)
	if err != nil {
		return info, fmt.Errorf("reading STP and forward delay of bridge %q: %w", name, err)
	}
	info.STP, info.ForwardDelay = o.stp, o.delaySeconds()
	if info.Addresses, err = m.addrStrings(l); err != nil {
		return info, err
	}
	ports, err := m.ports(l)
	if err != nil {
		return info, err
	}
	for _, p := range ports {
		if p.Type() != "tuntap" {
			info.Uplink = p.Attrs().Name
			info.UplinkAddresses, err = m.addrStrings(p)
			break
		}
	}
	return info, err
}

func (m *Manager) addrStrings(l netlink.Link) ([]string, error) {
	as, err := m.addrs(l, movableAddr)
	out := []string{}
	for _, a := range as {
		out = append(out, addrString(a))
	}
	return out, err
}
