package links

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"

	"github.com/virtbridge/virtbridge/internal/change"
	"github.com/virtbridge/virtbridge/internal/desired"
	"github.com/virtbridge/virtbridge/internal/revert"
)

// TestEnsureBridgeReapplies: an existing bridge with the wrong STP, forward
// delay, MTU, an unpinned MAC and down gets each re-applied, and a second
// run changes nothing.
func TestEnsureBridgeReapplies(t *testing.T) {
	for _, tc := range []struct {
		name   string
		create string
		b      desired.Bridge
		want   []string // in `ip -d link show` of the bridge
	}{
		{"stp on to off", "ip link add br0 mtu 1400 type bridge stp_state 1 forward_delay 1000",
			desired.Bridge{Name: "br0", STP: false, ForwardDelay: 0, MTU: 1500},
			[]string{"mtu 1500 ", "forward_delay 0 ", "stp_state 0 ", ",UP"}},
		{"stp off to on", "ip link add br0 type bridge stp_state 0 forward_delay 0",
			desired.Bridge{Name: "br0", STP: true, ForwardDelay: 4, MTU: 9000},
			[]string{"mtu 9000 ", "forward_delay 400 ", "stp_state 1 ", ",UP"}},
		{"delay only", "ip link add br0 type bridge stp_state 1 forward_delay 1500",
			desired.Bridge{Name: "br0", STP: true, ForwardDelay: 2},
			[]string{"mtu 1500 ", "forward_delay 200 ", "stp_state 1 ", ",UP"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := newLab(t, false)
			l.host.Script(t, tc.create)
			// A link that was never up shows "qdisc noop"; once up, it keeps
			// "qdisc noqueue" when down again. The bridge starts as one that
			// was up before, so that the undo (set down) can restore every
			// byte.
			l.host.Script(t, "ip link set br0 up\nip link set br0 down")
			before := dump(t, l.host)
			var rv revert.Reverter
			cs, err := l.m.EnsureBridge(context.Background(), tc.b, &rv)
			if err != nil {
				t.Fatalf("EnsureBridge: %v", err)
			}
			for i, c := range cs {
				t.Logf("  %s", c)
				// The bridge was made by `ip`: the last record says so.
				if c.Kind != change.BridgeUpdated && c.Kind != change.AliasSet && (c.Kind != change.ForeignBridge || i != len(cs)-1) {
					t.Errorf("unexpected change %s", c)
				}
			}
			if len(cs) == 0 || cs[len(cs)-1].Kind != change.ForeignBridge {
				t.Errorf("no %s record for a bridge virtbridge did not create", change.ForeignBridge)
			}
			got := l.host.Run(t, "ip", "-d", "link", "show", "dev", "br0")
			for _, w := range tc.want {
				if !strings.Contains(got, w) {
					t.Errorf("bridge lacks %q:\n%s", w, got)
				}
			}
			if s := strings.TrimSpace(l.host.Run(t, "cat", "/sys/class/net/br0/addr_assign_type")); s != "3" {
				t.Errorf("bridge MAC not pinned: addr_assign_type %s", s)
			}
			info, err := l.m.BridgeState("br0")
			if err != nil || !info.IsBridge || info.STP != tc.b.STP || info.ForwardDelay != tc.b.ForwardDelay || !info.Up {
				t.Errorf("BridgeState = %+v, %v", info, err)
			}
			// Again: nothing to do.
			var rv2 revert.Reverter
			if cs, err := l.m.EnsureBridge(context.Background(), tc.b, &rv2); err != nil || len(cs) != 0 {
				t.Errorf("second EnsureBridge = %v, %v; want no change", cs, err)
			}
			// The undo puts every attribute back (the pin itself stays: the
			// kernel has no way to un-pin a MAC).
			if err := rv.Fail(); err != nil {
				t.Fatalf("undo: %v", err)
			}
			requireSame(t, "undo", before, dump(t, l.host))
		})
	}
}

// TestEnsureBridgeRefusals: each refusal names the object, wraps its
// sentinel error and leaves the namespace exactly as it was.
func TestEnsureBridgeRefusals(t *testing.T) {
	for _, tc := range []struct {
		name     string
		setup    string
		b        desired.Bridge
		wireless bool
		err      error
		words    []string
	}{
		{"uplink in another bridge", "ip link add br-other type bridge\nip link set uplink master br-other",
			desired.Bridge{Name: "br0", Uplink: "uplink", MoveAddresses: true}, false, ErrUplinkBusy,
			[]string{`"uplink"`, `"br-other"`, `"br0"`, `rename bridge "br0" to "br-other"`}},
		{"uplink in another bridge, bridge exists", "ip link add br-other type bridge\nip link add br0 type bridge\nip link set uplink master br-other",
			desired.Bridge{Name: "br0", Uplink: "uplink"}, false, ErrUplinkBusy, []string{`"uplink"`, `"br-other"`}},
		{"non-bridge link named like the bridge", "ip link add br0 type veth peer name br0p",
			desired.Bridge{Name: "br0", Uplink: "uplink", MoveAddresses: true}, false, ErrNotBridge,
			[]string{`"br0"`, "veth", "ip link del br0"}},
		{"uplink missing", "",
			desired.Bridge{Name: "br0", Uplink: "eth9", MoveAddresses: true}, false, ErrUplinkMissing,
			[]string{`"eth9"`, "no link named", "uplink: key", "in the configuration"}},
		{"uplink MAC missing", "",
			desired.Bridge{Name: "br0", UplinkMAC: "52:54:00:00:00:99"}, false, ErrUplinkMissing,
			[]string{"52:54:00:00:00:99", "uplink_mac"}},
		{"uplink MAC ambiguous", "ip link add twin type veth peer name twinp\nip link set twin address UPMAC",
			desired.Bridge{Name: "br0", UplinkMAC: "UPMAC"}, false, ErrUplinkAmbiguous,
			[]string{"uplink (veth)", "twin (veth)"}},
		{"uplink is a bridge", "ip link add br-other type bridge",
			desired.Bridge{Name: "br0", Uplink: "br-other"}, false, ErrUplinkBusy, []string{`"br-other"`, "itself a bridge"}},
		{"routes through a nexthop object", "ip nexthop add id 10 via 10.77.0.1 dev uplink\nip route add 10.55.0.0/24 nhid 10",
			desired.Bridge{Name: "br0", Uplink: "uplink", MoveAddresses: true}, false, ErrUnmovable,
			[]string{`"uplink"`, "nexthop objects [10]", "move_addresses"}},
		{"wireless uplink", "",
			desired.Bridge{Name: "br0", Uplink: "uplink", MoveAddresses: true}, true, ErrUplinkWireless,
			[]string{`"uplink"`, wirelessAdvice}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			l := newLab(t, true)
			mac := strings.TrimSpace(l.host.Run(t, "cat", "/sys/class/net/uplink/address"))
			l.host.Script(t, strings.ReplaceAll(tc.setup, "UPMAC", mac))
			tc.b.UplinkMAC = strings.ReplaceAll(tc.b.UplinkMAC, "UPMAC", mac)
			if tc.wireless {
				l.m.wireless = func(l netlink.Link) (bool, error) { return l.Attrs().Name == "uplink", nil }
			}
			before := dump(t, l.host)
			var rv revert.Reverter
			cs, err := l.m.EnsureBridge(context.Background(), tc.b, &rv)
			if !errors.Is(err, tc.err) {
				t.Fatalf("EnsureBridge = %v, want an error wrapping %v", err, tc.err)
			}
			t.Logf("refused: %v", err)
			for _, w := range tc.words {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q", w)
				}
			}
			// The NIC may carry the host's own network through its master.
			if strings.Contains(err.Error(), "nomaster") {
				t.Errorf("error advises taking a NIC out of its master (nomaster)")
			}
			if len(cs) != 0 || rv.Len() != 0 {
				t.Errorf("refusal made changes %v (%d undo steps)", cs, rv.Len())
			}
			requireSame(t, "refusal", before, dump(t, l.host))
		})
	}
}

// TestWirelessDetection asks nl80211 in the namespace about a veth: not a
// station, whether the kernel has cfg80211 or not.
func TestWirelessDetection(t *testing.T) {
	l := newLab(t, true)
	up, err := l.m.h.LinkByName("uplink")
	if err != nil {
		t.Fatal(err)
	}
	wl, err := l.m.nl80211Wireless(up)
	if err != nil || wl {
		t.Fatalf("nl80211Wireless(veth) = %v, %v; want false, nil", wl, err)
	}
}
