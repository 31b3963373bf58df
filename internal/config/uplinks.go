package config

import (
	"errors"
	"fmt"
	"net"
)

// CheckUplinks refuses what the file alone cannot show, on the host it is
// used on: one NIC given to two bridges, once by its name (uplink:) and
// once by its MAC (uplink_mac:). nameOf is the host's answer to "which
// link owns this MAC" ("" when none does, or it cannot tell); the caller
// injects it, so that this package never reads the host. It is asked only
// when a bridge names its uplink and another gives a MAC. Errors are
// *Error values at the uplink lines, joined; nil when nothing is wrong.
func (c *Config) CheckUplinks(nameOf func(net.HardwareAddr) string) error {
	byName := map[string]Bridge{}
	var byMAC []Bridge
	for _, b := range c.Bridges {
		switch {
		case b.Uplink != "":
			byName[b.Uplink] = b
		case b.UplinkMAC != nil:
			byMAC = append(byMAC, b)
		}
	}
	if len(byName) == 0 || len(byMAC) == 0 {
		return nil
	}
	var errs []error
	for _, b := range byMAC {
		nic := nameOf(b.UplinkMAC)
		o, ok := byName[nic]
		if nic == "" || !ok {
			continue
		}
		first, second := o, b
		if b.UplinkLine < o.UplinkLine {
			first, second = b, o
		}
		e := sameUplinkError(c.Path, nic, first, second)
		e.Msg += fmt.Sprintf(" (uplink_mac %s of bridge %q is %q on this host)", b.UplinkMAC, b.Name, nic)
		errs = append(errs, e)
	}
	return errors.Join(errs...)
}
