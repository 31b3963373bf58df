package lab

import (
	"context"
	"fmt"
	"os"
	"strings"
)

// The host's own address on the upstream network, inside the lab only.
const (
	HostAddr = "10.77.0.2"
	HostCIDR = "10.77.0.2/24"
)

// Faults are the troubles of the classic bridged-networking how-to, each of
// which keeps a bridged VM off the network or the host off it once the
// uplink is bridged. Break puts them into the hypervisor namespace; the
// zero value is a host that works: the bridge exists with the uplink
// enslaved, IPv4 forwarding is on, bridged frames skip iptables and the
// FORWARD chain accepts everything.
type Faults struct {
	// MissingBridge leaves the bridge out; otherwise it is created (up,
	// STP off, forward delay 0) with the uplink enslaved.
	MissingBridge bool
	// HostAddress puts the host's address (HostCIDR) and its default route
	// via UpstreamAddr on the uplink, or on the bridge when the bridge
	// exists: enslaving the uplink without moving them cuts the host off.
	HostAddress bool
	// IPForwardOff sets net.ipv4.ip_forward to 0 (otherwise 1).
	IPForwardOff bool
	// BridgeNFCall sets net.bridge.bridge-nf-call-iptables to 1, so that
	// bridged frames pass through iptables' FORWARD chain (otherwise 0).
	// Kernels without br_netfilter have no such setting: Break then fails
	// rather than load a module into the machine's kernel.
	BridgeNFCall bool
	// ForwardDrop sets the FORWARD policy to DROP, as Docker does.
	ForwardDrop bool
	// Reject appends `-j REJECT --reject-with icmp-host-prohibited` to
	// FORWARD, the old RHEL default.
	Reject bool
}

// ClassicFaults is the host of the 2009 how-to, everything wrong at once:
// no bridge, the host's address and default route on the uplink, IPv4
// forwarding off, bridged frames through iptables, FORWARD dropping by
// policy and ending in a REJECT rule.
func ClassicFaults() Faults {
	return Faults{MissingBridge: true, HostAddress: true, IPForwardOff: true,
		BridgeNFCall: true, ForwardDrop: true, Reject: true}
}

// String lists the faults, for progress messages.
func (f Faults) String() string {
	var s []string
	for _, x := range []struct {
		on   bool
		what string
	}{
		{f.MissingBridge, "no bridge"},
		{f.HostAddress, "host address and default route on the uplink"},
		{f.IPForwardOff, "ip_forward=0"},
		{f.BridgeNFCall, "bridge-nf-call-iptables=1"},
		{f.ForwardDrop, "FORWARD policy DROP"},
		{f.Reject, "FORWARD ... -j REJECT --reject-with icmp-host-prohibited"},
	} {
		if x.on {
			s = append(s, x.what)
		}
	}
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, ", ")
}

// BridgeNFAvailable reports whether the kernel has br_netfilter, whose
// bridge-nf-call-iptables setting Faults.BridgeNFCall needs. The setting
// is per network namespace, so the host's /proc answers for the lab too.
func BridgeNFAvailable() bool {
	_, err := os.Stat("/proc/sys/net/bridge/bridge-nf-call-iptables")
	return err == nil
}

// Break sets up the hypervisor namespace of a lab with an upstream as
// described by f; bridge names the bridge (made unless f.MissingBridge).
// Call it once, before any VM starts: it adds, it does not undo.
func (l *Lab) Break(ctx context.Context, bridge string, f Faults) error {
	if l.upNS == "" {
		return fmt.Errorf("breaking the host: lab has no upstream")
	}
	if f.BridgeNFCall && !BridgeNFAvailable() {
		return fmt.Errorf("breaking the host: bridge-nf-call-iptables=1 needs br_netfilter, which this kernel has not loaded")
	}
	hostLink := UplinkName
	var steps [][]string
	if !f.MissingBridge {
		hostLink = bridge
		steps = append(steps,
			[]string{"ip", "link", "add", bridge, "type", "bridge", "stp_state", "0", "forward_delay", "0"},
			[]string{"ip", "link", "set", UplinkName, "master", bridge},
			[]string{"ip", "link", "set", bridge, "up"})
	}
	if f.HostAddress {
		steps = append(steps,
			[]string{"ip", "addr", "add", HostCIDR, "dev", hostLink},
			[]string{"ip", "route", "add", "default", "via", UpstreamAddr, "dev", hostLink})
	}
	steps = append(steps, []string{"sysctl", "-qw", "net.ipv4.ip_forward=" + bit(!f.IPForwardOff)})
	if BridgeNFAvailable() {
		steps = append(steps, []string{"sysctl", "-qw", "net.bridge.bridge-nf-call-iptables=" + bit(f.BridgeNFCall)})
	}
	if f.ForwardDrop {
		steps = append(steps, []string{"iptables", "-P", "FORWARD", "DROP"})
	}
	if f.Reject {
		steps = append(steps, []string{"iptables", "-A", "FORWARD", "-j", "REJECT", "--reject-with", "icmp-host-prohibited"})
	}
	for _, s := range steps {
		if _, err := l.ExecHV(ctx, s[0], s[1:]...); err != nil {
			return fmt.Errorf("breaking the host (%s): %w", f, err)
		}
	}
	return nil
}

func bit(b bool) string {
	if b {
		return "1"
	}
	return "0"
}
