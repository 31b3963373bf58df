package links

import (
	"errors"
	"strings"
	"testing"

	"github.com/virtbridge/virtbridge/internal/desired"
	"github.com/virtbridge/virtbridge/internal/owner"
)

var (
	byNM       = &owner.Owner{Kind: owner.NetworkManager, Uplink: "eth0", Detail: `NetworkManager profile "eth0" is active on "eth0"`}
	byNetworkd = &owner.Owner{Kind: owner.Networkd, Uplink: "eth0", Detail: "configured"}
	byNobody   = &owner.Owner{Kind: owner.Kernel, Uplink: "eth0"}
)

// dhcpHost is staticHost() as NetworkManager leaves it: a DHCP lease with
// noprefixroute and NM's own prefix route, the default route, the
// gateway not resolved yet.
func dhcpHost() Snapshot {
	s := staticHost()
	s.Addrs = []Addr{{ID: 0, Prefix: "10.77.0.2/24", Flags: ifaNoPrefixRoute, ValidLft: 120, PreferredLft: 120}, ll6}
	s.Routes = []Route{{ID: 0, Leg: -1, Dst: "10.77.0.0/24", Src: "10.77.0.2", Metric: 100, Table: tableMain, Protocol: protoKernel, Type: rtnUnicast, LinkIndex: 2},
		{ID: 1, Leg: -1, Gw: "10.77.0.1", Metric: 100, Table: tableMain, Protocol: 16, Type: rtnUnicast, LinkIndex: 2}}
	s.Neighs = nil
	return s
}

// managersBridge is the bridge br0 as a manager made it (no virtbridge
// alias), the uplink its port and bare.
func managersBridge(s *Snapshot) {
	br := br0
	br.Alias = ""
	s.Bridge = &br
	s.Uplinks[0].Master, s.Uplinks[0].MasterKind, s.Uplinks[0].MasterIndex = "br0", "bridge", 9
	s.Addrs = []Addr{ll6}
	s.Routes = nil
	s.Detail = false
}

// TestPlanOwner: with the owner in the snapshot, the planner refuses an
// uplink it cannot take with the kernel path's very message, whoever
// owns it, and otherwise gives one handover step to the manager owning
// the uplink, nothing on its ready bridge, or the refusal of a manager:
// setting its manager does not back.
func TestPlanOwner(t *testing.T) {
	for _, tc := range []struct {
		name  string
		b     desired.Bridge
		owner *owner.Owner
		s     func(*Snapshot)
		err   error  // a refusal, with the kernel path's message when want is ""
		want  string // the steps, or the refusal's message
	}{{
		name: "NM-owned wireless uplink: the kernel path's refusal", b: upBr0, owner: byNM, err: ErrUplinkWireless,
		s: func(s *Snapshot) { s.Uplinks[0].Wireless = true },
	}, {
		name: "NM-owned uplink in a bond: the kernel path's refusal", b: upBr0, owner: byNM, err: ErrUplinkBusy,
		s: func(s *Snapshot) { s.Uplinks[0].Master, s.Uplinks[0].MasterKind = "bond0", "bond" },
	}, {
		name: "networkd-owned uplink that is a bridge: the kernel path's refusal", b: upBr0, owner: byNetworkd, err: ErrUplinkBusy,
		s: func(s *Snapshot) { s.Uplinks[0].Kind = "bridge" },
	}, {
		name: "NM-owned uplink, a veth named like the bridge: the kernel path's refusal", b: upBr0, owner: byNM, err: ErrNotBridge,
		s: func(s *Snapshot) { s.Bridge = &Link{Name: "br0", Kind: "veth"} },
	}, {
		name: "NM-owned uplink by an ambiguous MAC: the kernel path's refusal", owner: byNM, err: ErrUplinkAmbiguous,
		b: desired.Bridge{Name: "br0", UplinkMAC: "52:54:00:aa:00:01", MoveAddresses: true},
		s: func(s *Snapshot) {
			s.Uplinks = append(s.Uplinks, Link{Name: "eth2", Kind: "device", MAC: "52:54:00:aa:00:01"})
		},
	}, {
		name: "networkd-owned uplink used by nexthop objects: the kernel path's refusal", b: upBr0, owner: byNetworkd, err: ErrUnmovable,
		s: func(s *Snapshot) { s.Nexthops = []uint32{7} },
	}, {
		name: "NM-owned DHCP uplink: one handover, the lease is NM's to keep, its gateway probed", b: upBr0, owner: byNM,
		s:    func(s *Snapshot) { *s = dhcpHost() },
		want: "handover br0: networkmanager, uplink eth0 (mac 52:54:00:aa:00:01), stp off, forward_delay 0, probe 10.77.0.1\n",
	}, {
		name: "networkd-owned uplink found by MAC, with stp, mtu and a probe target", owner: byNetworkd,
		b: desired.Bridge{Name: "br0", UplinkMAC: "52:54:00:aa:00:01", MoveAddresses: true, STP: true, ForwardDelay: 4, MTU: 1400,
			ProbeTarget: "10.77.0.254"},
		want: "handover br0: networkd, uplink eth0 (mac 52:54:00:aa:00:01), stp on, forward_delay 4, mtu 1400, probe 10.77.0.254\n",
	}, {
		name: "NM-owned uplink, probe_timeout negative: no probe", owner: byNM,
		b:    desired.Bridge{Name: "br0", Uplink: "eth0", MoveAddresses: true, ProbeTimeout: -1},
		want: "handover br0: networkmanager, uplink eth0 (mac 52:54:00:aa:00:01), stp off, forward_delay 0\n",
	}, {
		name: "NM's ready bridge: no step", b: upBr0, owner: byNM, s: managersBridge,
	}, {
		name: "NM's bridge, mtu changed in the configuration: the handover re-applies it (no route left on the uplink to probe)", owner: byNM, s: managersBridge,
		b:    desired.Bridge{Name: "br0", Uplink: "eth0", MoveAddresses: true, MTU: 1400},
		want: "handover br0: networkmanager, uplink eth0 (mac 52:54:00:aa:00:01), stp off, forward_delay 0, mtu 1400\n",
	}, {
		name: "networkd's bridge, stp turned on: the handover re-applies it", owner: byNetworkd, s: managersBridge,
		b:    desired.Bridge{Name: "br0", Uplink: "eth0", MoveAddresses: true, STP: true, ForwardDelay: 4},
		want: "handover br0: networkd, uplink eth0 (mac 52:54:00:aa:00:01), stp on, forward_delay 4\n",
	}, {
		name: "manager: networkmanager, nobody manages the uplink: refused", owner: byNobody, err: ErrNotOwner,
		b: desired.Bridge{Name: "br0", Uplink: "eth0", MoveAddresses: true, Manager: "networkmanager"},
		want: `bridge "br0": the configuration says manager: networkmanager, but NetworkManager does not manage uplink "eth0"; ` +
			`set manager: auto (or kernel) for this bridge, or let NetworkManager manage eth0: the configured manager does not manage the uplink`,
	}, {
		name: "manager: networkd, NetworkManager manages the uplink: refused", owner: byNM, err: ErrNotOwner,
		b: desired.Bridge{Name: "br0", Uplink: "eth0", MoveAddresses: true, Manager: "networkd"},
		want: `bridge "br0": the configuration says manager: networkd, but systemd-networkd does not manage uplink "eth0"; ` +
			`set manager: auto (or kernel) for this bridge, or let systemd-networkd manage eth0: the configured manager does not manage the uplink`,
	}} {
		t.Run(tc.name, func(t *testing.T) {
			s := staticHost()
			if tc.s != nil {
				tc.s(&s)
			}
			s.Owner = tc.owner
			got, err := Plan(tc.b, s)
			if tc.err == nil {
				if err != nil || steps(got) != tc.want {
					t.Fatalf("Plan = %v\n%s\nwant\n%s", err, steps(got), tc.want)
				}
				return
			}
			want := tc.want
			if want == "" {
				s.Owner = nil
				_, kerr := Plan(tc.b, s)
				if kerr == nil {
					t.Fatal("the kernel path does not refuse this snapshot")
				}
				want = kerr.Error()
			}
			if err == nil || err.Error() != want || !errors.Is(err, tc.err) || got != nil {
				t.Fatalf("Plan = %v, %s\nwant the refusal %s (%v)", err, steps(got), want, tc.err)
			}
		})
	}
}

// TestPlanOwnerKernel: an uplink nobody manages (the owner asked) is the
// kernel path's: the very steps of a snapshot without owner.
func TestPlanOwnerKernel(t *testing.T) {
	s := staticHost()
	kernel, err := Plan(upBr0, s)
	if err != nil {
		t.Fatal(err)
	}
	s.Owner = byNobody
	got, err := Plan(upBr0, s)
	if err != nil || steps(got) != steps(kernel) || strings.Contains(steps(got), "handover") {
		t.Fatalf("Plan = %v\n%s\nwant the kernel path's\n%s", err, steps(got), steps(kernel))
	}
}

// TestNeedsOwner: the owner is asked unless the kernel path already made
// the bridge ready, or the planner refuses the uplink whoever owns it.
func TestNeedsOwner(t *testing.T) {
	ready := func(s *Snapshot) {
		managersBridge(s)
		s.Bridge.Alias = ManagedAlias
	}
	for _, tc := range []struct {
		name   string
		b      desired.Bridge
		s      func(*Snapshot)
		uplink string
		need   bool
	}{
		{"a bridge to make", upBr0, nil, "eth0", true},
		{"the kernel path's ready bridge", upBr0, ready, "eth0", false},
		{"the kernel path's bridge, an address back on the uplink", upBr0, func(s *Snapshot) {
			ready(s)
			s.Addrs = append(s.Addrs, static4)
		}, "eth0", true},
		{"a manager's bridge (no virtbridge alias)", upBr0, managersBridge, "eth0", true},
		{"move_addresses: false", desired.Bridge{Name: "br0", Uplink: "eth0"}, nil, "eth0", false},
		{"an uplink in a bond: refused whoever owns it", upBr0, func(s *Snapshot) { s.Uplinks[0].Master = "bond0" }, "", false},
		{"no uplink", upBr0, func(s *Snapshot) { s.Uplinks = nil }, "", false},
	} {
		s := staticHost()
		if tc.s != nil {
			tc.s(&s)
		}
		if up, need := NeedsOwner(tc.b, s); up != tc.uplink || need != tc.need {
			t.Errorf("%s: NeedsOwner = %q, %v; want %q, %v", tc.name, up, need, tc.uplink, tc.need)
		}
	}
}
