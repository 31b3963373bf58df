package links_test

import (
	"context"
	"regexp"
	"strings"
	"testing"

	"github.com/virtbridge/virtbridge/internal/apply"
	"github.com/virtbridge/virtbridge/internal/change"
	"github.com/virtbridge/virtbridge/internal/desired"
	"github.com/virtbridge/virtbridge/internal/links"
	"github.com/virtbridge/virtbridge/internal/revert"
	"github.com/virtbridge/virtbridge/internal/testenv/netnstest"
)

var _ apply.Links = (*links.Manager)(nil)

// A conformance scenario: the same host made in a network namespace (by
// script) and in a Fake (by seed), the same EnsureBridge on both.
type conformance struct {
	name string
	// script runs after the uplink is made: veth "uplink" (52:54:00:aa:00:01,
	// up, accept_ra 0: the RA role, which the Fake does not hold, is
	// slaac_linux_test.go's) whose peer "peer0" is up.
	script string
	seed   func(f *links.Fake)
	b      desired.Bridge
}

// uplinkScript makes the uplink of every scenario; static adds the static
// host's addresses and default routes, which the Fake's seedStatic matches.
const uplinkScript = `
	ip link add uplink address 52:54:00:aa:00:01 type veth peer name peer0
	ip link set uplink up
	ip link set peer0 up
	sysctl -qw net.ipv6.conf.uplink.accept_ra=0`

const static = `
	ip addr add 10.77.0.2/24 dev uplink
	ip -6 addr add 2001:db8:77::2/64 dev uplink nodad
	ip route add default via 10.77.0.1 dev uplink metric 100
	ip -6 route add default via 2001:db8:77::1 dev uplink metric 100`

func seedUplink(f *links.Fake, addrs ...string) *links.FakeLink {
	f.AddLink("peer0", "veth", "02:00:00:00:00:01", "")
	return f.AddLink("uplink", "veth", "52:54:00:aa:00:01", "", addrs...)
}

func seedStatic(f *links.Fake) *links.FakeLink {
	up := seedUplink(f, "10.77.0.2/24", "2001:db8:77::2/64")
	f.AddRoute("uplink", "default via 10.77.0.1 metric 100")
	f.AddRoute("uplink", "default via 2001:db8:77::1 metric 100")
	return up
}

var moveBridge = desired.Bridge{Name: "br0", Uplink: "uplink", MoveAddresses: true, ProbeTimeout: -1}

var conformances = []conformance{{
	name: "static host: new bridge, MTU, move", script: static, seed: func(f *links.Fake) { seedStatic(f) },
	b: desired.Bridge{Name: "br0", Uplink: "uplink", MoveAddresses: true, MTU: 1400, ProbeTimeout: -1},
}, {
	name: "NetworkManager's noprefixroute address and its proto kernel route (manager: kernel)",
	script: `
		ip addr add 10.88.0.104/24 dev uplink noprefixroute
		ip route add 10.88.0.0/24 dev uplink proto kernel scope link src 10.88.0.104 metric 100
		ip route add default via 10.88.0.1 dev uplink proto dhcp src 10.88.0.104 metric 100`,
	seed: func(f *links.Fake) {
		seedUplink(f, "10.88.0.104/24 noprefixroute")
		f.AddRoute("uplink", "default via 10.88.0.1 src 10.88.0.104 metric 100 proto dhcp")
		f.AddRoute("uplink", "10.88.0.0/24 src 10.88.0.104 metric 100 proto kernel")
	},
	b: desired.Bridge{Name: "br0", Uplink: "uplink", MoveAddresses: true, Manager: "kernel", ProbeTimeout: -1},
}, {
	name: "permanent neighbour and a rule naming the uplink",
	script: static + `
		ip neigh add 10.77.0.9 lladdr 52:54:00:00:00:09 dev uplink nud permanent
		ip rule add pref 100 iif uplink lookup 100`,
	seed: func(f *links.Fake) {
		seedStatic(f).Neighs = []string{"10.77.0.9 lladdr 52:54:00:00:00:09 permanent"}
		f.AddRule("pref 100 iif uplink lookup 100")
	},
	b: moveBridge,
}, {
	name: "policy routing: a route of table 100, a multipath route with a leg through the uplink",
	script: static + `
		ip link add eth1 type veth peer name eth1p
		ip addr add 10.66.0.2/24 dev eth1
		ip link set eth1 up
		ip link set eth1p up
		ip route add default via 10.77.0.1 dev uplink table 100
		ip route add 10.9.0.0/24 nexthop via 10.77.0.1 dev uplink nexthop via 10.66.0.1 dev eth1`,
	seed: func(f *links.Fake) {
		// Seeded in the order the kernel dumps them: table 100 before
		// the main table.
		seedUplink(f, "10.77.0.2/24", "2001:db8:77::2/64")
		f.AddLink("eth1", "veth", "02:00:00:00:00:02", "", "10.66.0.2/24")
		f.AddLink("eth1p", "veth", "02:00:00:00:00:03", "")
		f.AddRoute("uplink", "default via 10.77.0.1 table 100")
		f.AddRoute("uplink", "default via 10.77.0.1 metric 100")
		f.AddRoute("uplink", "10.9.0.0/24 nexthop via 10.77.0.1 dev uplink nexthop via 10.66.0.1 dev eth1")
		f.AddRoute("uplink", "default via 2001:db8:77::1 metric 100")
	},
	b: moveBridge,
}, {
	name: "someone else's bridge with another port",
	script: `
		ip link add br0 address 02:00:00:00:00:99 type bridge stp_state 1 forward_delay 1000
		ip link add veth9 type veth peer name veth9p
		ip link set veth9 master br0`,
	seed: func(f *links.Fake) {
		seedUplink(f)
		br := f.AddLink("br0", "bridge", "02:00:00:00:00:99", "")
		br.STP, br.ForwardDelay, br.Up, br.MACPinned = true, 10, false, true
		f.AddLink("veth9", "veth", "02:00:00:00:00:98", "br0").Up = false
		f.AddLink("veth9p", "veth", "02:00:00:00:00:97", "").Up = false
	},
	b: desired.Bridge{Name: "br0", Uplink: "uplink"},
}, {
	name:   "refused: a link of the bridge's name is no bridge",
	script: "ip link add br0 type veth peer name br0p",
	seed: func(f *links.Fake) {
		seedUplink(f)
		f.AddLink("br0", "veth", "02:00:00:00:00:99", "")
		f.AddLink("br0p", "veth", "02:00:00:00:00:98", "")
	},
	b: moveBridge,
}, {
	name: "refused: uplink missing", seed: func(f *links.Fake) { seedUplink(f) },
	b: desired.Bridge{Name: "br0", Uplink: "eth9"},
}, {
	name:   "refused: uplink_mac ambiguous",
	script: "ip link add dum0 address 52:54:00:aa:00:01 type veth peer name dum0p",
	seed: func(f *links.Fake) {
		seedUplink(f)
		f.AddLink("dum0", "veth", "52:54:00:aa:00:01", "")
		f.AddLink("dum0p", "veth", "02:00:00:00:00:98", "")
	},
	b: desired.Bridge{Name: "br0", UplinkMAC: "52:54:00:AA:00:01"},
}, {
	name:   "refused: uplink_mac missing",
	script: "ip link add br9 address 52:54:00:aa:00:02 type bridge",
	seed:   func(f *links.Fake) { seedUplink(f); f.AddLink("br9", "bridge", "52:54:00:aa:00:02", "") },
	b:      desired.Bridge{Name: "br0", UplinkMAC: "52:54:00:aa:00:02"},
}, {
	name:   "refused: uplink in another bridge",
	script: "ip link add br-other type bridge\nip link set uplink master br-other",
	seed: func(f *links.Fake) {
		seedUplink(f).Master = "br-other"
		f.AddLink("br-other", "bridge", "02:00:00:00:00:98", "")
	},
	b: moveBridge,
}, {
	name:   "refused: the uplink is a bridge",
	script: "ip link add br-other type bridge",
	seed:   func(f *links.Fake) { seedUplink(f); f.AddLink("br-other", "bridge", "02:00:00:00:00:98", "") },
	b:      desired.Bridge{Name: "br0", Uplink: "br-other"},
}, {
	name: "refused: move_addresses false with addresses", script: static, seed: func(f *links.Fake) { seedStatic(f) },
	b: desired.Bridge{Name: "br0", Uplink: "uplink"},
}, {
	name:   "refused: a lease of a DHCP client without manager",
	script: "ip addr add 10.77.0.2/24 dev uplink valid_lft 600 preferred_lft 600",
	seed:   func(f *links.Fake) { seedUplink(f, "10.77.0.2/24 valid_lft 600 preferred_lft 600") },
	b:      moveBridge,
}, {
	name:   "refused: routes through nexthop objects",
	script: static + "\nip nexthop add id 7 via 10.77.0.1 dev uplink",
	seed:   func(f *links.Fake) { seedStatic(f).Nexthops = []uint32{7} },
	b:      moveBridge,
}}

// lifetimeLeft masks the seconds a lease has left, which the kernel counts
// down while the Fake does not.
var lifetimeLeft = regexp.MustCompile(`valid for \d+ s more`)

func outcome(cs []change.Change, err error) string {
	var b strings.Builder
	for _, c := range cs {
		b.WriteString(c.String() + "\n")
	}
	if err != nil {
		b.WriteString("error: " + err.Error() + "\n")
	}
	return lifetimeLeft.ReplaceAllString(b.String(), "valid for N s more")
}

// TestConformance runs each scenario on the real Manager in a network
// namespace and on the Fake, and compares what they report exactly: the
// changes (in order) or the refusal's message; then runs it again on both
// (no change) and undoes the first run.
func TestConformance(t *testing.T) {
	netnstest.RequireRoot(t)
	for _, tc := range conformances {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ns := netnstest.New(t, "vbpl")
			ns.Script(t, uplinkScript+"\n"+tc.script)
			m, err := links.NewAt(ns.Handle)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(m.Close)
			f := links.NewFake()
			tc.seed(f)
			fakeBefore := f.String()

			var mrv, frv revert.Reverter
			mcs, merr := m.EnsureBridge(context.Background(), tc.b, &mrv)
			fcs, ferr := f.EnsureBridge(context.Background(), tc.b, &frv)
			kernel, fake := outcome(mcs, merr), outcome(fcs, ferr)
			if kernel != fake {
				t.Fatalf("the Manager and the Fake differ.\nManager:\n%s\nFake:\n%s", kernel, fake)
			}
			t.Logf("both:\n%s", kernel)
			if merr != nil {
				if len(mcs) > 0 || f.String() != fakeBefore {
					t.Errorf("a refusal changed something:\n%s\n%s", kernel, f)
				}
				return
			}
			mcs, merr = m.EnsureBridge(context.Background(), tc.b, nil)
			fcs, ferr = f.EnsureBridge(context.Background(), tc.b, nil)
			if outcome(mcs, merr) != "" || outcome(fcs, ferr) != "" {
				t.Errorf("a second run: Manager %q, Fake %q; want no change", outcome(mcs, merr), outcome(fcs, ferr))
			}
			if err := frv.Fail(); err != nil || f.String() != fakeBefore {
				t.Errorf("the Fake's undo (%v) left:\n%s\nwant:\n%s", err, f, fakeBefore)
			}
			if err := mrv.Fail(); err != nil {
				t.Errorf("the Manager's undo: %v", err)
			}
		})
	}
}

// TestConformancePort is TestConformance for EnsurePort: a VM's tap put
// into its bridge with its alias, and each refusal.
func TestConformancePort(t *testing.T) {
	netnstest.RequireRoot(t)
	const bridges = "ip link add br0 type bridge\nip link add br-other type bridge"
	seedBridges := func(f *links.Fake) {
		f.AddLink("br0", "bridge", "02:00:00:00:00:90", "")
		f.AddLink("br-other", "bridge", "02:00:00:00:00:91", "")
	}
	const tap = "ip tuntap add dev vnet0 mode tap\nip link set vnet0 address fe:54:00:aa:02:01"
	seedTap := func(f *links.Fake, master string) { f.AddLink("vnet0", "tuntap", "fe:54:00:aa:02:01", master) }
	port := desired.Port{Tap: "vnet0", MAC: "52:54:00:aa:02:01", Bridge: "br0"}
	for _, tc := range []struct {
		name   string
		script string
		seed   func(*links.Fake)
		p      desired.Port
	}{
		{"new tap", bridges + "\n" + tap, func(f *links.Fake) { seedBridges(f); seedTap(f, "") }, port},
		{"tap in another bridge", bridges + "\n" + tap + "\nip link set vnet0 master br-other",
			func(f *links.Fake) { seedBridges(f); seedTap(f, "br-other") }, port},
		{"refused: tap missing", bridges, seedBridges, port},
		{"refused: no tap named", bridges, seedBridges, desired.Port{MAC: "52:54:00:aa:02:01", Bridge: "br0"}},
		{"refused: a veth", bridges + "\nip link add vnet0 address fe:54:00:aa:02:01 type veth peer name vnet0p",
			func(f *links.Fake) {
				seedBridges(f)
				f.AddLink("vnet0", "veth", "fe:54:00:aa:02:01", "")
				f.AddLink("vnet0p", "veth", "02:00:00:00:00:92", "")
			}, port},
		{"refused: a tun device", bridges + "\nip tuntap add dev vnet0 mode tun",
			func(f *links.Fake) { seedBridges(f); f.AddLink("vnet0", "tuntap", "", "").TunMode = "tun" }, port},
		{"refused: another VM's tap", bridges + "\n" + tap, func(f *links.Fake) { seedBridges(f); seedTap(f, "") },
			desired.Port{Tap: "vnet0", MAC: "52:54:00:bb:00:07", Bridge: "br0"}},
		{"refused: bridge missing", tap, func(f *links.Fake) { seedTap(f, "") }, desired.Port{Tap: "vnet0", MAC: "52:54:00:aa:02:01", Bridge: "br9"}},
		{"refused: the bridge is a veth", tap + "\nip link add br9 type veth peer name br9p",
			func(f *links.Fake) {
				seedTap(f, "")
				f.AddLink("br9", "veth", "02:00:00:00:00:93", "")
				f.AddLink("br9p", "veth", "02:00:00:00:00:94", "")
			}, desired.Port{Tap: "vnet0", MAC: "52:54:00:aa:02:01", Bridge: "br9"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ns := netnstest.New(t, "vbpl")
			ns.Script(t, tc.script)
			m, err := links.NewAt(ns.Handle)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(m.Close)
			f := links.NewFake()
			tc.seed(f)
			const alias = "vm:web01 uuid:5b0c0000-0000-4000-8000-000000000001"
			for run := 1; run <= 2; run++ {
				mcs, merr := m.EnsurePort(context.Background(), tc.p, alias, nil)
				fcs, ferr := f.EnsurePort(context.Background(), tc.p, alias, nil)
				if kernel, fake := outcome(mcs, merr), outcome(fcs, ferr); kernel != fake {
					t.Fatalf("run %d: the Manager and the Fake differ.\nManager:\n%s\nFake:\n%s", run, kernel, fake)
				} else if run == 1 {
					t.Logf("both:\n%s", kernel)
				} else if merr == nil && kernel != "" {
					t.Errorf("a second run changed: %s", kernel)
				}
			}
		})
	}
}
