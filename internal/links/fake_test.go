package links

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/virtbridge/virtbridge/internal/change"
	"github.com/virtbridge/virtbridge/internal/desired"
	"github.com/virtbridge/virtbridge/internal/revert"
)

// host is a Fake with an uplink eth0 holding the host's addresses and
// default routes, and a spare device eth1.
func host() *Fake {
	f := NewFake()
	f.AddLink("eth0", "device", "52:54:00:aa:00:01", "", "10.77.0.2/24", "2001:db8:77::2/64", "fe80::1/64")
	f.AddRoute("eth0", "default via 10.77.0.1 metric 100")
	f.AddRoute("eth0", "default via 2001:db8:77::1 metric 100")
	f.AddLink("eth1", "device", "52:54:00:aa:00:02", "")
	return f
}

func text(cs []change.Change) string {
	var b strings.Builder
	for _, c := range cs {
		b.WriteString(c.String() + "\n")
	}
	return b.String()
}

// fakeBridgeCases are EnsureBridge runs on host(), with the state and the
// changes they must give.
var fakeBridgeCases = []struct {
	name    string
	seed    func(*Fake)
	b       desired.Bridge
	state   string
	changes string
}{{
	name: "new bridge, uplink, move",
	b:    desired.Bridge{Name: "br0", Uplink: "eth0", MoveAddresses: true},
	state: `br0 bridge mac=52:54:00:aa:00:01 master=- mtu=1500 up stp=off delay=0 pinned alias="managed by virtbridge" addrs=[10.77.0.2/24 2001:db8:77::2/64] routes=[default via 10.77.0.1 metric 100; default via 2001:db8:77::1 metric 100]
eth0 device mac=52:54:00:aa:00:01 master=br0 mtu=1500 up alias="" addrs=[fe80::1/64] routes=[]
eth1 device mac=52:54:00:aa:00:02 master=- mtu=1500 up alias="" addrs=[] routes=[]
`,
	changes: `bridge-created br0: "" -> "stp off, forward_delay 0, mac 52:54:00:aa:00:01, up"
uplink-enslaved eth0: "" -> "br0"
route-moved default via 2001:db8:77::1 metric 100: "eth0" -> "br0"
route-moved default via 10.77.0.1 metric 100: "eth0" -> "br0"
address-moved 2001:db8:77::2/64: "eth0" -> "br0"
address-moved 10.77.0.2/24: "eth0" -> "br0"
`,
}, {
	name: "by MAC, down uplink, addresses kept, MTU",
	seed: func(f *Fake) { f.Link("eth1").Up = false },
	b:    desired.Bridge{Name: "br1", UplinkMAC: "52:54:00:AA:00:02", STP: true, ForwardDelay: 4, MTU: 9000},
	state: `br1 bridge mac=52:54:00:aa:00:02 master=- mtu=9000 up stp=on delay=4 pinned alias="managed by virtbridge" addrs=[] routes=[]
eth0 device mac=52:54:00:aa:00:01 master=- mtu=1500 up alias="" addrs=[10.77.0.2/24 2001:db8:77::2/64 fe80::1/64] routes=[default via 10.77.0.1 metric 100; default via 2001:db8:77::1 metric 100]
eth1 device mac=52:54:00:aa:00:02 master=br1 mtu=1500 up alias="" addrs=[] routes=[]
`,
	changes: `bridge-created br1: "" -> "stp on, forward_delay 4, mac 52:54:00:aa:00:02, up"
uplink-enslaved eth1: "" -> "br1"
uplink-enslaved eth1: "down" -> "up"
bridge-updated br1: "mtu 1500" -> "mtu 9000"
`,
}, {
	name: "existing bridge re-applied",
	seed: func(f *Fake) {
		br := f.AddLink("br0", "bridge", "02:00:00:00:00:99", "")
		br.STP, br.ForwardDelay, br.MTU, br.Up = true, 10, 1400, false
	},
	b: desired.Bridge{Name: "br0", MTU: 1500},
	state: `br0 bridge mac=02:00:00:00:00:99 master=- mtu=1500 up stp=off delay=0 pinned alias="managed by virtbridge" addrs=[] routes=[]
eth0 device mac=52:54:00:aa:00:01 master=- mtu=1500 up alias="" addrs=[10.77.0.2/24 2001:db8:77::2/64 fe80::1/64] routes=[default via 10.77.0.1 metric 100; default via 2001:db8:77::1 metric 100]
eth1 device mac=52:54:00:aa:00:02 master=- mtu=1500 up alias="" addrs=[] routes=[]
`,
	changes: `bridge-updated br0: "stp on" -> "stp off"
bridge-updated br0: "forward_delay 10" -> "forward_delay 0"
bridge-updated br0: "mac 02:00:00:00:00:99 (not pinned: follows the ports)" -> "mac 02:00:00:00:00:99 (pinned)"
bridge-updated br0: "down" -> "up"
bridge-updated br0: "mtu 1400" -> "mtu 1500"
alias-set br0: "" -> "managed by virtbridge"
foreign-bridge-changed br0: "" -> "bridge \"br0\" was made by someone else (its alias was not \"managed by virtbridge\"); virtbridge manages it as the configuration says and changed: stp on -> stp off; forward_delay 10 -> forward_delay 0; mac 02:00:00:00:00:99 (not pinned: follows the ports) -> mac 02:00:00:00:00:99 (pinned); down -> up; mtu 1400 -> mtu 1500; alias \"managed by virtbridge\" set"
`,
}, {
	name: "existing bridge takes the uplink's MAC",
	seed: func(f *Fake) { f.AddLink("br0", "bridge", "02:00:00:00:00:99", "").ForwardDelay = 0 },
	b:    desired.Bridge{Name: "br0", Uplink: "eth1"},
	state: `br0 bridge mac=52:54:00:aa:00:02 master=- mtu=1500 up stp=off delay=0 pinned alias="managed by virtbridge" addrs=[] routes=[]
eth0 device mac=52:54:00:aa:00:01 master=- mtu=1500 up alias="" addrs=[10.77.0.2/24 2001:db8:77::2/64 fe80::1/64] routes=[default via 10.77.0.1 metric 100; default via 2001:db8:77::1 metric 100]
eth1 device mac=52:54:00:aa:00:02 master=br0 mtu=1500 up alias="" addrs=[] routes=[]
`,
	changes: `bridge-updated br0: "mac 02:00:00:00:00:99" -> "mac 52:54:00:aa:00:02 (pinned)"
uplink-enslaved eth1: "" -> "br0"
alias-set br0: "" -> "managed by virtbridge"
foreign-bridge-changed br0: "" -> "bridge \"br0\" was made by someone else (its alias was not \"managed by virtbridge\"); virtbridge manages it as the configuration says and changed: mac 02:00:00:00:00:99 -> mac 52:54:00:aa:00:02 (pinned); uplink eth1 enslaved; alias \"managed by virtbridge\" set"
`,
}, {
	name: "foreign bridge with an alias of its own",
	seed: func(f *Fake) {
		br := f.AddLink("br0", "bridge", "02:00:00:00:00:99", "")
		br.ForwardDelay, br.MACPinned, br.Alias = 0, true, "rack 3 uplink"
	},
	b: desired.Bridge{Name: "br0", MTU: 9000},
	state: `br0 bridge mac=02:00:00:00:00:99 master=- mtu=9000 up stp=off delay=0 pinned alias="rack 3 uplink" addrs=[] routes=[]
eth0 device mac=52:54:00:aa:00:01 master=- mtu=1500 up alias="" addrs=[10.77.0.2/24 2001:db8:77::2/64 fe80::1/64] routes=[default via 10.77.0.1 metric 100; default via 2001:db8:77::1 metric 100]
eth1 device mac=52:54:00:aa:00:02 master=- mtu=1500 up alias="" addrs=[] routes=[]
`,
	changes: `bridge-updated br0: "mtu 1500" -> "mtu 9000"
foreign-bridge-changed br0: "" -> "bridge \"br0\" was made by someone else (its alias was not \"managed by virtbridge\"); virtbridge manages it as the configuration says and changed: mtu 1500 -> mtu 9000"
`,
}, {
	name: "foreign bridge with another port",
	seed: func(f *Fake) {
		f.AddLink("br0", "bridge", "02:00:00:00:00:99", "").STP = true
		f.AddLink("veth9", "veth", "02:00:00:00:00:98", "br0")
		f.AddLink("vnet0", "tuntap", "fe:54:00:00:00:01", "br0")
	},
	b: desired.Bridge{Name: "br0", Uplink: "eth1"},
	state: `br0 bridge mac=52:54:00:aa:00:02 master=- mtu=1500 up stp=off delay=0 pinned alias="managed by virtbridge" addrs=[] routes=[]
eth0 device mac=52:54:00:aa:00:01 master=- mtu=1500 up alias="" addrs=[10.77.0.2/24 2001:db8:77::2/64 fe80::1/64] routes=[default via 10.77.0.1 metric 100; default via 2001:db8:77::1 metric 100]
eth1 device mac=52:54:00:aa:00:02 master=br0 mtu=1500 up alias="" addrs=[] routes=[]
veth9 veth mac=02:00:00:00:00:98 master=br0 mtu=1500 up alias="" addrs=[] routes=[]
vnet0 tuntap mac=fe:54:00:00:00:01 master=br0 mtu=1500 up alias="" addrs=[] routes=[]
`,
	changes: `bridge-updated br0: "stp on" -> "stp off"
bridge-updated br0: "forward_delay 15" -> "forward_delay 0"
bridge-updated br0: "mac 02:00:00:00:00:99" -> "mac 52:54:00:aa:00:02 (pinned)"
uplink-enslaved eth1: "" -> "br0"
alias-set br0: "" -> "managed by virtbridge"
foreign-bridge-changed br0: "" -> "bridge \"br0\" was made by someone else (its alias was not \"managed by virtbridge\"); virtbridge manages it as the configuration says and changed: stp on -> stp off; forward_delay 15 -> forward_delay 0; mac 02:00:00:00:00:99 -> mac 52:54:00:aa:00:02 (pinned); uplink eth1 enslaved; alias \"managed by virtbridge\" set; its ports veth9 (veth) are neither its uplink nor VM taps, and now forward with these settings: check that they belong on this bridge"
`,
}}

func TestFakeEnsureBridge(t *testing.T) {
	for _, tc := range fakeBridgeCases {
		t.Run(tc.name, func(t *testing.T) {
			f := host()
			if tc.seed != nil {
				tc.seed(f)
			}
			before := f.String()
			var rv revert.Reverter
			cs, err := f.EnsureBridge(context.Background(), tc.b, &rv)
			if err != nil {
				t.Fatal(err)
			}
			if got := f.String(); got != tc.state {
				t.Errorf("state:\n%s\nwant:\n%s", got, tc.state)
			}
			if got := text(cs); got != tc.changes {
				t.Errorf("changes:\n%s\nwant:\n%s", got, tc.changes)
			}
			// Twice: nothing more to do.
			var rv2 revert.Reverter
			if cs, err := f.EnsureBridge(context.Background(), tc.b, &rv2); err != nil || len(cs) != 0 || rv2.Len() != 0 {
				t.Errorf("second EnsureBridge = %v, %v", cs, err)
			}
			if got := f.String(); got != tc.state {
				t.Errorf("state after the second run:\n%s", got)
			}
			// Undo: back to the start (pins included, unlike the kernel).
			if err := rv.Fail(); err != nil {
				t.Fatal(err)
			}
			if got := f.String(); got != before {
				t.Errorf("state after undo:\n%s\nwant:\n%s", got, before)
			}
		})
	}
}

func TestFakeRefusals(t *testing.T) {
	for _, tc := range []struct {
		name string
		seed func(*Fake)
		b    desired.Bridge
		err  error
		word string
	}{
		{"missing uplink", nil, desired.Bridge{Name: "br0", Uplink: "eth9"}, ErrUplinkMissing, `"eth9"`},
		{"missing uplink MAC", nil, desired.Bridge{Name: "br0", UplinkMAC: "52:54:00:00:00:99"}, ErrUplinkMissing, "52:54:00:00:00:99"},
		{"uplink in another bridge", func(f *Fake) {
			f.AddLink("br-other", "bridge", "02:00:00:00:00:98", "")
			f.Link("eth0").Master = "br-other"
		}, desired.Bridge{Name: "br0", Uplink: "eth0"}, ErrUplinkBusy, `"br-other"`},
		{"uplink in a bond", func(f *Fake) { f.Link("eth0").Master = "bond0" },
			desired.Bridge{Name: "br0", Uplink: "eth0"}, ErrUplinkBusy, `"bond0"`},
		{"non-bridge named like the bridge", func(f *Fake) { f.AddLink("br0", "veth", "02:00:00:00:00:97", "") },
			desired.Bridge{Name: "br0", Uplink: "eth0"}, ErrNotBridge, "veth"},
		{"wireless", func(f *Fake) { f.AddLink("wlan0", "wireless", "02:00:00:00:00:96", "") },
			desired.Bridge{Name: "br0", Uplink: "wlan0"}, ErrUplinkWireless, wirelessAdvice},
		{"ambiguous MAC", func(f *Fake) { f.AddLink("eth2", "device", "52:54:00:aa:00:01", "") },
			desired.Bridge{Name: "br0", UplinkMAC: "52:54:00:aa:00:01"}, ErrUplinkAmbiguous, "eth0 (device), eth2 (device)"},
		{"uplink is a bridge", func(f *Fake) { f.AddLink("br-other", "bridge", "02:00:00:00:00:98", "") },
			desired.Bridge{Name: "br0", Uplink: "br-other"}, ErrUplinkBusy, "itself a bridge"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := host()
			if tc.seed != nil {
				tc.seed(f)
			}
			before := f.String()
			var rv revert.Reverter
			cs, err := f.EnsureBridge(context.Background(), tc.b, &rv)
			if !errors.Is(err, tc.err) || !strings.Contains(err.Error(), tc.word) {
				t.Fatalf("EnsureBridge = %v, want %v naming %s", err, tc.err, tc.word)
			}
			if len(cs) != 0 || rv.Len() != 0 || f.String() != before {
				t.Errorf("refusal changed something: %v\n%s", cs, f.String())
			}
		})
	}
}

// TestFakeUplinkMACSkipsCarriers: a VLAN and a bridge wearing the NIC's MAC
// do not make uplink_mac ambiguous.
func TestFakeUplinkMACSkipsCarriers(t *testing.T) {
	f := host()
	f.AddLink("eth1.5", "vlan", "52:54:00:aa:00:02", "")
	f.AddLink("br-x", "bridge", "52:54:00:aa:00:02", "")
	var rv revert.Reverter
	if _, err := f.EnsureBridge(context.Background(), desired.Bridge{Name: "br0", UplinkMAC: "52:54:00:aa:00:02"}, &rv); err != nil {
		t.Fatal(err)
	}
	if f.Link("eth1").Master != "br0" {
		t.Errorf("eth1 not enslaved:\n%s", f)
	}
}

// TestFakeFailures injects a failure at each step and checks the undo
// restores the state.
func TestFakeFailures(t *testing.T) {
	for _, step := range []string{"bridge-create", "bridge-update", "link-up", "enslave",
		"address-add", "route-add", "route-del", "address-del"} {
		for _, existing := range []bool{false, true} {
			t.Run(step+map[bool]string{true: "/existing"}[existing], func(t *testing.T) {
				f := host()
				f.Link("eth0").Up = false
				if existing {
					f.AddLink("br0", "bridge", "02:00:00:00:00:99", "").Up = false
				}
				before := f.String()
				f.FailOn(step)
				var rv revert.Reverter
				_, err := f.EnsureBridge(context.Background(), desired.Bridge{Name: "br0", Uplink: "eth0", MTU: 9000, MoveAddresses: true}, &rv)
				if existing && step == "bridge-create" {
					if err != nil {
						t.Fatalf("EnsureBridge: %v", err)
					}
					return
				}
				if !errors.Is(err, ErrInjected) {
					t.Fatalf("EnsureBridge = %v, want the injected failure", err)
				}
				if err := rv.Fail(); err != nil {
					t.Fatal(err)
				}
				if got := f.String(); got != before {
					t.Errorf("after undo:\n%s\nwant:\n%s", got, before)
				}
			})
		}
	}
}

func TestFakeEnsurePort(t *testing.T) {
	f := host()
	f.AddLink("br0", "bridge", "02:00:00:00:00:01", "").MACPinned = true
	f.AddLink("br-other", "bridge", "02:00:00:00:00:02", "").MACPinned = true
	f.AddLink("vnet0", "tuntap", "fe:54:00:00:00:10", "")
	f.AddLink("vnet1", "tuntap", "fe:54:00:00:00:11", "br-other").Alias = "old"
	before := f.String()
	var rv revert.Reverter
	for i := range 2 {
		cs0, err := f.EnsurePort(context.Background(), desired.Port{Tap: "vnet0", MAC: "52:54:00:00:00:10", Bridge: "br0"}, "vm1/net0", &rv)
		if err != nil {
			t.Fatal(err)
		}
		cs1, err := f.EnsurePort(context.Background(), desired.Port{Tap: "vnet1", MAC: "52:54:00:00:00:11", Bridge: "br0"}, "vm2/net0", &rv)
		if err != nil {
			t.Fatal(err)
		}
		want := `port-attached vnet0: "" -> "br0"
alias-set vnet0: "" -> "vm1/net0"
port-attached vnet1: "br-other" -> "br0"
alias-set vnet1: "old" -> "vm2/net0"
`
		if i == 1 {
			want = ""
		}
		if got := text(append(cs0, cs1...)); got != want {
			t.Errorf("run %d: changes:\n%s\nwant:\n%s", i+1, got, want)
		}
	}
	ports, err := f.BridgePorts("br0")
	if err != nil || len(ports) != 2 || ports[0].Name != "vnet0" || ports[1].Alias != "vm2/net0" {
		t.Errorf("BridgePorts = %+v, %v", ports, err)
	}
	if err := rv.Fail(); err != nil || f.String() != before {
		t.Errorf("after undo (%v):\n%s\nwant:\n%s", err, f, before)
	}
	if _, err := f.EnsurePort(context.Background(), desired.Port{Tap: "vnet9", Bridge: "br0"}, "", &rv); !errors.Is(err, ErrTapMissing) {
		t.Errorf("missing tap: %v", err)
	}
	if _, err := f.EnsurePort(context.Background(), desired.Port{Tap: "vnet0", MAC: "52:54:00:00:00:10", Bridge: "br9"}, "", &rv); !errors.Is(err, ErrBridgeMissing) {
		t.Errorf("missing bridge: %v", err)
	}
	f.FailOn("alias-set")
	_, err = f.EnsurePort(context.Background(), desired.Port{Tap: "vnet0", MAC: "52:54:00:00:00:10", Bridge: "br0"}, "x", &rv)
	if !errors.Is(err, ErrInjected) || rv.Fail() != nil || f.String() != before {
		t.Errorf("injected alias-set failure: %v\n%s", err, f)
	}
}
