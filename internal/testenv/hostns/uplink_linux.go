package hostns

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// nmUplinkProfile is the uplink's profile on a NetworkManager host, as an
// installer makes it: DHCP, IPv6 automatic.
var nmUplinkProfile = []string{"nmcli", "con", "add", "type", "ethernet", "ifname", Uplink, "con-name", Uplink,
	"ipv4.method", "auto", "ipv6.method", "auto", "ipv4.dhcp-client-id", "mac"}

// NetworkdUplinkFile and NetworkdUplinkNetwork are the uplink's .network
// on a networkd host, as a cloud image has it.
const (
	NetworkdUplinkFile    = "/etc/systemd/network/50-uplink0.network"
	NetworkdUplinkNetwork = `[Match]
Name=` + Uplink + `

[Network]
DHCP=ipv4

[DHCPv4]
UseHostname=no
`
)

// StaticAddr is a Static host's address on the uplink, outside dnsmasq's
// range.
const StaticAddr = "10.88.0.2/24"

// OwnUplink gives the uplink to the host's manager, configured for DHCP
// as the distribution would, and waits for its lease (a Static host: its
// address and default route). It returns the address (CIDR).
func (h *Host) OwnUplink(t testing.TB) string {
	t.Helper()
	switch h.Mgr {
	case NetworkManager:
		h.Run(t, nmUplinkProfile...)
		h.Run(t, "nmcli", "con", "up", Uplink)
	case Networkd:
		h.WriteFile(t, NetworkdUplinkFile, NetworkdUplinkNetwork)
		h.Run(t, "networkctl", "reload")
	case DHClient: // dhclient, started with the host, asks for the lease
	case Static:
		h.Run(t, "ip", "addr", "add", StaticAddr, "dev", Uplink)
		h.Run(t, "ip", "link", "set", Uplink, "up")
		h.Run(t, "ip", "route", "add", "default", "via", Gateway, "dev", Uplink)
	}
	var addr string
	h.waitFor(t, "the uplink's lease", 60*time.Second, func() bool {
		a := h.Addresses(t, Uplink)
		if len(a) > 0 && h.DefaultRoute(t) != "" {
			addr = a[0]
			return true
		}
		return false
	})
	h.Settle(t)
	return addr
}

// DhclientLeases is the lease file of a DHClient host's dhclient.
func (h *Host) DhclientLeases() string { return filepath.Join(h.Dir, "dhclient.leases") }

// ClientPID is the pid of the host's dhclient (DHClient hosts), 0 if none was started.
func (h *Host) ClientPID() int {
	if h.Mgr != DHClient || h.manager == nil {
		return 0
	}
	return h.manager.Process.Pid
}

// DnsmasqLeases is the upstream dnsmasq's lease file: one line per lease,
// "EXPIRY MAC ADDRESS HOSTNAME CLIENT-ID".
func (h *Host) DnsmasqLeases(t testing.TB) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(h.Dir, "dnsmasq.leases"))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// Settle waits until IPv6 duplicate address detection is over (it ends
// within a few seconds): a dump taken before shows "tentative" addresses
// that change by themselves.
func (h *Host) Settle(t testing.TB) {
	t.Helper()
	h.waitFor(t, "no tentative address", 30*time.Second, func() bool {
		out, err := h.NS.Exec("ip", "addr", "show")
		return err == nil && !strings.Contains(out, "tentative")
	})
}

// Addresses are the IPv4 addresses on link (CIDR), in the kernel's order.
// A missing link has none.
func (h *Host) Addresses(t testing.TB, link string) []string {
	t.Helper()
	out, err := h.NS.Exec("ip", "-4", "-o", "addr", "show", "dev", link)
	if err != nil {
		return nil
	}
	var addrs []string
	for _, l := range strings.Split(out, "\n") {
		f := strings.Fields(l)
		for i := 0; i+1 < len(f); i++ {
			if f[i] == "inet" {
				addrs = append(addrs, f[i+1])
			}
		}
	}
	return addrs
}

// DefaultRoute is the main table's IPv4 default route, "" if none.
func (h *Host) DefaultRoute(t testing.TB) string {
	t.Helper()
	out, _ := h.NS.Exec("ip", "-4", "route", "show", "default")
	return strings.TrimSpace(out)
}

// Master is the master of link, "" if none.
func (h *Host) Master(t testing.TB, link string) string {
	t.Helper()
	out, _ := h.NS.Exec("ip", "-o", "link", "show", "dev", link)
	f := strings.Fields(out)
	for i := 0; i+1 < len(f); i++ {
		if f[i] == "master" {
			return f[i+1]
		}
	}
	return ""
}

// ConnectedRoutes are the main table's routes to the upstream subnet.
func (h *Host) ConnectedRoutes(t testing.TB) []string {
	t.Helper()
	_, subnet, _ := net.ParseCIDR(UpstreamCIDR)
	out, _ := h.NS.Exec("ip", "-4", "route", "show", subnet.String())
	var rs []string
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		if l != "" {
			rs = append(rs, l)
		}
	}
	return rs
}

// PingFromUpstream pings addr (no prefix) once from the upstream namespace
// with a 1 s wait, and reports whether it answered.
func (h *Host) PingFromUpstream(addr string) bool {
	ip, _, err := net.ParseCIDR(addr)
	if err == nil {
		addr = ip.String()
	}
	cmd := exec.Command("ip", "netns", "exec", h.Up.Name, "ping", "-n", "-q", "-c", "1", "-W", "1", addr)
	return cmd.Run() == nil
}

// BreakGateway makes the gateway unreachable from the host: the upstream
// end stops answering ARP (NOARP), its carrier stays up (a link going down
// would make the managers drop their configuration, another fault).
func (h *Host) BreakGateway(t testing.TB) {
	h.Up.Run(t, "ip", "link", "set", UpstreamLink, "arp", "off")
}

// MendGateway undoes BreakGateway.
func (h *Host) MendGateway(t testing.TB) { h.Up.Run(t, "ip", "link", "set", UpstreamLink, "arp", "on") }

// Dump is the host namespace's network state as text (netnstest's Dump),
// for before/after comparisons.
func (h *Host) Dump(t testing.TB) string { return h.NS.Dump(t) }

// String names the host, for messages.
func (h *Host) String() string { return fmt.Sprintf("host %s (%s)", h.NS.Name, h.Mgr) }
