package links

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/virtbridge/virtbridge/internal/desired"
	"github.com/virtbridge/virtbridge/internal/revert"
)

// TestEnsureBridgeRollbackRealFailure makes the kernel refuse a route on
// the bridge: the main table's route to 10.45.0.0/24 goes via 10.44.0.1,
// reachable only through a link route marked as learnt from router
// advertisements (proto ra), which virtbridge leaves to the kernel to
// re-learn and does not move; on the bridge the gateway is unreachable
// ("Nexthop has invalid gateway"). The failure comes after the addresses
// and the other routes are on the bridge; the undo must leave the
// namespace as it was, byte for byte.
func TestEnsureBridgeRollbackRealFailure(t *testing.T) {
	l := newLab(t, true)
	l.host.Script(t, moreRoutes+`
		ip route add 10.44.0.0/24 dev uplink proto ra
		ip route add 10.45.0.0/24 via 10.44.0.1 dev uplink metric 40`)
	before := dump(t, l.host)
	var rv revert.Reverter
	cs, err := l.m.EnsureBridge(context.Background(), upBridge(), &rv)
	if err == nil {
		t.Fatalf("EnsureBridge succeeded (%v); want the kernel to refuse the route via 10.44.0.1", cs)
	}
	t.Logf("failed as expected after %d changes (%d undo steps): %v", len(cs), rv.Len(), err)
	if rv.Len() < 5 {
		t.Errorf("only %d undo steps: the failure came before the addresses and routes were on the bridge", rv.Len())
	}
	if !strings.Contains(err.Error(), "10.45.0.0/24") || !strings.Contains(err.Error(), `"br-up"`) {
		t.Errorf("error does not name the route and the bridge: %v", err)
	}
	if err := rv.Fail(); err != nil {
		t.Fatalf("undo: %v", err)
	}
	requireSame(t, "rollback", before, dump(t, l.host))
}

// TestEnsureBridgeRollbackEachStep fails EnsureBridge at each kind of step
// (the n-th time it is taken) through the Manager's test hook, on a new
// bridge and on an existing one with other settings, and checks that the
// undo restores the namespace byte for byte: addresses, routes with their
// metrics, no master on the uplink, the bridge gone or as it was.
func TestEnsureBridgeRollbackEachStep(t *testing.T) {
	b := desired.Bridge{Name: "br-up", Uplink: "uplink", MTU: 1400, MoveAddresses: true}
	type at struct {
		step string
		nth  int
	}
	move := []at{{"enslave", 1}, {"address-add", 1}, {"address-add", 2}, {"route-add", 1}, {"route-add", 4},
		{"route-add", 6}, {"route-del", 1}, {"route-del", 6}, {"address-del", 1}, {"address-del", 2}}
	cases := map[bool][]at{
		// New bridge: created, uplink enslaved, MTU set (bridge-update), move.
		false: append([]at{{"bridge-create", 1}, {"bridge-update", 1}}, move...),
		// Existing bridge (STP on, delay 10 s, down, MTU 1500): STP off,
		// delay 0, MAC pinned to the uplink's (bridge-update 1..3), up,
		// then MTU (bridge-update 4) after the uplink is enslaved.
		true: append([]at{{"bridge-update", 1}, {"bridge-update", 2}, {"bridge-update", 3}, {"link-up", 1},
			{"bridge-update", 4}}, move...),
	}
	for _, existing := range []bool{false, true} {
		for _, s := range cases[existing] {
			name := fmt.Sprintf("%s#%d", s.step, s.nth)
			if existing {
				name = "existing/" + name
			} else {
				name = "new/" + name
			}
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				l := newLab(t, true)
				l.host.Script(t, moreRoutes)
				if existing {
					// A bridge in use before: it had a port, was up. (A bridge
					// that never had a port nor a set MAC shows bridge_id 0,
					// which changing its MAC and back does not restore.)
					l.host.Script(t, `
						ip link add br-up mtu 1500 type bridge stp_state 1 forward_delay 1000
						ip tuntap add dev vnet9 mode tap
						ip link set vnet9 master br-up
						ip link set br-up up
						ip link set br-up down`)
				}
				calls := map[string]int{}
				hit := false
				l.m.hook = func(step, object string) error {
					calls[step]++
					if step == s.step && calls[step] == s.nth {
						hit = true
						return fmt.Errorf("injected failure at %s %s", step, object)
					}
					return nil
				}
				before := dump(t, l.host)
				var rv revert.Reverter
				_, err := l.m.EnsureBridge(context.Background(), b, &rv)
				if !hit {
					t.Fatalf("step %s was taken %d times, never the %d-th (err %v)", s.step, calls[s.step], s.nth, err)
				}
				if err == nil || !strings.Contains(err.Error(), "injected failure") {
					t.Fatalf("EnsureBridge = %v, want the injected failure", err)
				}
				if err := rv.Fail(); err != nil {
					t.Fatalf("undo: %v", err)
				}
				requireSame(t, "rollback", before, dump(t, l.host))
			})
		}
	}
}

// TestEnsurePort puts a tap into its bridge with an alias, twice; moves one
// from another bridge; refuses a missing tap; and undoes.
func TestEnsurePort(t *testing.T) {
	l := newLab(t, false)
	var rv revert.Reverter
	if _, err := l.m.EnsureBridge(context.Background(), desired.Bridge{Name: "br0"}, &rv); err != nil {
		t.Fatal(err)
	}
	l.host.Script(t, `
		ip link add br-other type bridge
		ip tuntap add dev vnet0 mode tap
		ip link set vnet0 address fe:54:00:00:00:10
		ip tuntap add dev vnet1 mode tap
		ip link set vnet1 address fe:54:00:00:00:11 master br-other
		ip link set vnet1 alias old-alias
		# The bridge has had a port: a port leaving does not give the bridge
		# back its tso_max_size of before the first port.
		ip tuntap add dev vnet-warm mode tap
		ip link set vnet-warm master br0
		ip link del vnet-warm`)
	before := dump(t, l.host)

	var prv revert.Reverter
	p := desired.Port{Tap: "vnet0", Bridge: "br0", MAC: "52:54:00:00:00:10"}
	cs, err := l.m.EnsurePort(context.Background(), p, "vm1/net0", &prv)
	if err != nil || len(cs) != 2 {
		t.Fatalf("EnsurePort = %v, %v; want attach and alias", cs, err)
	}
	got := l.host.Run(t, "ip", "-d", "link", "show", "dev", "vnet0")
	if !strings.Contains(got, "master br0") || !strings.Contains(got, "alias vm1/net0") {
		t.Errorf("vnet0 not in br0 with its alias:\n%s", got)
	}
	if cs, err := l.m.EnsurePort(context.Background(), p, "vm1/net0", &prv); err != nil || len(cs) != 0 {
		t.Errorf("second EnsurePort = %v, %v; want no change", cs, err)
	}
	p1 := desired.Port{Tap: "vnet1", Bridge: "br0", MAC: "52:54:00:00:00:11"}
	cs, err = l.m.EnsurePort(context.Background(), p1, "vm2/net0", &prv)
	if err != nil || len(cs) != 2 || cs[0].Before != "br-other" || cs[1].Before != "old-alias" {
		t.Fatalf("EnsurePort(vnet1) = %v, %v; want moved from br-other and alias replaced", cs, err)
	}
	ports, err := l.m.BridgePorts("br0")
	if err != nil || len(ports) != 2 || ports[0].Name != "vnet0" || ports[0].Alias != "vm1/net0" ||
		ports[1].Name != "vnet1" || ports[1].Alias != "vm2/net0" || ports[0].Kind != "tuntap" {
		t.Errorf("BridgePorts = %+v, %v", ports, err)
	}
	if err := prv.Fail(); err != nil {
		t.Fatalf("undo: %v", err)
	}
	requireSame(t, "undo of EnsurePort", before, dump(t, l.host))

	_, err = l.m.EnsurePort(context.Background(), desired.Port{Tap: "vnet9", Bridge: "br0"}, "x", &prv)
	if !errors.Is(err, ErrTapMissing) || !strings.Contains(err.Error(), `"vnet9"`) {
		t.Errorf("EnsurePort(missing tap) = %v, want ErrTapMissing naming vnet9", err)
	}
	_, err = l.m.EnsurePort(context.Background(), desired.Port{Tap: "vnet0", Bridge: "br-none", MAC: "52:54:00:00:00:10"}, "x", &prv)
	if !errors.Is(err, ErrBridgeMissing) {
		t.Errorf("EnsurePort(missing bridge) = %v, want ErrBridgeMissing", err)
	}
	requireSame(t, "refused EnsurePort", before, dump(t, l.host))
}

// TestBridgeState reads a bridge after a move.
func TestBridgeState(t *testing.T) {
	l := newLab(t, true)
	var rv revert.Reverter
	if _, err := l.m.EnsureBridge(context.Background(), desired.Bridge{Name: "br-up", Uplink: "uplink", STP: true, ForwardDelay: 3, MoveAddresses: true}, &rv); err != nil {
		t.Fatal(err)
	}
	l.host.Run(t, "ip", "tuntap", "add", "dev", "vnet0", "mode", "tap")
	l.host.Run(t, "ip", "link", "set", "vnet0", "master", "br-up")
	info, err := l.m.BridgeState("br-up")
	if err != nil {
		t.Fatal(err)
	}
	got := fmt.Sprintf("%v %v %v %v %d %s %v %v", info.Exists, info.IsBridge, info.Up, info.STP, info.ForwardDelay,
		info.Uplink, info.Addresses, info.UplinkAddresses)
	if want := "true true true true 3 uplink [10.77.0.2/24 2001:db8:77::2/64] []"; got != want {
		t.Errorf("BridgeState = %s, want %s", got, want)
	}
	info, err = l.m.BridgeState("uplink")
	if err != nil || !info.Exists || info.IsBridge || info.Kind != "veth" {
		t.Errorf("BridgeState(uplink) = %+v, %v", info, err)
	}
	info, err = l.m.BridgeState("nope")
	if err != nil || info.Exists {
		t.Errorf("BridgeState(nope) = %+v, %v", info, err)
	}
}
