package doctor

import (
	"testing"
)

// TestUplinkAndBridgeLeases: a DHCP lease on an uplink about to be moved is
// a failure naming the address, its lifetime, the client and the ifupdown
// fix (a warning with manager: kernel, which moves it as static); a lease on
// the bridge that nobody renews there is a failure (it expires, and the
// host loses its network), one a client renews is fine.
func TestUplinkAndBridgeLeases(t *testing.T) {
	lease := []string{"10.88.0.104/24 (valid for 20 s more)"}
	for _, tc := range []struct {
		name, cfg     string
		eth0, br0     Link
		check, object string
		status        Status
		says          []string
	}{
		{"lease on the uplink", "bridges: {br0: {uplink: eth0}}\n",
			Link{Leases: lease, DHCPClients: []string{"dhclient (pid 812)"}}, Link{},
			"uplink-owner", "eth0", Fail, []string{"10.88.0.104/24 (valid for 20 s more)", "dhclient (pid 812)", "iface br0 inet dhcp", "bridge_ports eth0"}},
		{"lease on the uplink, manager kernel", "bridges: {br0: {uplink: eth0, manager: kernel}}\n",
			Link{Leases: lease}, Link{},
			"uplink-owner", "eth0", Warn, []string{"no", "static address", "drop manager: kernel"}},
		{"lease on the bridge, nobody renews it", "bridges: {br0: {uplink: eth0}}\n",
			Link{Master: "br0"}, Link{Leases: lease},
			"bridge-lease", "br0", Fail, []string{"10.88.0.104/24", "no DHCP client", "valid_lft forever"}},
		{"lease on the uplink, manager virtbridged", "bridges: {br0: {uplink: eth0, manager: virtbridged}}\n",
			Link{Leases: lease, DHCPClients: []string{"dhclient (pid 812)"}}, Link{},
			"uplink-owner", "eth0", Warn, []string{"dhclient (pid 812)", "keeps the lease itself", "systemctl start virtbridged"}},
		{"lease on the bridge, virtbridged keeps it", "bridges: {br0: {uplink: eth0, manager: virtbridged}}\n",
			Link{Master: "br0"}, Link{Leases: lease},
			"bridge-lease", "br0", OK, []string{"renewed by virtbridged (pid 77) keeps lease 10.88.0.104/24"}},
		{"lease on the bridge, virtbridged not running", "bridges: {br0: {uplink: eth0, manager: virtbridged}}\n",
			Link{Master: "br0"}, Link{Leases: []string{"10.88.0.105/24 (valid for 20 s more)"}},
			"bridge-lease", "br0", Fail, []string{"no DHCP client", "start virtbridged"}},
		{"lease on the bridge, renewed", "bridges: {br0: {uplink: eth0}}\n",
			Link{Master: "br0"}, Link{Leases: lease, DHCPClients: []string{"dhclient (pid 9)"}},
			"bridge-lease", "br0", OK, []string{"renewed by dhclient (pid 9)"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			eth0, br0 := tc.eth0, tc.br0
			eth0.Name, eth0.Index, eth0.Kind, eth0.MAC, eth0.Up, eth0.MTU = "eth0", 2, "device", "52:54:00:00:00:01", true, 1500
			br0.Name, br0.Index, br0.Kind, br0.MAC, br0.Up, br0.MTU = "br0", 4, "bridge", "52:54:00:00:00:01", true, 1500
			keeper := func(bridge string) (string, bool) {
				// virtbridged keeps 10.88.0.104 only.
				return "virtbridged (pid 77) keeps lease 10.88.0.104/24", bridge == "br0" && br0.Leases[0] == lease[0]
			}
			r := Run(Sources{ConfigPath: "t.yaml", Config: mustConfig(t, tc.cfg), Links: fakeLinks{eth0, br0}, Keeper: keeper})
			want(t, one(t, r, tc.check, tc.object), tc.status, tc.says...)
		})
	}
}
