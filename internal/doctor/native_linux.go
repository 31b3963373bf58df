package doctor

import "github.com/virtbridge/virtbridge/internal/firewall"

// HostNative reads the native nftables forward chains over netlink.
type HostNative struct {
	// NetNS is the network namespace file to read in; "" is the process's own.
	NetNS string
}

var _ NativeChains = HostNative{}

// ForwardChains returns the chains (firewall.ReadForward). It changes nothing.
func (h HostNative) ForwardChains() ([]firewall.NativeChain, error) {
	return firewall.ReadForward(h.NetNS)
}
