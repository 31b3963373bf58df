package handoff

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/virtbridge/virtbridge/internal/apply"
	"github.com/virtbridge/virtbridge/internal/change"
	"github.com/virtbridge/virtbridge/internal/desired"
	"github.com/virtbridge/virtbridge/internal/links"
	"github.com/virtbridge/virtbridge/internal/owner/networkd"
	"github.com/virtbridge/virtbridge/internal/owner/nm"
	"github.com/virtbridge/virtbridge/internal/testenv/hostns"
)

// TestReapplyToHandedOverBridge: a bridge handed over to its manager
// earlier, whose stp, forward_delay and mtu then change in the
// configuration, gets them through the handoff path (apply.Host, as the
// engine and the hook run it): the kernel's bridge, the manager's profile
// (NetworkManager) or .netdev (networkd) change, journaled as a bridge
// change; a second Apply changes nothing; a manager restart keeps them.
func TestReapplyToHandedOverBridge(t *testing.T) {
	for i, m := range []hostns.Manager{hostns.NetworkManager, hostns.Networkd} {
		t.Run(string(m), func(t *testing.T) {
			t.Parallel()
			testReapply(t, m, fmt.Sprintf("vbod%d", 8+i))
		})
	}
}

func testReapply(t *testing.T, m hostns.Manager, prefix string) {
	h := hostns.New(t, prefix, m)
	bus := h.Bus(t)
	o := &Owners{NS: h.NS.Handle, Root: h.Path("/")}
	if m == hostns.NetworkManager {
		o.NM = nm.New(bus)
	} else {
		o.Networkd = networkd.New(bus)
	}
	l, err := links.NewAt(h.NS.Handle)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	h.OwnUplink(t)
	host := &apply.Host{Links: l, Owners: o}
	b := desired.Bridge{Name: "br0", Uplink: hostns.Uplink, MoveAddresses: true}
	if _, err := host.Apply(context.Background(), desired.Desired{Action: desired.ActionHost, Bridges: []desired.Bridge{b}}, ""); err != nil {
		t.Fatalf("first Apply: %v", err)
	}
	if k := kernelBridge(t, h); !strings.Contains(k, "mtu 1500 ") || !strings.Contains(k, "stp_state 0 ") {
		t.Fatalf("bridge before the change: %s", k)
	}
	kernelBefore, recordBefore := kernelBridge(t, h), managerRecord(t, h)
	b.STP, b.ForwardDelay, b.MTU = true, 4, 1400
	// A transaction that fails after the change puts the settings back.
	failing := &apply.Host{Links: l, Owners: o, Sysctls: failingSysctls{}}
	if _, err := failing.Apply(context.Background(), desired.Desired{Action: desired.ActionHost, Bridges: []desired.Bridge{b},
		Sysctls: []desired.Sysctl{{Name: "net.ipv4.ip_forward", Value: "0"}}}, ""); err == nil || !strings.Contains(err.Error(), "injected failure") {
		t.Fatalf("Apply with a failing sysctl = %v", err)
	}
	if k, r := kernelBridge(t, h), managerRecord(t, h); settings.FindString(k) != settings.FindString(kernelBefore) || r != recordBefore {
		t.Errorf("the undone transaction left br0 changed:\n%s\n%s\n--- after ---\n%s\n%s", settings.FindString(kernelBefore), recordBefore, settings.FindString(k), r)
	}
	d := desired.Desired{Action: desired.ActionHost, Bridges: []desired.Bridge{b}}
	cs, err := host.Apply(context.Background(), d, "")
	if err != nil {
		t.Fatalf("Apply with stp, forward_delay, mtu changed: %v", err)
	}
	t.Logf("changes: %v", cs)
	if len(cs) != 1 || cs[0].Kind != change.BridgeUpdated || cs[0].Object != "br0" ||
		!strings.Contains(cs[0].After, "stp on") || !strings.Contains(cs[0].After, "forward_delay 4") || !strings.Contains(cs[0].After, "mtu 1400") {
		t.Errorf("changes %v; want one bridge-updated br0 with stp on, forward_delay 4, mtu 1400", cs)
	}
	wantKernel := func(when string) {
		t.Helper()
		var k string
		for end := time.Now().Add(30 * time.Second); time.Now().Before(end); time.Sleep(200 * time.Millisecond) {
			if k = kernelBridge(t, h); strings.Contains(k, "mtu 1400 ") && strings.Contains(k, "stp_state 1 ") && strings.Contains(k, "forward_delay 400 ") {
				return
			}
		}
		t.Fatalf("%s: kernel's bridge %s; want mtu 1400, stp_state 1, forward_delay 400", when, k)
	}
	wantKernel("after the Apply")
	wantManager(t, h)
	if cs, err := host.Apply(context.Background(), d, ""); err != nil || len(cs) != 0 {
		t.Errorf("second Apply = %v, %v; want no change", cs, err)
	}
	h.StopManager(t)
	h.StartManager(t)
	time.Sleep(2 * time.Second) // let the manager go over its links again
	wantKernel("after restarting " + string(m))
	wantManager(t, h)
	if cs, err := host.Apply(context.Background(), d, ""); err != nil || len(cs) != 0 {
		t.Errorf("Apply after the restart = %v, %v; want no change", cs, err)
	}
}

// settings are the bridge's MTU, forward delay and STP state in an `ip -d
// link` line.
var settings = regexp.MustCompile(`mtu \d+ .* forward_delay \d+ .* stp_state \d+`)

// kernelBridge is `ip -d link show br0` on one line.
func kernelBridge(t *testing.T, h *hostns.Host) string {
	out, _ := h.NS.Exec("ip", "-d", "-o", "link", "show", "br0")
	return out
}

// managerRecord is the manager's own record of the bridge: the stp,
// forward delay and mtu of its NetworkManager profile, or its .netdev.
func managerRecord(t *testing.T, h *hostns.Host) string {
	if h.Mgr == hostns.NetworkManager {
		return strings.ReplaceAll(strings.TrimSpace(h.Run(t, "nmcli", "-g", "bridge.stp,bridge.forward-delay,802-3-ethernet.mtu", "con", "show", "virtbridge-br0")), "\n", ":")
	}
	return h.Run(t, "cat", "/run/systemd/network/05-virtbridge-br0.netdev")
}

// wantManager checks that the manager's record of the bridge says stp on,
// forward delay 4 and mtu 1400.
func wantManager(t *testing.T, h *hostns.Host) {
	t.Helper()
	out := managerRecord(t, h)
	want := []string{"yes:4:1400"}
	if h.Mgr == hostns.Networkd {
		want = []string{"MTUBytes=1400", "STP=yes", "ForwardDelaySec=4"}
	}
	for _, s := range want {
		if !strings.Contains(out, s) {
			t.Errorf("the manager's record of br0 does not say %s:\n%s", s, out)
		}
	}
}
