package links

import (
	"errors"
	"fmt"
)

// RAStateOf reads the RA settings of link name and what it learnt. It
// only reads.
func (m *Manager) RAStateOf(name string) (RAState, error) {
	var out RAState
	c, err := m.raConfOf(name)
	if errors.Is(err, errNoIPv6) {
		return out, nil
	}
	if err != nil {
		return out, err
	}
	out.AcceptRA, out.Forwarding, out.IPv6 = c.acceptRA, c.forwarding, true
	l, err := m.h.LinkByName(name)
	if err != nil {
		return out, fmt.Errorf("reading link %q: %w", name, err)
	}
	s, err := m.raStateOf(l)
	if err != nil {
		return out, err
	}
	for _, a := range s.addrs {
		out.Learnt = append(out.Learnt, "address "+addrString(a))
	}
	for _, r := range s.routes {
		out.Learnt = append(out.Learnt, "route "+r.String())
	}
	return out, nil
}
