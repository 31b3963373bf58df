// Package owner names who owns a bridge's uplink, that is who gives it its
// addresses: nobody (static addresses, the kernel path), a DHCP client
// without a manager, NetworkManager or systemd-networkd. Detection lives in
// the sub-packages (dhcp: lifetimes and client processes); this file holds
// only the shared types.
package owner

// Kind is the kind of owner of an uplink.
type Kind string

// Kinds.
const (
	// Kernel: nobody; the uplink's addresses are static and move over
	// netlink (the kernel path).
	Kernel Kind = "kernel"
	// DHCPClient: a DHCP client without a manager (dhclient, dhcpcd,
	// udhcpc) holds a dynamic address on the uplink.
	DHCPClient Kind = "dhcp-client"
	// NetworkManager manages the uplink.
	NetworkManager Kind = "networkmanager"
	// Networkd: systemd-networkd manages the uplink.
	Networkd Kind = "networkd"
	// Virtbridged: virtbridged keeps the bridge's lease with a DHCP client
	// of its own (manager: virtbridged, internal/owner/lease).
	Virtbridged Kind = "virtbridged"
)

// Owner is what detection found for one uplink.
type Owner struct {
	Kind   Kind
	Uplink string
	// Detail says what was seen, for people: the dynamic address and its
	// lifetime, the client process...
	Detail string
}
