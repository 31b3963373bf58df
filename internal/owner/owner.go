// Package owner names who owns a bridge's uplink: the kernel path
// (nobody), a bare DHCP client, NetworkManager or systemd-networkd.
package owner

// Kind is the kind of owner of an uplink.
type Kind string

// Kinds of owner.
const (
	Kernel         Kind = "kernel"
	DHCPClient     Kind = "dhcp-client"
	NetworkManager Kind = "networkmanager"
	Networkd       Kind = "networkd"
)

// Owner is who owns an uplink, with what was seen (Detail).
type Owner struct {
	Kind   Kind
	Uplink string
	Detail string
}
