// Package desired holds the desired host state: what the policy decides
// and the backends (links, sysctl, firewall) and apply consume. It is a
// leaf: it imports nothing of virtbridge's, so a backend that takes these
// types knows nothing of the configuration file, libvirt's XML or the
// policy that produced them.
package desired

import "time"

// Action says what the event asks of the host.
type Action string

// Actions, per op.
const (
	// ActionHost: make the VM's bridges, uplinks, sysctls and firewall
	// right before qemu needs them (prepare, reconnect, migrate, restore,
	// attach, a hot-plugged NIC).
	ActionHost Action = "host"
	// ActionPorts: the taps exist; check they are in their bridges and
	// record the mapping (started).
	ActionPorts Action = "ports"
	// ActionDetach: the VM's taps are gone; record that (stopped, release,
	// an unplugged NIC).
	ActionDetach Action = "detach"
	// ActionNone: nothing to do (no managed NIC).
	ActionNone Action = "none"
)

// Bridge is a managed bridge the VM needs, with its settings.
type Bridge struct {
	Name          string `json:"name"`
	Uplink        string `json:"uplink"`               // NIC name, or empty
	UplinkMAC     string `json:"uplink_mac,omitempty"` // NIC selected by MAC instead
	STP           bool   `json:"stp"`
	ForwardDelay  int    `json:"forward_delay"`
	MTU           int    `json:"mtu,omitempty"`
	MoveAddresses bool   `json:"move_addresses"`
	// Manager is the configuration's manager: ("auto", "networkmanager",
	// "networkd", "kernel"; "" means auto). With "kernel" the link backend
	// moves dynamic addresses as static ones; otherwise it refuses to move
	// an address with a lifetime (a DHCP lease), which would expire.
	Manager string `json:"manager,omitempty"`
	// ProbeTarget is the address probed through the bridge after the
	// uplink's addresses moved ("": the default routes' gateways the host
	// had reached on the uplink). ProbeTimeout bounds the wait for each
	// (0: the backend's default; negative: no probe).
	ProbeTarget  string        `json:"probe_target,omitempty"`
	ProbeTimeout time.Duration `json:"probe_timeout,omitempty"`
	// IPv6Forward: the configuration turns IPv6 forwarding on
	// (sysctl.ipv6_forward: 1), after the bridges are made. A bridge
	// taking over its uplink's router advertisements then accepts them with
	// accept_ra 2, which forwarding does not switch off.
	IPv6Forward bool `json:"ipv6_forward,omitempty"`
}

// Port is one VM NIC on a managed bridge.
type Port struct {
	Tap     string `json:"tap"` // empty when the XML names none (at stopped; at prepare unless the VM chose the name)
	MAC     string `json:"mac"`
	Bridge  string `json:"bridge"`
	Network string `json:"network,omitempty"`
	Alias   string `json:"alias,omitempty"`
}

// Skipped is a VM NIC virtbridge leaves alone, and why.
type Skipped struct {
	MAC    string `json:"mac"`
	Type   string `json:"type"`
	Tap    string `json:"tap,omitempty"`
	Reason string `json:"reason"`
	// Unmanaged is the bridge the NIC names when the NIC is skipped
	// because that bridge is not managed. The engine checks that such a
	// name is no host link of another kind (eth0, a veth).
	Unmanaged string `json:"unmanaged,omitempty"`
}

// Sysctl is a kernel setting to enforce.
type Sysctl struct {
	Name  string `json:"name"` // dotted, e.g. net.ipv4.ip_forward
	Value string `json:"value"`
}

// Firewall is the firewall intent: the backend and the bridges whose
// bridged traffic FORWARD must accept. It always covers every managed
// bridge, so rules of bridges dropped from the config are removed.
type Firewall struct {
	Backend       string   `json:"backend"`
	AcceptBridges []string `json:"accept_bridges"`
	// NativeTables says whether virtbridge may insert its accept rules
	// into the administrator's native nftables forward chains: "accept"
	// (or "") or "leave" (refuse instead).
	NativeTables string `json:"native_tables,omitempty"`
	// FirewalldZone, when set, is the firewalld zone the bridges go into;
	// "" means the zone of each bridge's uplink.
	FirewalldZone string `json:"firewalld_zone,omitempty"`
}

// Desired is what the host must look like for one event.
type Desired struct {
	Domain   string    `json:"domain"`
	UUID     string    `json:"uuid"`
	Op       string    `json:"op"`
	Action   Action    `json:"action"`
	Bridges  []Bridge  `json:"bridges"`
	Ports    []Port    `json:"ports"`
	Skipped  []Skipped `json:"skipped"`
	Sysctls  []Sysctl  `json:"sysctls"`
	Firewall *Firewall `json:"firewall"`
	Errors   []string  `json:"errors"`
	// BeforeTaps says the op comes before libvirt makes the taps
	// (prepare, migrate, restore): a tap a port names is only the name
	// the tap will get.
	BeforeTaps bool `json:"-"`
}

// TapsExist reports whether the ports' taps exist at d's op. Before
// libvirt makes them (BeforeTaps) a tap a NIC names is shown, but not
// looked for, put into a bridge or recorded.
func (d Desired) TapsExist() bool { return !d.BeforeTaps }
