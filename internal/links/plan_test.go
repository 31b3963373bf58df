package links

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/virtbridge/virtbridge/internal/desired"
)

// Hand-written snapshots for the planner: an uplink eth0 (index 2) with a
// static address and a default route of each family, as a static host's.
var (
	eth0 = Link{Index: 2, Name: "eth0", Kind: "device", MAC: "52:54:00:aa:00:01", MTU: 1500, Up: true}
	br0  = Link{Index: 9, Name: "br0", Kind: "bridge", MAC: "52:54:00:aa:00:01", MTU: 1500, Up: true,
		Alias: ManagedAlias, MACPinned: true, PinKnown: true}
	static4 = Addr{ID: 0, Prefix: "10.77.0.2/24", Flags: ifaPermanent}
	static6 = Addr{ID: 1, Prefix: "2001:db8:77::2/64", IPv6: true, Flags: ifaPermanent}
	ll6     = Addr{ID: 2, Prefix: "fe80::1/64", IPv6: true, Scope: scopeLink, Flags: ifaPermanent}
	conn4   = Route{ID: 0, Leg: -1, Dst: "10.77.0.0/24", Table: tableMain, Protocol: protoKernel, Type: rtnUnicast, LinkIndex: 2}
	def4    = Route{ID: 1, Leg: -1, Gw: "10.77.0.1", Metric: 100, Table: tableMain, Protocol: protoBoot, Type: rtnUnicast, LinkIndex: 2}
	def6    = Route{ID: 2, Leg: -1, IPv6: true, Gw: "2001:db8:77::1", Metric: 100, Table: tableMain, Protocol: protoBoot, Type: rtnUnicast, LinkIndex: 2}
	gw4     = Neigh{ID: 0, IP: "10.77.0.1", MAC: "52:54:00:77:00:01", Resolved: true}
)

func staticHost() Snapshot {
	return Snapshot{Uplinks: []Link{eth0}, Addrs: []Addr{static4, static6, ll6}, Routes: []Route{conn4, def4, def6},
		Detail: true, Neighs: []Neigh{gw4}}
}

func steps(ss []Step) string {
	var b strings.Builder
	for _, s := range ss {
		b.WriteString(s.String() + "\n")
	}
	return b.String()
}

var upBr0 = desired.Bridge{Name: "br0", Uplink: "eth0", MoveAddresses: true}

// planCases are plans over staticHost() changed by s, with their steps.
var planCases = []struct {
	name string
	b    desired.Bridge
	s    func(*Snapshot)
	want string
}{{
	name: "new bridge on a static host: create, enslave, move in the measured order, probe the resolved gateway",
	b:    upBr0,
	want: `create br0: stp off, forward_delay 0, mac 52:54:00:aa:00:01
enslave eth0
add-addr br0: 10.77.0.2/24
add-addr br0: 2001:db8:77::2/64
add-route br0: default via 10.77.0.1 metric 100
add-route br0: default via 2001:db8:77::1 metric 100
del-route eth0: default via 2001:db8:77::1 metric 100
del-route eth0: default via 10.77.0.1 metric 100
del-addr eth0: 2001:db8:77::2/64
del-addr eth0: 10.77.0.2/24
verify eth0
take-ra br0
probe br0: 10.77.0.1
`,
}, {
	name: "ready bridge: nothing",
	b:    upBr0,
	s: func(s *Snapshot) {
		s.Bridge = &br0
		s.Uplinks[0].Master, s.Uplinks[0].MasterKind = "br0", "bridge"
		s.Addrs, s.Routes, s.Neighs, s.Detail = []Addr{ll6}, nil, nil, false
	},
	want: "take-ra br0\n",
}, {
	name: "NetworkManager's noprefixroute address: its proto kernel prefix route moves first",
	b:    desired.Bridge{Name: "br0", Uplink: "eth0", MoveAddresses: true, Manager: "kernel", ProbeTimeout: -1},
	s: func(s *Snapshot) {
		s.Addrs = []Addr{{Prefix: "10.88.0.104/24", Flags: ifaNoPrefixRoute, ValidLft: 120, PreferredLft: 120}}
		s.Routes = []Route{
			{ID: 0, Leg: -1, Gw: "10.88.0.1", Src: "10.88.0.104", Metric: 100, Table: tableMain, Protocol: 16, LinkIndex: 2},
			{ID: 1, Leg: -1, Dst: "10.88.0.0/24", Src: "10.88.0.104", Metric: 100, Table: tableMain, Protocol: protoKernel, LinkIndex: 2},
		}
	},
	want: `create br0: stp off, forward_delay 0, mac 52:54:00:aa:00:01
enslave eth0
add-addr br0: 10.88.0.104/24
add-route br0: 10.88.0.0/24 src 10.88.0.104 metric 100
add-route br0: default via 10.88.0.1 src 10.88.0.104 metric 100
del-route eth0: default via 10.88.0.1 src 10.88.0.104 metric 100
del-route eth0: 10.88.0.0/24 src 10.88.0.104 metric 100
del-addr eth0: 10.88.0.104/24
verify eth0
take-ra br0
`,
}, {
	name: "policy routing, multipath leg, permanent neighbour, rule",
	b:    desired.Bridge{Name: "br0", Uplink: "eth0", MoveAddresses: true, ProbeTarget: "10.77.0.254"},
	s: func(s *Snapshot) {
		s.Addrs = []Addr{static4}
		s.Routes = []Route{
			{ID: 0, Leg: -1, Gw: "10.2.0.1", Table: 100, Protocol: protoBoot, LinkIndex: 2},
			{ID: 1, Leg: -1, Dst: "10.9.0.0/24", Table: tableMain, Protocol: protoBoot,
				Legs: []Leg{{LinkIndex: 2, Link: "eth0", Gw: "10.77.0.1"}, {LinkIndex: 3, Link: "eth1", Gw: "10.66.0.1"}}},
		}
		s.Neighs = []Neigh{{ID: 0, IP: "10.77.0.9", MAC: "52:54:00:00:00:09", Permanent: true, Resolved: true}}
		s.Rules = []Rule{{ID: 4, Priority: 100, Iif: "eth0", Table: 100}}
	},
	want: `create br0: stp off, forward_delay 0, mac 52:54:00:aa:00:01
enslave eth0
add-addr br0: 10.77.0.2/24
add-route br0: default via 10.2.0.1 table 100
add-neigh br0: 10.77.0.9 lladdr 52:54:00:00:00:09
multipath br0: 10.9.0.0/24 nexthop via 10.77.0.1 dev eth0 nexthop via 10.66.0.1 dev eth1
move-rule br0: pref 100 iif eth0 lookup 100
del-route eth0: default via 10.2.0.1 table 100
del-neigh eth0: 10.77.0.9 lladdr 52:54:00:00:00:09
del-addr eth0: 10.77.0.2/24
verify eth0
take-ra br0
probe br0: 10.77.0.254
`,
}, {
	name: "someone else's bridge: STP off before the delay, MAC pinned, up, MTU, alias, notice",
	b:    desired.Bridge{Name: "br0", Uplink: "eth0", MTU: 9000},
	s: func(s *Snapshot) {
		s.Bridge = &Link{Index: 9, Name: "br0", Kind: "bridge", MAC: "02:00:00:00:00:99", MTU: 1500, STP: true, DelayCS: 1500, PinKnown: true}
		s.Ports = []Link{{Name: "veth9", Kind: "veth"}, {Name: "vnet0", Kind: "tuntap"}}
		s.Addrs, s.Routes = nil, nil
	},
	want: `set-opts br0: stp on -> stp off
set-opts br0: forward_delay 15 -> forward_delay 0
pin-mac br0: mac 02:00:00:00:00:99 -> mac 52:54:00:aa:00:01 (pinned)
up br0
enslave eth0
mtu br0: 9000 (keep)
alias br0
notice br0: others veth9 (veth)
`,
}, {
	name: "move_addresses false on an uplink without addresses, down",
	b:    desired.Bridge{Name: "br0", UplinkMAC: "52:54:00:AA:00:01"},
	s:    func(s *Snapshot) { s.Addrs, s.Uplinks[0].Up = []Addr{ll6}, false },
	want: "create br0: stp off, forward_delay 0, mac 52:54:00:aa:00:01\nenslave eth0\nup eth0\n",
}}

// TestPlan compares the steps of each plan with the text they must have.
func TestPlan(t *testing.T) {
	for _, tc := range planCases {
		t.Run(tc.name, func(t *testing.T) {
			s := staticHost()
			if tc.s != nil {
				tc.s(&s)
			}
			got, err := Plan(tc.b, s)
			if err != nil {
				t.Fatal(err)
			}
			if steps(got) != tc.want {
				t.Errorf("steps:\n%s\nwant:\n%s", steps(got), tc.want)
			}
		})
	}
}

// TestPlanRefusals: each refusal, with its one message, and no step.
func TestPlanRefusals(t *testing.T) {
	up := desired.Bridge{Name: "br0", Uplink: "eth0", MoveAddresses: true}
	byMAC := desired.Bridge{Name: "br0", UplinkMAC: "52:54:00:aa:00:01", MoveAddresses: true}
	for _, tc := range []struct {
		name string
		b    desired.Bridge
		s    func(*Snapshot)
		err  error
		want string
	}{{
		name: "not a bridge", b: up, err: ErrNotBridge,
		s:    func(s *Snapshot) { s.Bridge = &Link{Name: "br0", Kind: "veth"} },
		want: `bridge "br0": a link of that name exists and is a veth, not a bridge; rename or delete it (ip link del br0) or give the bridge another name in the configuration: not a bridge`,
	}, {
		name: "uplink missing", b: up, err: ErrUplinkMissing,
		s:    func(s *Snapshot) { s.Uplinks = nil },
		want: "uplink \"eth0\" of bridge \"br0\": no link named \"eth0\" in this network namespace; check `ip link` and the uplink: key in the configuration: uplink missing",
	}, {
		name: "uplink MAC missing", b: byMAC, err: ErrUplinkMissing,
		s:    func(s *Snapshot) { s.Uplinks = []Link{{Name: "br9", Kind: "bridge", MAC: "52:54:00:aa:00:01"}} },
		want: "uplink of bridge \"br0\": no link with MAC 52:54:00:aa:00:01 in this network namespace; check `ip link` and the uplink_mac: key in the configuration: uplink missing",
	}, {
		name: "uplink MAC ambiguous", b: byMAC, err: ErrUplinkAmbiguous,
		s: func(s *Snapshot) {
			s.Uplinks = append(s.Uplinks, Link{Name: "eth2", Kind: "device", MAC: "52:54:00:aa:00:01"})
		},
		want: `uplink of bridge "br0": MAC 52:54:00:aa:00:01 is carried by eth0 (device), eth2 (device); name the one to enslave with uplink: in the configuration: uplink ambiguous`,
	}, {
		name: "uplink_mac malformed", b: desired.Bridge{Name: "br0", UplinkMAC: "52:54"},
		want: `uplink_mac "52:54" of bridge "br0": address 52:54: invalid MAC address`,
	}, {
		name: "uplink in a bond", b: up, err: ErrUplinkBusy,
		s: func(s *Snapshot) { s.Uplinks[0].Master, s.Uplinks[0].MasterKind = "bond0", "bond" },
		want: `uplink "eth0" of bridge "br0" is already enslaved to "bond0", and a NIC has one master only; virtbridge does not take it away, ` +
			`as it may carry the host's own network: name "bond0", the bond, as the uplink of bridge "br0" in the configuration ` +
			`(a bond can be a bridge port); or give bridge "br0" another NIC: uplink in use`,
	}, {
		name: "uplink is a bridge", b: up, err: ErrUplinkBusy,
		s:    func(s *Snapshot) { s.Uplinks[0].Kind = "bridge" },
		want: `uplink "eth0" of bridge "br0" is itself a bridge, which cannot be enslaved to another bridge; name the NIC under it in the configuration: uplink in use`,
	}, {
		name: "wireless", b: up, err: ErrUplinkWireless,
		s:    func(s *Snapshot) { s.Uplinks[0].Wireless = true },
		want: `uplink "eth0" of bridge "br0" is a wireless (802.11) interface and cannot be bridged: ` + wirelessAdvice + `: uplink is wireless`,
	}, {
		name: "move_addresses false with addresses", b: desired.Bridge{Name: "br0", Uplink: "eth0"}, err: ErrUnmovable,
		want: `uplink "eth0" of bridge "br0" holds the host's addresses 10.77.0.2/24, 2001:db8:77::2/64, and move_addresses is false for this bridge: ` +
			`enslaved, the uplink would no longer carry them and the host would lose its network; set move_addresses: true ` +
			`(virtbridge then moves them to the bridge), or remove the addresses from "eth0" first: uplink routes cannot be moved`,
	}, {
		name: "routes through nexthop objects", b: up, err: ErrUnmovable,
		s: func(s *Snapshot) { s.Nexthops = []uint32{7} },
		want: `uplink "eth0" of bridge "br0" is used by nexthop objects [7] (ip nexthop), which virtbridge does not move; replace the routes ` +
			`using them with plain ones (ip route replace ... via GW dev eth0) or set move_addresses: false for this bridge in the configuration: uplink routes cannot be moved`,
	}, {
		name: "bad probe target", b: desired.Bridge{Name: "br0", Uplink: "eth0", MoveAddresses: true, ProbeTarget: "gw"},
		want: `probe_target "gw" of bridge "br0" is no IP address`,
	}} {
		t.Run(tc.name, func(t *testing.T) {
			s := staticHost()
			if tc.s != nil {
				tc.s(&s)
			}
			got, err := Plan(tc.b, s)
			if err == nil || err.Error() != tc.want || tc.err != nil && !errors.Is(err, tc.err) {
				t.Fatalf("Plan = %v\nwant %s (%v)", err, tc.want, tc.err)
			}
			if got != nil {
				t.Errorf("a refusal with steps: %s", steps(got))
			}
		})
	}
}

// TestPlanDynamicAddress: a lease is refused naming the address, its
// lifetime and the client, unless the manager is "kernel", which moves
// it as a static address (the Fake applies it without lifetime).
func TestPlanDynamicAddress(t *testing.T) {
	s := staticHost()
	s.Addrs[0] = Addr{Prefix: "10.77.0.2/24", ValidLft: 20, PreferredLft: 20}
	s.Clients = []string{"dhclient (pid 812)"}
	b := desired.Bridge{Name: "br0", Uplink: "eth0", MoveAddresses: true}
	_, err := Plan(b, s)
	if !errors.Is(err, ErrDynamicAddress) || !strings.Contains(err.Error(), "10.77.0.2/24") || !strings.Contains(err.Error(), "dhclient (pid 812)") {
		t.Fatalf("Plan = %v, want the lease refused naming the address and the client", err)
	}
	if !needClients(b, s) {
		t.Error("needClients = false with a lease to refuse")
	}
	b.Manager = "kernel"
	if needClients(b, s) {
		t.Error("needClients = true under manager: kernel")
	}
	if _, err := Plan(b, s); err != nil {
		t.Fatalf("manager: kernel: %v", err)
	}
	// manager: virtbridged: refused outside virtbridged (saying it must
	// run), moved in virtbridged (KeepsLeases), which keeps DHCPv4 leases
	// only: a DHCPv6 one beside it is still refused, alone.
	b.Manager = "virtbridged"
	if _, err := Plan(b, s); !errors.Is(err, ErrDynamicAddress) || !strings.Contains(err.Error(), "start virtbridged (systemctl start virtbridged") {
		t.Fatalf("manager: virtbridged outside virtbridged: Plan = %v, want the refusal saying virtbridged must run", err)
	}
	s.KeepsLeases = true
	if needClients(b, s) {
		t.Error("needClients = true for a DHCPv4 lease virtbridged keeps")
	}
	if _, err := Plan(b, s); err != nil {
		t.Fatalf("manager: virtbridged in virtbridged: %v", err)
	}
	s6 := s
	s6.Addrs = append(slices.Clone(s.Addrs), Addr{Prefix: "2001:db8:77::5/64", IPv6: true, ValidLft: 300, PreferredLft: 300})
	_, err = Plan(b, s6)
	if !errors.Is(err, ErrDynamicAddress) || !strings.Contains(err.Error(), "DHCPv4 leases only") ||
		!strings.Contains(err.Error(), "2001:db8:77::5/64") || strings.Contains(err.Error(), "10.77.0.2/24") {
		t.Fatalf("manager: virtbridged with a DHCPv6 lease: Plan = %v, want that lease refused alone", err)
	}
	b.Manager = "kernel"
	f := NewFake()
	f.AddLink("eth0", "device", "52:54:00:aa:00:01", "", "10.77.0.2/24 valid_lft 20 preferred_lft 20")
	if _, err := f.EnsureBridge(t.Context(), b, nil); err != nil {
		t.Fatal(err)
	}
	if got := f.Link("br0").Addrs; len(got) != 1 || got[0] != "10.77.0.2/24" {
		t.Errorf("the bridge holds %q, want the address without lifetime", got)
	}
}

// TestNeedDetail: the steady path (a ready bridge) reads no more than the
// uplink's addresses and routes; anything movable, or an uplink not yet
// in the bridge, asks for the rest.
func TestNeedDetail(t *testing.T) {
	b := desired.Bridge{Name: "br0", Uplink: "eth0", MoveAddresses: true}
	s := staticHost()
	if !needDetail(b, s) {
		t.Error("a new bridge needs the detail")
	}
	s.Bridge = &br0
	s.Uplinks[0].Master = "br0"
	s.Addrs, s.Routes = []Addr{ll6}, nil
	if needDetail(b, s) {
		t.Error("a ready bridge reads the detail")
	}
	s.Routes = []Route{def4}
	if !needDetail(b, s) {
		t.Error("a route left on the uplink does not read the detail")
	}
}

// TestPlanDHCPv6LeasePrefixRoute: under manager: kernel a DHCPv6 lease
// moves as a static address, and its prefix route with it (the kernel
// keeps that route on the uplink after the address left: it is not
// re-made there), then the bridge takes the RA role.
func TestPlanDHCPv6LeasePrefixRoute(t *testing.T) {
	s := Snapshot{Uplinks: []Link{eth0}, Detail: true,
		Addrs:  []Addr{{Prefix: "2001:db8:1::99/128", IPv6: true, ValidLft: 3600, PreferredLft: 3600}},
		Routes: []Route{{Leg: -1, IPv6: true, Dst: "2001:db8:1::99/128", Metric: 256, Table: tableMain, Protocol: protoKernel, LinkIndex: 2}}}
	b := desired.Bridge{Name: "br0", Uplink: "eth0", MoveAddresses: true, Manager: "kernel", ProbeTimeout: -1}
	got, err := Plan(b, s)
	if err != nil {
		t.Fatal(err)
	}
	want := `create br0: stp off, forward_delay 0, mac 52:54:00:aa:00:01
enslave eth0
add-addr br0: 2001:db8:1::99/128
add-route br0: 2001:db8:1::99/128 metric 256
del-route eth0: 2001:db8:1::99/128 metric 256
del-addr eth0: 2001:db8:1::99/128
verify eth0
take-ra br0
`
	if steps(got) != want {
		t.Errorf("steps:\n%s\nwant:\n%s", steps(got), want)
	}
}
