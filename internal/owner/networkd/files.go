package networkd

import (
	"fmt"
	"strings"

	"github.com/virtbridge/virtbridge/internal/desired"
)

// prefix makes virtbridge's files sort before the distribution's and
// netplan's (10-netplan-*, 50-cloud-init*, ...): for a link matched by
// several .network files networkd uses the first by name.
const prefix = "05-virtbridge-"

// Files are the names of the three files that make bridge b networkd's
// own: its .netdev, its .network and the uplink's port .network.
func Files(b desired.Bridge) (netdev, network, port string) {
	base := prefix + b.Name
	return base + ".netdev", base + ".network", base + "-port-" + b.Uplink + ".network"
}

const header = "# Made by virtbridge for bridge %s (uplink %s). To give the uplink back: remove the three\n# 05-virtbridge-%s* files, `networkctl reload`, `ip link del` the bridge.\n"

// netdevFile is the bridge itself, with the uplink's MAC so the DHCP
// server hands back the same lease.
func netdevFile(b desired.Bridge, mac string) string {
	var s strings.Builder
	fmt.Fprintf(&s, header, b.Name, b.Uplink, b.Name)
	fmt.Fprintf(&s, "[NetDev]\nName=%s\nKind=bridge\nMACAddress=%s\n", b.Name, mac)
	if b.MTU > 0 {
		fmt.Fprintf(&s, "MTUBytes=%d\n", b.MTU)
	}
	fmt.Fprintf(&s, "\n[Bridge]\nSTP=%s\n", yesNo(b.STP))
	if b.ForwardDelay >= 2 {
		fmt.Fprintf(&s, "ForwardDelaySec=%d\n", b.ForwardDelay)
	}
	return s.String()
}

// bridgeNetworkFile is the bridge's .network: the uplink's .network with
// its [Match] replaced by the bridge's name (its [Network], [DHCPv4],
// [Address], [Route]... sections move to the bridge as they are).
func bridgeNetworkFile(b desired.Bridge, uplinkFile, uplinkNetwork string) string {
	var s strings.Builder
	fmt.Fprintf(&s, header, b.Name, b.Uplink, b.Name)
	fmt.Fprintf(&s, "# The settings below are those of %s.\n[Match]\nName=%s\n", uplinkFile, b.Name)
	section := ""
	for _, line := range strings.Split(uplinkNetwork, "\n") {
		t := strings.TrimSpace(line)
		if strings.HasPrefix(t, "[") && strings.HasSuffix(t, "]") {
			section = t
			if section != "[Match]" {
				s.WriteString("\n")
			}
		}
		if section == "[Match]" || t == "" || strings.HasPrefix(t, "#") || strings.HasPrefix(t, ";") {
			continue
		}
		s.WriteString(t + "\n")
	}
	return s.String()
}

// portNetworkFile makes the uplink a port of the bridge, with no address
// of its own.
func portNetworkFile(b desired.Bridge) string {
	return fmt.Sprintf(header+"[Match]\nName=%s\n\n[Network]\nBridge=%s\nLinkLocalAddressing=no\nIPv6AcceptRA=no\n",
		b.Name, b.Uplink, b.Name, b.Uplink, b.Name)
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}
