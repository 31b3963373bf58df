// Package policy decides, purely, what the host must look like for a VM:
// configuration plus an event in, desired state out. It reads no kernel
// state and changes nothing; backends apply what it returns.
package policy

import (
	"fmt"
	"slices"
	"strings"

	"github.com/virtbridge/virtbridge/internal/config"
	"github.com/virtbridge/virtbridge/internal/desired"
	"github.com/virtbridge/virtbridge/internal/events"
)

// Decide returns the desired state for ev under cfg. It is pure and
// deterministic: the same input gives the same output, slices never nil.
func Decide(cfg *config.Config, ev events.Event) desired.Desired {
	d := desired.Desired{
		Domain: ev.Domain, UUID: ev.UUID, Op: string(ev.Op), BeforeTaps: ev.Op.BeforeTaps(),
		Bridges: []desired.Bridge{}, Ports: []desired.Port{}, Skipped: []desired.Skipped{}, Sysctls: []desired.Sysctl{}, Errors: []string{},
	}
	for _, nic := range ev.NICs {
		port, skip, err := classify(cfg, nic)
		switch {
		case err != "":
			d.Errors = append(d.Errors, err)
		case skip != nil:
			d.Skipped = append(d.Skipped, *skip)
		default:
			d.Ports = append(d.Ports, port)
			if !slices.ContainsFunc(d.Bridges, func(b desired.Bridge) bool { return b.Name == port.Bridge }) {
				b, _ := cfg.Bridge(port.Bridge)
				d.Bridges = append(d.Bridges, bridgeIn(cfg, b))
			}
		}
	}
	slices.SortFunc(d.Bridges, func(a, b desired.Bridge) int { return strings.Compare(a.Name, b.Name) })
	d.Action = action(ev.Op, len(d.Ports) > 0)
	if d.Action == desired.ActionHost {
		d.Sysctls = sysctls(cfg.Sysctl)
		d.Firewall = FirewallIntent(cfg)
	}
	return d
}

// AtStart returns what the host must look like whatever VMs run: for each
// managed bridge set to be made at start (create: at_start), the Desired
// of a VM's prepare on that bridge alone (the bridge, its uplink and
// addresses), then one for the host-wide settings (sysctls, firewall). It
// is empty when no bridge is made at start: the host is left as it is
// until a VM needs a bridge. One Desired per bridge lets the engine keep
// going past a bridge it cannot make. Pure; slices never nil.
func AtStart(cfg *config.Config) []desired.Desired {
	out := []desired.Desired{}
	empty := func() desired.Desired {
		return desired.Desired{Op: OpAtStart, Action: desired.ActionHost, Bridges: []desired.Bridge{}, Ports: []desired.Port{},
			Skipped: []desired.Skipped{}, Sysctls: []desired.Sysctl{}, Errors: []string{}}
	}
	for _, b := range cfg.Bridges {
		if b.AtStart() {
			d := empty()
			d.Bridges = append(d.Bridges, bridgeIn(cfg, b))
			out = append(out, d)
		}
	}
	if len(out) > 0 {
		d := empty()
		d.Sysctls = sysctls(cfg.Sysctl)
		d.Firewall = FirewallIntent(cfg)
		out = append(out, d)
	}
	return out
}

// OpAtStart is the Op of the Desired states AtStart returns.
const OpAtStart = "at-start"

// FirewallIntent is the firewall state cfg asks for, nil when virtbridge
// leaves the firewall alone. It covers every managed bridge.
func FirewallIntent(cfg *config.Config) *desired.Firewall {
	if cfg.Firewall.Backend == config.BackendNone || cfg.Firewall.BridgedForward != config.AcceptForward {
		return nil
	}
	fw := &desired.Firewall{Backend: string(cfg.Firewall.Backend), AcceptBridges: []string{}, NativeTables: cfg.Firewall.NativeTables.String(),
		FirewalldZone: cfg.Firewall.FirewalldZone}
	for _, b := range cfg.Bridges {
		fw.AcceptBridges = append(fw.AcceptBridges, b.Name)
	}
	return fw
}

func action(op events.Op, managed bool) desired.Action {
	switch {
	case !managed:
		return desired.ActionNone
	case op.NeedsHost():
		return desired.ActionHost
	case op.Ends(), op == events.OpDeviceRemoved:
		return desired.ActionDetach
	case op == events.OpStarted:
		// Not at start as well: the taps are already there then, but one
		// check and one attach record per port and boot is enough.
		return desired.ActionPorts
	}
	return desired.ActionNone
}

// classify sorts a NIC into a managed port, a skipped NIC, or an error
// (a NIC the configuration forbids).
func classify(cfg *config.Config, nic events.NIC) (desired.Port, *desired.Skipped, string) {
	skip := func(reason string) (desired.Port, *desired.Skipped, string) {
		return desired.Port{}, &desired.Skipped{MAC: nic.MAC, Type: nic.Type, Tap: nic.Tap, Reason: reason}, ""
	}
	switch nic.Type {
	case "bridge", "network":
	case "direct":
		return skip(fmt.Sprintf("macvtap on %q: attached to the NIC directly, no bridge involved", nic.Dev))
	case "user":
		return skip("user-mode networking: no host bridge involved")
	case "ethernet":
		return skip("type='ethernet': the tap is left to the domain's own scripts")
	default:
		return skip(fmt.Sprintf("interface type %q does not use a host bridge", nic.Type))
	}
	if nic.Network != "" && nic.NetworkMode != "" && nic.NetworkMode != "bridge" {
		return skip(fmt.Sprintf("libvirt network %q (forward mode %s) manages its own bridge", nic.Network, nic.NetworkMode))
	}
	if nic.Bridge == "" {
		return skip(fmt.Sprintf("libvirt network %q: its bridge is unknown (no readable definition under /run/libvirt/network or /etc/libvirt/qemu/networks)", nic.Network))
	}
	if err := notABridge(cfg, nic); err != "" {
		return desired.Port{}, nil, err
	}
	if _, ok := cfg.Bridge(nic.Bridge); !ok {
		if cfg.UnmanagedBridges == config.RefuseUnmanaged {
			return desired.Port{}, nil, fmt.Sprintf("NIC %s uses bridge %q, which virtbridge does not manage "+
				"(unmanaged_bridges: refuse in %s); add %q under bridges: there, or point the NIC at a managed bridge",
				nic.MAC, nic.Bridge, cfg.Path, nic.Bridge)
		}
		p, sk, _ := skip(fmt.Sprintf("bridge %q is not managed (not under bridges: in the config)", nic.Bridge))
		sk.Unmanaged = nic.Bridge
		return p, sk, ""
	}
	if what := configuredLink(cfg, nic.Tap); what != "" {
		// The tap is put into the bridge: naming a host link there must
		// not move that link (e.g. the uplink into an isolated bridge).
		return desired.Port{}, nil, fmt.Sprintf("NIC %s names <target dev='%s'/>, which is %s in %s, not a tap; "+
			"remove the <target> element and let libvirt name the tap", nic.MAC, nic.Tap, what, cfg.Path)
	}
	return desired.Port{Tap: nic.Tap, MAC: nic.MAC, Bridge: nic.Bridge, Network: nic.Network, Alias: nic.Alias}, nil, ""
}

// notABridge refuses a NIC whose bridge is a name the config gives to
// something that is no bridge: lo, or the uplink of a managed bridge (a
// VM's tap must never join the host's NIC, whatever unmanaged_bridges
// says). Names are compared exactly: "br-a0" or "BR-A" is another bridge.
func notABridge(cfg *config.Config, nic events.NIC) string {
	if nic.Bridge == "lo" {
		return fmt.Sprintf("NIC %s names %q as its bridge: that is the loopback device, not a bridge; "+
			"point the NIC at a managed bridge", nic.MAC, nic.Bridge)
	}
	for _, b := range cfg.Bridges {
		if b.Uplink == nic.Bridge {
			return fmt.Sprintf("NIC %s names %q as its bridge: %s is the uplink of managed bridge %s, not a bridge: "+
				"point the NIC at %s", nic.MAC, nic.Bridge, nic.Bridge, b.Name, b.Name)
		}
	}
	return ""
}

// configuredLink says what name is in cfg ("managed bridge ..." or "the
// uplink of ..."), or "" when cfg does not name it.
func configuredLink(cfg *config.Config, name string) string {
	if name == "" {
		return ""
	}
	for _, b := range cfg.Bridges {
		switch {
		case name == b.Name:
			return fmt.Sprintf("managed bridge %q", b.Name)
		case name == b.Uplink:
			return fmt.Sprintf("the uplink of bridge %q", b.Name)
		}
	}
	return ""
}

func bridgeOf(b config.Bridge) desired.Bridge {
	out := desired.Bridge{Name: b.Name, Uplink: b.Uplink, STP: b.STP, ForwardDelay: b.ForwardDelay, MTU: b.MTU, MoveAddresses: b.MoveAddresses}
	if b.Manager != config.ManagerAuto {
		out.Manager = b.Manager.String()
	}
	if b.ProbeTarget != nil {
		out.ProbeTarget = b.ProbeTarget.String()
	}
	out.ProbeTimeout = b.ProbeTimeout
	if b.UplinkMAC != nil {
		out.UplinkMAC = b.UplinkMAC.String()
	}
	return out
}

// bridgeIn is bridgeOf with what the host-wide settings of cfg mean for
// the bridge: IPv6 forwarding turned on.
func bridgeIn(cfg *config.Config, b config.Bridge) desired.Bridge {
	d := bridgeOf(b)
	d.IPv6Forward = cfg.Sysctl.IPv6Forward == config.On
	return d
}

// HostSysctls are the kernel settings cfg forces (not left alone), as
// the engine applies them with the host-wide settings. Pure; never nil.
func HostSysctls(cfg *config.Config) []desired.Sysctl { return sysctls(cfg.Sysctl) }

func sysctls(s config.Sysctl) []desired.Sysctl {
	out := []desired.Sysctl{}
	for _, kv := range []struct {
		name string
		t    config.Toggle
	}{
		{"net.ipv4.ip_forward", s.IPForward},
		{"net.ipv6.conf.all.forwarding", s.IPv6Forward},
		{"net.bridge.bridge-nf-call-iptables", s.BridgeNFCallIPTables},
		{"net.bridge.bridge-nf-call-ip6tables", s.BridgeNFCallIP6Tables},
	} {
		if kv.t != config.Leave {
			out = append(out, desired.Sysctl{Name: kv.name, Value: kv.t.String()})
		}
	}
	return out
}

// Bridge is the desired bridge of a configured one. Pure.
func Bridge(b config.Bridge) desired.Bridge { return bridgeOf(b) }
