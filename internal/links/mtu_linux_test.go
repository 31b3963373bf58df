package links

import (
	"context"
	"strconv"
	"strings"
	"testing"

	"github.com/virtbridge/virtbridge/internal/desired"
	"github.com/virtbridge/virtbridge/internal/revert"
)

// TestBridgeMTUIsKept: a configured MTU is kept by the kernel when a port
// with another MTU joins afterwards (a real tap, as libvirt makes them),
// also when the bridge already had that MTU before it was set (a 9000
// uplink makes a new bridge 9000 as it joins), and a second run changes
// nothing.
func TestBridgeMTUIsKept(t *testing.T) {
	for _, tc := range []struct {
		name              string
		uplinkMTU, tapMTU string
		b                 desired.Bridge
	}{
		{"9000 uplink, mtu 9000, 1500 tap", "9000", "1500",
			desired.Bridge{Name: "br0", Uplink: "uplink", MTU: 9000, MoveAddresses: true}},
		{"1500 uplink, mtu 9000, 1500 tap", "1500", "1500",
			desired.Bridge{Name: "br0", Uplink: "uplink", MTU: 9000, MoveAddresses: true}},
		{"no uplink, mtu 1500, 9000 tap", "", "9000", desired.Bridge{Name: "br0", MTU: 1500}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := newLab(t, tc.uplinkMTU != "")
			if tc.uplinkMTU != "" {
				l.host.Script(t, "ip link set uplink mtu "+tc.uplinkMTU)
			}
			var rv revert.Reverter
			if _, err := l.m.EnsureBridge(context.Background(), tc.b, &rv); err != nil {
				t.Fatalf("EnsureBridge: %v", err)
			}
			want := "mtu " + strconv.Itoa(tc.b.MTU) + " "
			if got := l.host.Run(t, "ip", "link", "show", "dev", "br0"); !strings.Contains(got, want) {
				t.Fatalf("after EnsureBridge, bridge lacks %q:\n%s", want, got)
			}
			cs, err := l.m.EnsureBridge(context.Background(), tc.b, &revert.Reverter{})
			if err != nil || len(cs) != 0 {
				t.Errorf("second run: changes %v, error %v; want none", cs, err)
			}
			l.host.Script(t, `
				ip tuntap add vnet0 mode tap
				ip link set vnet0 mtu `+tc.tapMTU+`
				ip link set vnet0 master br0 up`)
			if got := l.host.Run(t, "ip", "link", "show", "dev", "br0"); !strings.Contains(got, want) {
				t.Errorf("a tap with MTU %s joined and the bridge lost its configured MTU (want %q):\n%s", tc.tapMTU, want, got)
			}
		})
	}
}
