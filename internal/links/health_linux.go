package links

import (
	"fmt"
	"net"
)

// BridgeHealth is what a scrape of virtbridged's metrics says of one
// managed bridge.
type BridgeHealth struct {
	Up             bool // exists, is a bridge, administratively up
	UplinkEnslaved bool // the uplink named is a port of the bridge
	HostAddress    bool // the bridge holds an IPv4 or global IPv6 address
}

// BridgeHealth reads bridge's health with at most three kernel requests
// (two link look-ups by name and one address dump filtered by the kernel),
// whatever the number of taps on the host: metrics scrapes call it for
// every managed bridge. uplink "" skips the uplink. A missing bridge is
// reported in the result, not as an error.
func (m *Manager) BridgeHealth(bridge, uplink string) (BridgeHealth, error) {
	var h BridgeHealth
	l, err := m.h.LinkByName(bridge)
	if isNotFound(err) {
		return h, nil
	}
	if err != nil {
		return h, fmt.Errorf("reading link %q: %w", bridge, err)
	}
	if l.Type() != "bridge" {
		return h, nil
	}
	h.Up = l.Attrs().Flags&net.FlagUp != 0
	if uplink != "" {
		u, err := m.h.LinkByName(uplink)
		switch {
		case err == nil:
			h.UplinkEnslaved = u.Attrs().MasterIndex == l.Attrs().Index
		case !isNotFound(err):
			return h, fmt.Errorf("reading link %q: %w", uplink, err)
		}
	}
	as, err := m.addrs(l, movableAddr)
	if err != nil {
		return h, fmt.Errorf("reading addresses of bridge %q: %w", bridge, err)
	}
	h.HostAddress = len(as) > 0
	return h, nil
}
