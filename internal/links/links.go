// Package links is the link backend of virtbridge: it makes bridges exist
// with their settings, enslaves the uplink NIC and moves the host's
// addresses and routes from the uplink to the bridge without breaking the
// host's connectivity, and keeps VM taps in their bridges with an alias.
//
// Every decision about a bridge and its uplink is made once, by the pure
// Plan over a Snapshot of the namespace (links, the uplink's addresses
// with their lifetimes, routes of every table, rules, neighbours, the
// owner); it returns plain Steps. Manager (Linux) reads the Snapshot from
// rtnetlink in one network namespace and executes the steps there; Fake
// holds a namespace's state in memory, for the unit tests of its
// consumers, and applies the same steps to it. So both refuse the same
// things with the same messages, and every refusal wraps one of the Err*
// values below so callers classify with errors.Is.
package links

import (
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"

	"github.com/virtbridge/virtbridge/internal/change"
	"github.com/virtbridge/virtbridge/internal/desired"
)

// Refusals. Every error EnsureBridge or EnsurePort returns for a state it
// will not change wraps one of these.
var (
	// ErrNotBridge: a link with the bridge's name exists and is no bridge.
	ErrNotBridge = errors.New("not a bridge")
	// ErrUplinkMissing: the configured uplink does not exist.
	ErrUplinkMissing = errors.New("uplink missing")
	// ErrUplinkAmbiguous: several links carry the configured uplink MAC.
	ErrUplinkAmbiguous = errors.New("uplink ambiguous")
	// ErrUplinkBusy: the uplink is enslaved to another master (bridge, bond,
	// team, VRF) or is itself a bridge.
	ErrUplinkBusy = errors.New("uplink in use")
	// ErrUplinkWireless: the uplink is an 802.11 station.
	ErrUplinkWireless = errors.New("uplink is wireless")
	// ErrUnmovable: the uplink's addresses or routes cannot be moved to
	// the bridge as they are (routes through nexthop objects).
	ErrUnmovable = errors.New("uplink routes cannot be moved")
	// ErrDynamicAddress: the uplink holds a lease (an address with a
	// finite lifetime) of a DHCP client without a manager, which would
	// expire on the bridge; the per-bridge manager: kernel moves it anyway.
	ErrDynamicAddress = errors.New("uplink address is dynamic")
	// ErrProbe: after the uplink's addresses moved to the bridge, the
	// host's gateway did not answer through the bridge.
	ErrProbe = errors.New("gateway unreachable after the handoff")
	// ErrTapMissing: the VM's tap does not exist.
	ErrTapMissing = errors.New("tap missing")
	// ErrBridgeMissing: EnsurePort was asked for a bridge that does not
	// exist (EnsureBridge was not run first).
	ErrBridgeMissing = errors.New("bridge missing")
	// ErrNotTap: the link a VM port names cannot be the tap libvirt made
	// for that NIC: it is no tun/tap device in tap mode (a NIC, a veth, a
	// bridge...), or it does not carry the MAC libvirt gives the NIC's
	// tap (another VM's tap, a VPN's tap0).
	ErrNotTap = errors.New("not the VM's tap")
)

// ManagedAlias is the interface alias (IFLA_IFALIAS, `ip link show`'s
// "alias") of a bridge virtbridge manages: it gives it to the bridges it
// creates, and to an existing bridge without alias the first time it
// manages it. A bridge without it was made by someone else (the
// distribution's network configuration, an operator, another program) and
// not taken over yet, or it carries an alias of the operator's, which is
// never overwritten: when virtbridge changes such a bridge, it says so on
// stderr and in its logs, not only in the journal. The alias lives as long
// as the bridge: a bridge re-made at boot by the network configuration is
// someone else's again and is reported once more when taken over. (A run
// killed between creating a bridge and marking it leaves it unmarked: the
// next run reports it as taken over.)
const ManagedAlias = "managed by virtbridge"

// foreignNotice describes, for the operator, the changes cs of one run on
// bridge, which virtbridge did not create or take over before, and names
// its other ports (neither its uplink nor VM taps: "eth1 (veth)"). ok is
// false when cs holds no change of that bridge.
func foreignNotice(bridge string, cs []change.Change, others []string) (c change.Change, ok bool) {
	var what []string
	for _, c := range cs {
		switch {
		case c.Kind == change.BridgeUpdated && c.Object == bridge:
			what = append(what, c.Before+" -> "+c.After)
		case c.Kind == change.AliasSet && c.Object == bridge:
			what = append(what, fmt.Sprintf("alias %q set", c.After))
		case c.Kind == change.UplinkEnslaved && c.After == bridge:
			what = append(what, "uplink "+c.Object+" enslaved")
		case (c.Kind == change.AddressMoved || c.Kind == change.RouteMoved) && c.After == bridge:
			what = append(what, fmt.Sprintf("%s %s moved from %s", strings.TrimSuffix(string(c.Kind), "-moved"), c.Object, c.Before))
		}
	}
	if len(what) == 0 {
		return change.Change{}, false
	}
	msg := fmt.Sprintf("bridge %q was made by someone else (its alias was not %q); virtbridge manages it as the configuration says and changed: %s",
		bridge, ManagedAlias, strings.Join(what, "; "))
	if len(others) > 0 {
		msg += fmt.Sprintf("; its ports %s are neither its uplink nor VM taps, and now forward with these settings: "+
			"check that they belong on this bridge", strings.Join(others, ", "))
	}
	return change.Change{Kind: change.ForeignBridge, Object: bridge, After: msg}, true
}

// wirelessAdvice is what the operator reads when the uplink is 802.11.
const wirelessAdvice = "802.11 drops frames whose source MAC is not the station's own; route or NAT instead"

// PortInfo describes one port of a bridge, for the CLI.
type PortInfo struct {
	Name  string `json:"name"`
	Kind  string `json:"kind"` // netlink kind: "tuntap", "veth", "device", ...
	MAC   string `json:"mac"`
	Alias string `json:"alias,omitempty"`
	Up    bool   `json:"up"`
}

// BridgeInfo describes a bridge as the kernel has it, for the CLI.
type BridgeInfo struct {
	Name         string `json:"name"`
	Exists       bool   `json:"exists"`
	IsBridge     bool   `json:"is_bridge"`
	Kind         string `json:"kind,omitempty"` // what the link is when it is no bridge
	Up           bool   `json:"up"`
	STP          bool   `json:"stp"`
	ForwardDelay int    `json:"forward_delay"` // seconds
	MTU          int    `json:"mtu"`
	MAC          string `json:"mac"`
	// Uplink is the first port (by name) that is not a tap: the NIC that
	// connects the bridge to the outside network. Empty if none.
	Uplink string `json:"uplink,omitempty"`
	// Addresses are the bridge's IPv4 and global IPv6 addresses.
	Addresses []string `json:"addresses"`
	// UplinkAddresses are the IPv4 and global IPv6 addresses still on the
	// uplink: after a move there should be none.
	UplinkAddresses []string `json:"uplink_addresses"`
}

func wirelessError(bridge, uplink string) error {
	return fmt.Errorf("uplink %q of bridge %q is a wireless (802.11) interface and cannot be bridged: "+
		"%s: %w", uplink, bridge, wirelessAdvice, ErrUplinkWireless)
}

// busyError refuses an uplink enslaved to another master (owner, of kind
// ownerKind as netlink names it, "" if unknown). It never advises taking
// the NIC out of its master (ip link set ... nomaster): the NIC may be the
// one carrying the host's own network through that master.
func busyError(bridge, uplink, owner, ownerKind string) error {
	var advice string
	switch ownerKind {
	case "bridge":
		advice = fmt.Sprintf("to put VMs on the network of %q, manage that bridge itself: rename bridge %q to %q in the configuration "+
			"(virtbridge takes an existing bridge over as it is, ports included); or give bridge %q another NIC",
			owner, bridge, owner, bridge)
	case "bond", "team":
		advice = fmt.Sprintf("name %q, the %s, as the uplink of bridge %q in the configuration (a %s can be a bridge port); "+
			"or give bridge %q another NIC", owner, ownerKind, bridge, ownerKind, bridge)
	default:
		advice = fmt.Sprintf("give bridge %q another NIC in the configuration", bridge)
	}
	return fmt.Errorf("uplink %q of bridge %q is already enslaved to %q, and a NIC has one master only; "+
		"virtbridge does not take it away, as it may carry the host's own network: %s: %w",
		uplink, bridge, owner, advice, ErrUplinkBusy)
}

// macCarrier tells the link kinds that carry a MAC of another link without
// owning it: they never count as the owner of an uplink_mac.
func macCarrier(kind string) bool { return kind == "bridge" || kind == "vlan" }

// TapMAC returns the MAC libvirt gives the tap of a bridged NIC whose
// guest MAC is guest: the guest MAC with its first octet replaced by 0xfe,
// or by 0xfa when the guest's own first octet is 0xfe
// (virNetDevTapCreateInBridgePort), so that the bridge never picks the
// guest's MAC as its own. It is lowercase and colon-separated.
func TapMAC(guest string) (string, error) {
	hw, err := net.ParseMAC(guest)
	if err == nil && len(hw) != 6 {
		err = errors.New("not a 6-byte Ethernet address")
	}
	if err != nil {
		return "", fmt.Errorf("guest MAC %q: %w", guest, err)
	}
	tap := slices.Clone(hw)
	tap[0] = 0xfe
	if hw[0] == 0xfe {
		tap[0] = 0xfa
	}
	return tap.String(), nil
}

// checkTap refuses, before anything is changed, a link that cannot be the
// tap libvirt made for the port's NIC: what is "tap" for a tun/tap device
// in tap mode, otherwise a description of the link ("veth link", ...);
// mac is the link's MAC. A VM owner chooses <target dev> and the guest MAC,
// so without this check a VM could have eth0, a container's veth or
// another VM's tap enslaved to its bridge.
func checkTap(p desired.Port, what, mac string) error {
	if what != "tap" {
		return fmt.Errorf("tap %q of NIC %s on bridge %q: %s is a %s, not a tun/tap device in tap mode "+
			"(what libvirt creates for a VM NIC), so it is not this VM's tap and is left alone; "+
			"remove <target dev='%s'/> from the NIC and let libvirt name its tap: %w",
			p.Tap, p.MAC, p.Bridge, p.Tap, what, p.Tap, ErrNotTap)
	}
	want, err := TapMAC(p.MAC)
	if err != nil {
		return fmt.Errorf("tap %q of bridge %q: %w", p.Tap, p.Bridge, err)
	}
	if hw, err := net.ParseMAC(mac); err != nil || hw.String() != want {
		return fmt.Errorf("tap %q of NIC %s on bridge %q has MAC %s, but libvirt gives this NIC's tap the MAC %s: "+
			"%s is another VM's or program's tun/tap device and is left alone; remove <target dev='%s'/> from the NIC, "+
			"or see which VM holds %s with `virtbridge who %s`: %w",
			p.Tap, p.MAC, p.Bridge, mac, want, p.Tap, p.Tap, p.Tap, p.Tap, ErrNotTap)
	}
	return nil
}

// tapMissingError refuses a port whose tap does not exist.
func tapMissingError(p desired.Port) error {
	if p.Tap == "" {
		return fmt.Errorf("port %s of bridge %q names no tap: %w", p.MAC, p.Bridge, ErrTapMissing)
	}
	return fmt.Errorf("tap %q of bridge %q: no link named %q in this network namespace "+
		"(the VM's NIC is not plugged yet, or it is already gone): %w", p.Tap, p.Bridge, p.Tap, ErrTapMissing)
}

// bridgeMissingError refuses a port whose bridge does not exist.
func bridgeMissingError(p desired.Port) error {
	return fmt.Errorf("tap %q: bridge %q does not exist: %w", p.Tap, p.Bridge, ErrBridgeMissing)
}

// KindText describes a link kind as netlink names it ("device" for a NIC,
// "veth", "bridge", ...), for messages.
func KindText(kind string) string {
	if kind == "device" {
		return "network interface (NIC)"
	}
	return kind + " link"
}

// tapWhat is what checkTap is told a link is: "tap" for a tun/tap device in
// tap mode, else its description.
func tapWhat(kind string, tapMode bool) string {
	switch {
	case kind == "tuntap" && tapMode:
		return "tap"
	case kind == "tuntap":
		return "tun/tap device in tun mode"
	}
	return KindText(kind)
}

// addressedError refuses to enslave an uplink that holds addresses (addrs)
// when the bridge is told not to move them (move_addresses: false): once a
// bridge port, the uplink's addresses no longer reach the network, and the
// host would be cut off.
func addressedError(bridge, uplink string, addrs []string) error {
	return fmt.Errorf("uplink %q of bridge %q holds the host's addresses %s, and move_addresses is false for this bridge: "+
		"enslaved, the uplink would no longer carry them and the host would lose its network; set move_addresses: true "+
		"(virtbridge then moves them to the bridge), or remove the addresses from %q first: %w",
		uplink, bridge, strings.Join(addrs, ", "), uplink, ErrUnmovable)
}
