package nm

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/virtbridge/virtbridge/internal/desired"
	"github.com/virtbridge/virtbridge/internal/testenv/hostns"
)

// TestReleaseBridge: after a handoff to NetworkManager, ReleaseBridge (in
// a later run: it knows only the bridge's name) gives the uplink its own
// profile back, active with its leased address and autoconnect on:
// NetworkManager's profiles are as before the handoff, the bridge gone,
// and upstream pings the host.
func TestReleaseBridge(t *testing.T) {
	h := hostns.New(t, "vbq", hostns.NetworkManager)
	c := New(h.Bus(t))
	ctx := context.Background()
	addr := h.OwnUplink(t)
	beforeProfiles, beforeActive := profiles(t, h), activeProfile(t, h, hostns.Uplink)
	if _, err := c.Handover(ctx, spec(h)); err != nil {
		t.Fatalf("Handover: %v\n%s", err, h.Log("networkmanager"))
	}
	if id, ok, err := c.MadeBridge(ctx, bridge); err != nil || !ok || id != BridgeProfile(bridge) {
		t.Fatalf("MadeBridge = %q, %v, %v; want %q", id, ok, err, BridgeProfile(bridge))
	}
	cs, err := New(h.Bus(t)).ReleaseBridge(ctx, desired.Bridge{Name: bridge})
	if err != nil {
		t.Fatalf("ReleaseBridge: %v\n%s", err, h.Log("networkmanager"))
	}
	t.Logf("changes: %v", cs)
	if p := profiles(t, h); p != beforeProfiles {
		t.Errorf("NetworkManager's profiles are not as before the handoff:\n%s\n--- after ---\n%s", beforeProfiles, p)
	}
	if p := activeProfile(t, h, hostns.Uplink); p != beforeActive {
		t.Errorf("uplink in NetworkManager: %q, want %q as before", p, beforeActive)
	}
	if _, err := h.Exec("ip", "link", "show", bridge); err == nil {
		t.Errorf("bridge %s still there after the release", bridge)
	}
	if a := h.Addresses(t, hostns.Uplink); !slices.Equal(a, []string{addr}) || !h.PingFromUpstream(addr) {
		t.Errorf("uplink has %v after the release, want %s reachable", a, addr)
	}
	if r := h.DefaultRoute(t); !strings.Contains(r, "dev "+hostns.Uplink) {
		t.Errorf("default route after the release: %s", r)
	}
	if _, ok, err := c.MadeBridge(ctx, bridge); ok || err != nil {
		t.Errorf("MadeBridge after the release = %v, %v; want no bridge", ok, err)
	}
}

// TestReleaseBridgeKeepsAutoconnectOff: an uplink profile with autoconnect
// off before the handover gets it back off at the release (in a later run:
// the bridge profile recorded it), not switched on.
func TestReleaseBridgeKeepsAutoconnectOff(t *testing.T) {
	h := hostns.New(t, "vboda", hostns.NetworkManager)
	ctx := context.Background()
	h.OwnUplink(t)
	h.Run(t, "nmcli", "connection", "modify", hostns.Uplink, "connection.autoconnect", "no")
	beforeProfiles, beforeActive := profiles(t, h), activeProfile(t, h, hostns.Uplink)
	if _, err := New(h.Bus(t)).Handover(ctx, spec(h)); err != nil {
		t.Fatalf("Handover: %v\n%s", err, h.Log("networkmanager"))
	}
	conns, err := New(h.Bus(t)).profiles(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range conns {
		if id, _ := c["connection"]["id"].Value().(string); id == BridgeProfile(bridge) && uplinkAutoconnect(c) {
			t.Errorf("bridge profile %s does not record the uplink's autoconnect off: user %v", id, c["user"])
		}
	}
	cs, err := New(h.Bus(t)).ReleaseBridge(ctx, desired.Bridge{Name: bridge})
	if err != nil {
		t.Fatalf("ReleaseBridge: %v\n%s", err, h.Log("networkmanager"))
	}
	t.Logf("changes: %v", cs)
	if p := profiles(t, h); p != beforeProfiles {
		t.Errorf("NetworkManager's profiles are not as before the handoff:\n%s\n--- after ---\n%s", beforeProfiles, p)
	}
	if p := activeProfile(t, h, hostns.Uplink); p != beforeActive {
		t.Errorf("uplink in NetworkManager: %q, want %q as before", p, beforeActive)
	}
	if len(cs) == 0 || !strings.Contains(cs[0].After, "autoconnect no") {
		t.Errorf("changes %v; want the uplink's profile given back with autoconnect no", cs)
	}
}
