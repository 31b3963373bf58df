package doctor

import (
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"

	"github.com/virtbridge/virtbridge/internal/testenv/netnstest"
)

// uplinkNS is a namespace with uplink0 (a veth holding the host's
// addresses) and br0, a bridge with the kernel's STP defaults.
func uplinkNS(t *testing.T) *netnstest.NS {
	t.Helper()
	ns := netnstest.New(t, "vbdl")
	ns.Script(t, `
		ip link add uplink0 type veth peer name peer0
		ip link set uplink0 up
		ip addr add 10.77.0.2/24 dev uplink0
		ip -6 addr add 2001:db8:77::2/64 dev uplink0 nodad
		ip link add br0 type bridge stp_state 1 forward_delay 1500
		ip link set br0 up`)
	return ns
}

// TestHostLinks reads a namespace over netlink: kinds, masters, the
// addresses that say where the host is reachable (no link-local), and the
// bridge's STP settings.
func TestHostLinks(t *testing.T) {
	ns := uplinkNS(t)
	ns.Script(t, "ip link set peer0 master br0")
	ls, err := HostLinks{NS: &ns.Handle, SysRoot: t.TempDir()}.Links()
	if err != nil {
		t.Fatal(err)
	}
	up, ok := linkByName(ls, "uplink0")
	if !ok || up.Kind != "veth" || !up.Up || up.MTU != 1500 || up.Wireless {
		t.Fatalf("uplink0 = %+v", up)
	}
	if !slices.Equal(up.Addresses, []string{"10.77.0.2/24", "2001:db8:77::2/64"}) {
		t.Errorf("uplink0 addresses %q, want the IPv4 and the global IPv6 one", up.Addresses)
	}
	br, _ := linkByName(ls, "br0")
	if br.Kind != "bridge" || !br.STP || br.ForwardDelay != 15 {
		t.Errorf("br0 = %+v, want a bridge with STP and a 15 s forward delay", br)
	}
	if p, _ := linkByName(ls, "peer0"); p.Master != "br0" {
		t.Errorf("peer0 master %q, want br0", p.Master)
	}
}

// nsSources checks the namespace's links against config y.
func nsSources(t *testing.T, ns *netnstest.NS, y string, sys string, m Managers) Sources {
	return Sources{ConfigPath: "test.yaml", Config: mustConfig(t, y),
		Links: HostLinks{NS: &ns.Handle, SysRoot: sys}, Managers: m}
}

// TestUplinkWireless: an 802.11 uplink (sysfs says phy80211) cannot be
// bridged, whether or not the bridge exists.
func TestUplinkWireless(t *testing.T) {
	ns := uplinkNS(t)
	sys := t.TempDir()
	if err := os.MkdirAll(filepath.Join(sys, "class", "net", "uplink0", "phy80211"), 0o755); err != nil {
		t.Fatal(err)
	}
	r := Run(nsSources(t, ns, "bridges: {br-w: {uplink: uplink0}}\n", sys, nil))
	want(t, one(t, r, "uplink-wireless", "uplink0"), Fail, "wireless (802.11)", "source MAC is not the station's own", "routed or NAT")
}

// TestUplinkManaged: NetworkManager (its per-device state file) or
// systemd-networkd (its per-link state file) managing the uplink.
func TestUplinkManaged(t *testing.T) {
	ns := uplinkNS(t)
	ls, err := HostLinks{NS: &ns.Handle}.Links()
	if err != nil {
		t.Fatal(err)
	}
	up, _ := linkByName(ls, "uplink0")
	idx := strconv.Itoa(up.Index)
	const cfg = "bridges: {br0: {uplink: uplink0}}\n"

	nm, nd := t.TempDir(), t.TempDir()
	m := &HostManagers{NMRunDir: nm, NetworkdLinksDir: nd}
	want(t, one(t, Run(nsSources(t, ns, cfg, "", m)), "uplink-manager", "uplink0"), OK, "not managed")

	writeHook(t, filepath.Join(nm, "devices", idx), "# NetworkManager device state\n[device]\nmanaged=true\nconnection-uuid=1f3e\n", 0o644)
	m = &HostManagers{NMRunDir: nm, NetworkdLinksDir: nd}
	want(t, one(t, Run(nsSources(t, ns, cfg, "", m)), "uplink-manager", "uplink0"), Warn,
		"managed by NetworkManager", "take the NIC out of the bridge", "nmcli device set uplink0 managed no")

	writeHook(t, filepath.Join(nm, "devices", idx), "[device]\nmanaged=false\n", 0o644)
	writeHook(t, filepath.Join(nd, idx), "# This is private data. Do not parse.\nADMIN_STATE=configured\nOPER_STATE=routable\nNETWORK_FILE=/etc/systemd/network/10-uplink.network\n", 0o644)
	m = &HostManagers{NMRunDir: nm, NetworkdLinksDir: nd}
	want(t, one(t, Run(nsSources(t, ns, cfg, "", m)), "uplink-manager", "uplink0"), Warn,
		"systemd-networkd (configured, /etc/systemd/network/10-uplink.network)", "Bridge=br0")

	writeHook(t, filepath.Join(nd, idx), "ADMIN_STATE=unmanaged\n", 0o644)
	m = &HostManagers{NMRunDir: nm, NetworkdLinksDir: nd}
	want(t, one(t, Run(nsSources(t, ns, cfg, "", m)), "uplink-manager", "uplink0"), OK)
}

// TestStrandedOnEnslavedUplink: an enslaved uplink whose addresses are
// gone but that still carries IPv6 routes (main table and table 100) and a
// permanent neighbour entry is reported, each named: the host's traffic
// through them leads nowhere.
func TestStrandedOnEnslavedUplink(t *testing.T) {
	ns := uplinkNS(t)
	ns.Script(t, `
		ip -6 route add default via 2001:db8:77::1 dev uplink0
		ip -6 route add 2001:db8:55::/64 via 2001:db8:77::1 dev uplink0 table 100
		ip link set uplink0 master br0
		ip addr flush dev uplink0 scope global
		ip neigh add 10.77.0.9 lladdr 52:54:00:aa:bb:09 nud permanent dev uplink0`)
	r := Run(nsSources(t, ns, "bridges: {br0: {uplink: uplink0, stp: true, forward_delay: 15}}\n", t.TempDir(), nil))
	f := one(t, r, "host-addresses", "uplink0")
	want(t, f, Fail, "route default via 2001:db8:77::1", "route 2001:db8:55::/64 via 2001:db8:77::1 table 100", "neighbour 10.77.0.9",
		"ip route replace … dev br0")
	if f.Fixable {
		t.Errorf("routes without their addresses are not something --fix can move: %+v", f)
	}
}

// TestStrandedRAStateOnEnslavedUplink: what an uplink learnt from router
// advertisements (a SLAAC address with its lifetime, a `proto ra` default
// route) left on it once enslaved is reported, and the handoff fixes it
// (it hands the RA role to the bridge).
func TestStrandedRAStateOnEnslavedUplink(t *testing.T) {
	ns := uplinkNS(t)
	ns.Script(t, `
		ip addr flush dev uplink0 scope global
		ip -6 addr add 2001:db8:1::5/64 dev uplink0 valid_lft 300 preferred_lft 300 nodad
		ip -6 route add default via fe80::1 dev uplink0 proto ra
		ip link set uplink0 master br0`)
	r := Run(nsSources(t, ns, "bridges: {br0: {uplink: uplink0, stp: true, forward_delay: 15}}\n", t.TempDir(), nil))
	f := one(t, r, "host-addresses", "uplink0")
	want(t, f, Fail, "address 2001:db8:1::5/64 (learnt from router advertisements", "route default via fe80::1 (learnt from", "router advertisements included")
	if !f.Fixable {
		t.Errorf("the handoff moves what the uplink learnt: want fixable: %+v", f)
	}
}

// TestBridgeIgnoresAdvertisements: a bridge that took over its uplink's
// SLAAC (it holds a learnt default route) but does not act on router
// advertisements — accept_ra 0, or 1 when the configuration turns IPv6
// forwarding on — is reported: nothing refreshes what it learnt.
func TestBridgeIgnoresAdvertisements(t *testing.T) {
	ns := uplinkNS(t)
	ns.Script(t, `
		ip link set uplink0 master br0
		ip addr flush dev uplink0 scope global
		ip -6 addr add 2001:db8:77::2/64 dev br0 nodad
		ip -6 route add default via fe80::1 dev br0 proto ra metric 1024 expires 1800
		sysctl -q -w net.ipv6.conf.br0.accept_ra=0`)
	y := "bridges: {br0: {uplink: uplink0, stp: true, forward_delay: 15}}\n"
	f := one(t, Run(nsSources(t, ns, y, t.TempDir(), nil)), "router-advertisements", "br0")
	want(t, f, Fail, "accept_ra 0", "route default via fe80::1 proto ra metric 1024", "nothing refreshes")
	if !f.Fixable {
		t.Errorf("the handoff makes the bridge accept advertisements again: want fixable: %+v", f)
	}
	ns.Run(t, "sysctl", "-q", "-w", "net.ipv6.conf.br0.accept_ra=1")
	want(t, one(t, Run(nsSources(t, ns, y, t.TempDir(), nil)), "router-advertisements", "br0"), OK)
	f = one(t, Run(nsSources(t, ns, y+"sysctl: {ipv6_forward: 1}\n", t.TempDir(), nil)), "router-advertisements", "br0")
	want(t, f, Fail, "accept_ra 1 (IPv6 forwarding 0, turned on by the configuration)")
}
