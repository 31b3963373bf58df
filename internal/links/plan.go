package links

import (
	"fmt"
	"net"
	"slices"
	"strings"

	"github.com/virtbridge/virtbridge/internal/change"
	"github.com/virtbridge/virtbridge/internal/desired"
	"github.com/virtbridge/virtbridge/internal/owner/dhcp"
)

// Plan makes every decision of EnsureBridge for bridge b on the namespace
// seen in s, and returns the steps that make it so, in the order that keeps
// the host reachable (see movePlan), or the refusal, before any change:
// a link of the bridge's name that is no bridge, a missing, ambiguous,
// busy or wireless uplink, addresses that would be cut off
// (move_addresses: false), a lease of a DHCP client without manager,
// routes through nexthop objects. When the snapshot says NetworkManager or
// systemd-networkd manages the uplink (s.Owner, filled by
// internal/owner/handoff), the same refusals come first, and then one
// OpHandover step, which handoff executes through that manager
// (planOwner). It is pure: the Manager executes its steps over netlink,
// the Fake on its state. A namespace that already matches b gives no step.
func Plan(b desired.Bridge, s Snapshot) ([]Step, error) {
	if s.Bridge != nil && s.Bridge.Kind != "bridge" {
		return nil, notBridgeError(b.Name, s.Bridge.Kind)
	}
	up, err := pickUplink(b, s)
	if err != nil {
		return nil, err
	}
	if s.Owner != nil {
		if steps, owned, err := planOwner(b, s, up); owned {
			return steps, err
		}
	}
	p := &planner{b: b, s: s, up: up}
	var mv movePlan
	if up != nil && b.MoveAddresses {
		if mv, err = p.planMove(); err != nil {
			return nil, err
		}
	}
	if up != nil && !b.MoveAddresses && !p.port() {
		if as := movablePrefixes(s.Addrs); len(as) > 0 {
			return nil, addressedError(b.Name, up.Name, as)
		}
	}
	p.bridgeSteps()
	p.enslaveSteps()
	p.mtuStep()
	p.moveSteps(mv)
	if up != nil && b.MoveAddresses {
		// The RA role: its sysctls and what the uplink learnt are read,
		// compared and moved by the kernel path itself (Manager.takeRA).
		p.add(Step{Op: OpTakeRA, Object: b.Name, Link: b.Name})
	}
	if !mv.empty() && len(mv.probe) > 0 {
		p.add(Step{Op: OpProbe, Object: strings.Join(mv.probe, ", "), Link: b.Name, Probe: mv.probe})
	}
	p.takeOverSteps()
	return p.steps, nil
}

// planner is one Plan call.
type planner struct {
	b     desired.Bridge
	s     Snapshot
	up    *Link
	steps []Step
}

func (p *planner) add(st ...Step) { p.steps = append(p.steps, st...) }

// port: the uplink is already a port of the existing bridge.
func (p *planner) port() bool { return p.up != nil && p.s.Bridge != nil && p.up.Master == p.b.Name }

// pickUplink finds b's uplink among s.Uplinks and checks that it can be
// enslaved; nil when b has none.
func pickUplink(b desired.Bridge, s Snapshot) (*Link, error) {
	var up *Link
	switch {
	case b.Uplink != "":
		if len(s.Uplinks) == 0 {
			return nil, fmt.Errorf("uplink %q of bridge %q: no link named %q in this network namespace; "+
				"check `ip link` and the uplink: key in the configuration: %w", b.Uplink, b.Name, b.Uplink, ErrUplinkMissing)
		}
		up = &s.Uplinks[0]
	case b.UplinkMAC != "":
		mac, err := net.ParseMAC(b.UplinkMAC)
		if err != nil {
			return nil, fmt.Errorf("uplink_mac %q of bridge %q: %w", b.UplinkMAC, b.Name, err)
		}
		var found []*Link
		for i := range s.Uplinks {
			if l := &s.Uplinks[i]; sameMAC(l.MAC, mac) && !macCarrier(l.Kind) {
				found = append(found, l)
			}
		}
		slices.SortFunc(found, func(a, b *Link) int { return strings.Compare(a.Name, b.Name) })
		switch len(found) {
		case 0:
			return nil, fmt.Errorf("uplink of bridge %q: no link with MAC %s in this network namespace; "+
				"check `ip link` and the uplink_mac: key in the configuration: %w", b.Name, mac, ErrUplinkMissing)
		case 1:
			up = found[0]
		default:
			var names []string
			for _, l := range found {
				names = append(names, fmt.Sprintf("%s (%s)", l.Name, l.Kind))
			}
			return nil, fmt.Errorf("uplink of bridge %q: MAC %s is carried by %s; name the one to enslave with uplink: in the configuration: %w",
				b.Name, mac, strings.Join(names, ", "), ErrUplinkAmbiguous)
		}
	default:
		return nil, nil
	}
	switch {
	case up.Kind == "bridge":
		return nil, fmt.Errorf("uplink %q of bridge %q is itself a bridge, which cannot be enslaved to another bridge; "+
			"name the NIC under it in the configuration: %w", up.Name, b.Name, ErrUplinkBusy)
	case up.Master != "" && up.Master != b.Name:
		return nil, busyError(b.Name, up.Name, up.Master, up.MasterKind)
	case up.Master == b.Name && s.Bridge != nil:
		return up, nil // a port already: no 802.11 station is (the kernel refuses them)
	case up.Wireless:
		return nil, wirelessError(b.Name, up.Name)
	}
	return up, nil
}

func sameMAC(s string, mac net.HardwareAddr) bool {
	hw, err := net.ParseMAC(s)
	return err == nil && hw.String() == mac.String()
}

func notBridgeError(name, kind string) error {
	return fmt.Errorf("bridge %q: a link of that name exists and is a %s, not a bridge; "+
		"rename or delete it (ip link del %s) or give the bridge another name in the configuration: %w",
		name, kind, name, ErrNotBridge)
}

// movablePrefixes are the prefixes of the movable addresses of as.
func movablePrefixes(as []Addr) []string {
	var out []string
	for _, a := range as {
		if a.movable() {
			out = append(out, a.Prefix)
		}
	}
	return out
}

// bridgeSteps create the bridge, or re-apply STP, the forward delay, the
// pinned MAC and admin up on the existing one, each only when it differs.
func (p *planner) bridgeSteps() {
	b, br := p.b, p.s.Bridge
	delay := uint32(b.ForwardDelay) * 100
	if br == nil {
		mac := ""
		if p.up != nil {
			mac = p.up.MAC
		}
		p.add(Step{Op: OpCreate, Object: b.Name, Link: b.Name, MAC: mac, STP: b.STP, DelayCS: delay})
		return
	}
	// The kernel refuses a delay outside 2..30 s while STP is on, so STP
	// goes off before the delay changes, and the delay changes before STP
	// goes on (one message applies the delay first).
	curSTP, curDelay := br.STP, br.DelayCS
	if curSTP && !b.STP {
		p.add(optsStep(b.Name, curSTP, curDelay, false, curDelay))
		curSTP = false
	}
	if curSTP != b.STP || curDelay != delay {
		p.add(optsStep(b.Name, curSTP, curDelay, b.STP, delay))
	}
	want := br.MAC
	if p.up != nil {
		want = p.up.MAC
	}
	before := "mac " + br.MAC
	// Unknown whether pinned: leave it (re-setting the same MAC flushes
	// the bridge's neighbour entries every time).
	if want != br.MAC || br.PinKnown && !br.MACPinned {
		if want == br.MAC {
			before += " (not pinned: follows the ports)"
		}
		p.add(Step{Op: OpPinMAC, Object: b.Name, Link: b.Name, MAC: want, FromMAC: br.MAC,
			Change: &change.Change{Kind: change.BridgeUpdated, Object: b.Name, Before: before, After: "mac " + want + " (pinned)"}})
	}
	if !br.Up {
		p.add(Step{Op: OpUp, Object: b.Name, Link: b.Name,
			Change: &change.Change{Kind: change.BridgeUpdated, Object: b.Name, Before: "down", After: "up"}})
	}
}

func optsStep(name string, fromSTP bool, fromCS uint32, stp bool, cs uint32) Step {
	var before, after []string
	if fromCS != cs {
		before = append(before, fmt.Sprintf("forward_delay %d", delaySeconds(fromCS)))
		after = append(after, fmt.Sprintf("forward_delay %d", delaySeconds(cs)))
	}
	if fromSTP != stp {
		before = append(before, "stp "+onOffText(fromSTP))
		after = append(after, "stp "+onOffText(stp))
	}
	return Step{Op: OpSetOpts, Object: name, Link: name, FromSTP: fromSTP, FromDelayCS: fromCS, STP: stp, DelayCS: cs,
		Change: &change.Change{Kind: change.BridgeUpdated, Object: name, Before: strings.Join(before, ", "), After: strings.Join(after, ", ")}}
}

func delaySeconds(cs uint32) int { return int((cs + 50) / 100) }

// enslaveSteps put the uplink into the bridge and bring it up.
func (p *planner) enslaveSteps() {
	up := p.up
	if up == nil {
		return
	}
	if up.Master != p.b.Name {
		p.add(Step{Op: OpEnslave, Object: up.Name, Link: up.Name,
			Change: &change.Change{Kind: change.UplinkEnslaved, Object: up.Name, After: p.b.Name}})
	}
	if !up.Up {
		p.add(Step{Op: OpUp, Object: up.Name, Link: up.Name,
			Change: &change.Change{Kind: change.UplinkEnslaved, Object: up.Name, Before: "down", After: "up"}})
	}
}

// mtuStep sets the configured MTU after the uplink joined (see
// Manager.ensureMTU): Keep when this run creates the bridge or enslaves
// its uplink, so the kernel keeps the value as the user's.
func (p *planner) mtuStep() {
	if p.b.MTU == 0 {
		return
	}
	keep := p.s.Bridge == nil || p.up != nil && p.up.Master != p.b.Name
	if !keep && p.s.Bridge.MTU == p.b.MTU {
		return
	}
	p.add(Step{Op: OpMTU, Object: p.b.Name, Link: p.b.Name, MTU: p.b.MTU, Keep: keep})
}

// takeOverSteps mark a bridge someone else made as managed, unless it
// carries an alias of its own, and add the notice of this run's changes,
// naming its ports that are neither its uplink nor taps.
func (p *planner) takeOverSteps() {
	br := p.s.Bridge
	if br == nil || br.Alias == ManagedAlias {
		return
	}
	if br.Alias == "" {
		p.add(Step{Op: OpAlias, Object: p.b.Name, Link: p.b.Name,
			Change: &change.Change{Kind: change.AliasSet, Object: p.b.Name, After: ManagedAlias}})
	}
	var others []string
	for _, l := range p.s.Ports {
		if l.Kind != "tuntap" && (p.up == nil || l.Name != p.up.Name) {
			others = append(others, fmt.Sprintf("%s (%s)", l.Name, l.Kind))
		}
	}
	p.add(Step{Op: OpNotice, Object: p.b.Name, Link: p.b.Name, Others: others})
}

// needDetail tells the Manager, from a snapshot without detail, whether
// Plan needs the uplink's neighbours, rules, nexthop objects and the
// bridge's addresses and routes: whenever something may move. A ready
// bridge (the uplink its port, nothing movable left on the uplink) does
// not, and its steady prepare reads no more.
func needDetail(b desired.Bridge, s Snapshot) bool {
	up, err := pickUplink(b, s)
	return err == nil && up != nil && needDetailFor(b, s, up)
}

func needDetailFor(b desired.Bridge, s Snapshot, up *Link) bool {
	if !b.MoveAddresses {
		return false
	}
	p := &planner{b: b, s: s, up: up}
	addrs, routes := p.movable()
	return !(len(addrs) == 0 && len(routes) == 0 && p.port())
}

// needClients tells whether Plan refuses a lease of the uplink and would
// name the DHCP clients holding it (Snapshot.Clients).
func needClients(b desired.Bridge, s Snapshot) bool {
	if b.Manager == "kernel" || !b.MoveAddresses {
		return false
	}
	return len(refusedLeases(b, s, s.Addrs)) > 0
}

// refusedLeases are the leases among as that may not move: all of them,
// but under manager: kernel (none) and, in virtbridged (s.KeepsLeases),
// under manager: virtbridged, which keeps DHCPv4 leases only.
func refusedLeases(b desired.Bridge, s Snapshot, as []Addr) []dhcp.Lease {
	if b.Manager == "kernel" {
		return nil
	}
	keeps := b.Manager == "virtbridged" && s.KeepsLeases
	var out []dhcp.Lease
	for _, a := range as {
		if a.movable() && dhcp.IsDynamic(a.IPv6, a.Flags&ifaPermanent != 0, a.SLAAC) && !(keeps && !a.IPv6) {
			out = append(out, dhcp.Lease{Addr: a.Prefix, ValidLft: a.ValidLft, PreferredLft: a.PreferredLft})
		}
	}
	return out
}

// leaseRefusal is the refusal of the leases ls of the uplink up: the bare
// client's (dhcp.Refusal), or under manager: virtbridged that virtbridged
// keeps DHCPv4 leases only, or must run to keep this one.
func leaseRefusal(b desired.Bridge, s Snapshot, up string, ls []dhcp.Lease) error {
	detail := func() string { return dhcp.Describe(up, ls, s.Clients).Detail }
	switch {
	case b.Manager == "virtbridged" && s.KeepsLeases:
		return fmt.Errorf("bridge %q has manager: virtbridged, which keeps DHCPv4 leases only, and uplink %q has a %s; "+
			"moved to the bridge it would expire there: make it static, or let the host's network configuration make "+
			"the bridge (see `virtbridge doctor`): %w", b.Name, up, detail(), ErrDynamicAddress)
	case b.Manager == "virtbridged":
		return fmt.Errorf("bridge %q has manager: virtbridged: virtbridged keeps the lease of uplink %q on the bridge, "+
			"but it has not made the bridge: %s; start virtbridged (systemctl start virtbridged; "+
			"if it runs, see why it failed: journalctl -u virtbridged), then start the VM again: %w",
			b.Name, up, detail(), ErrDynamicAddress)
	}
	return fmt.Errorf("%s: %w", dhcp.Refusal(b.Name, up, ls, s.Clients), ErrDynamicAddress)
}
