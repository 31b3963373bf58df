package links

import (
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"time"

	"github.com/virtbridge/virtbridge/internal/desired"
	"github.com/virtbridge/virtbridge/internal/owner"
)

// ErrNotOwner: the configuration names the uplink's manager (manager:
// networkmanager or networkd), and that manager does not manage it.
var ErrNotOwner = errors.New("the configured manager does not manage the uplink")

// Handover is the one step of a bridge whose uplink NetworkManager or
// systemd-networkd manages (OpHandover), as plain data: that manager makes
// the bridge its own in the uplink's place (internal/owner/nm, networkd),
// or re-applies stp, forward_delay and mtu to the bridge it made. Only
// internal/owner/handoff executes it.
type Handover struct {
	Manager owner.Kind // owner.NetworkManager or owner.Networkd
	Uplink  string
	MAC     string // the uplink's, which the bridge wears (the same DHCP lease)
	STP     bool
	// ForwardDelay in seconds; MTU 0 leaves the bridge's as it comes.
	ForwardDelay, MTU int
	// Probe are the gateways to resolve on the bridge once the manager
	// made it (Manager.Probe), each for ProbeTimeout at most (0: until the
	// handover's own deadline, as a manager's bridge port may first go
	// through STP's listening and learning); none: the manager's own check
	// (the bridge configured with an address) is the verdict.
	Probe        []string
	ProbeTimeout time.Duration
}

// String renders the handover for tests and logs.
func (h Handover) String() string {
	s := fmt.Sprintf("%s, uplink %s (mac %s), stp %s, forward_delay %d", h.Manager, h.Uplink, h.MAC, onOffText(h.STP), h.ForwardDelay)
	if h.MTU > 0 {
		s += fmt.Sprintf(", mtu %d", h.MTU)
	}
	if len(h.Probe) > 0 {
		s += ", probe " + strings.Join(h.Probe, ", ")
	}
	return s
}

// managerKind is the owner a manager: setting names, "" for auto, kernel
// and virtbridged.
func managerKind(m string) owner.Kind {
	switch m {
	case "networkmanager":
		return owner.NetworkManager
	case "networkd":
		return owner.Networkd
	}
	return ""
}

// managerName names a manager for people.
func managerName(k owner.Kind) string {
	if k == owner.Networkd {
		return "systemd-networkd"
	}
	return "NetworkManager"
}

// NeedsOwner tells, from a snapshot without owner, whether Plan needs to
// know who manages b's uplink, and names the uplink Plan would take ("" when
// Plan refuses it or b has none: that refusal needs no owner). No owner is
// needed for a bridge that keeps the addresses off it (move_addresses:
// false) or that the kernel path already made ready: virtbridge's alias
// on it, the uplink its port, no global address left on the uplink — so a
// steady prepare asks no manager. Pure.
func NeedsOwner(b desired.Bridge, s Snapshot) (uplink string, need bool) {
	if s.Bridge != nil && s.Bridge.Kind != "bridge" {
		return "", false
	}
	up, err := pickUplink(b, s)
	if err != nil || up == nil {
		return "", false
	}
	if !b.MoveAddresses {
		return up.Name, false
	}
	if s.Bridge != nil && s.Bridge.Alias == ManagedAlias && up.Master == b.Name {
		global := slices.ContainsFunc(s.Addrs, func(a Addr) bool {
			ip, _, err := net.ParseCIDR(a.Prefix)
			return err == nil && ip.IsGlobalUnicast()
		})
		return up.Name, global
	}
	return up.Name, true
}

// planOwner is Plan for a snapshot that says who manages the uplink up
// (s.Owner set), after the refusals every uplink gets: owned reports
// whether the decision is the owner's. A bridge whose manager: names a
// manager that does not manage the uplink is refused; one whose uplink
// NetworkManager or networkd manages gets a single OpHandover step, after
// the kernel path's refusal of routes through nexthop objects (which
// would vanish with the uplink's addresses), or none when the manager's
// bridge is ready (the uplink its port, nothing left on it, stp,
// forward_delay and mtu as configured). Leases are the manager's to keep:
// they are not refused.
func planOwner(b desired.Bridge, s Snapshot, up *Link) (steps []Step, owned bool, err error) {
	k := s.Owner.Kind
	if m := managerKind(b.Manager); m != "" && m != k {
		name := b.Uplink
		if up != nil {
			name = up.Name
		}
		return nil, true, fmt.Errorf("bridge %q: the configuration says manager: %s, but %s does not manage uplink %q; "+
			"set manager: auto (or kernel) for this bridge, or let %s manage %s: %w",
			b.Name, b.Manager, managerName(m), name, managerName(m), name, ErrNotOwner)
	}
	if (k != owner.NetworkManager && k != owner.Networkd) || up == nil || !b.MoveAddresses {
		return nil, false, nil
	}
	p := &planner{b: b, s: s, up: up}
	addrs, routes := p.movable()
	if len(addrs) == 0 && len(routes) == 0 && p.port() && p.managerSteady() {
		return nil, true, nil
	}
	if len(addrs)+len(routes) > 0 && len(s.Nexthops) > 0 {
		return nil, true, nexthopError(b.Name, up.Name, s.Nexthops)
	}
	probe, err := p.ownerProbeTargets(routes)
	if err != nil {
		return nil, true, err
	}
	h := &Handover{Manager: k, Uplink: up.Name, MAC: up.MAC, STP: b.STP, ForwardDelay: b.ForwardDelay, MTU: b.MTU,
		Probe: probe, ProbeTimeout: max(b.ProbeTimeout, 0)}
	return []Step{{Op: OpHandover, Object: up.Name, Link: b.Name, Handover: h}}, true, nil
}

// managerSteady: the existing bridge has the stp, forward_delay and mtu b
// asks for, as the managers set them: the forward delay only with STP on
// and within the 2..30 s they take.
func (p *planner) managerSteady() bool {
	br, b := p.s.Bridge, p.b
	if br.STP != b.STP {
		return false
	}
	if b.STP && b.ForwardDelay >= 2 && b.ForwardDelay <= 30 && br.DelayCS != uint32(b.ForwardDelay)*100 {
		return false
	}
	return b.MTU == 0 || br.MTU == b.MTU
}

// ownerProbeTargets are what to probe once a manager made the bridge:
// b's probe target, or the gateways of the uplink's IPv4 default routes
// of the main table, resolved or not (the manager brings the same lease
// up on the bridge; a gateway that does not answer then rolls the
// handoff back). IPv6 is left to the manager's own check: its router
// advertisements come later than any deadline can wait. A negative
// b.ProbeTimeout probes nothing.
func (p *planner) ownerProbeTargets(routes []Route) ([]string, error) {
	if targets, set, err := configuredProbe(p.b); set {
		return targets, err
	}
	var v4 []string
	for _, rt := range routes {
		if rt.Gw != "" && !rt.IPv6 && rt.Table == tableMain && rt.Dst == "" &&
			!slices.ContainsFunc(v4, func(s string) bool { return sameIP(s, rt.Gw) }) {
			v4 = append(v4, rt.Gw)
		}
	}
	return v4, nil
}

func nexthopError(bridge, up string, ids []uint32) error {
	return fmt.Errorf("uplink %q of bridge %q is used by nexthop objects %v (ip nexthop), which virtbridge "+
		"does not move; replace the routes using them with plain ones (ip route replace ... via GW dev %s) "+
		"or set move_addresses: false for this bridge in the configuration: %w",
		up, bridge, ids, up, ErrUnmovable)
}
