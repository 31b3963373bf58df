package handoff

import (
	"context"
	"strings"
	"testing"

	"github.com/virtbridge/virtbridge/internal/desired"
	"github.com/virtbridge/virtbridge/internal/owner/networkd"
	"github.com/virtbridge/virtbridge/internal/owner/nm"
	"github.com/virtbridge/virtbridge/internal/revert"
	"github.com/virtbridge/virtbridge/internal/testenv/hostns"
)

// TestReleaseThroughTheOwner: on a host of each manager, a bridge handed
// over to it is released through it (handled): with a VM tap in the bridge
// the release is refused, naming the tap, and changes nothing; without, the
// host is as before the handoff (namespace dump, NetworkManager's
// profiles). A bridge the kernel path made is not the owners' (not
// handled).
func TestReleaseThroughTheOwner(t *testing.T) {
	for _, m := range []hostns.Manager{hostns.NetworkManager, hostns.Networkd} {
		t.Run(string(m), func(t *testing.T) {
			t.Parallel()
			testRelease(t, m)
		})
	}
}

func testRelease(t *testing.T, m hostns.Manager) {
	h := hostns.New(t, "vbq", m)
	bus := h.Bus(t)
	o := &Owners{NS: h.NS.Handle, Root: h.Path("/")}
	if m == hostns.NetworkManager {
		o.NM = nm.New(bus)
	} else {
		o.Networkd = networkd.New(bus)
	}
	ctx := context.Background()
	h.OwnUplink(t)
	before, beforeProfiles := lifetimes.ReplaceAllString(h.Dump(t), "lft"), nmProfiles(t, h)
	if w, ok, err := o.Owner(ctx, hostns.Uplink); err != nil || !ok || string(w.Kind) != string(m) {
		t.Fatalf("Owner(%s) = %+v, %v, %v; want %s (what plan, status and doctor show)", hostns.Uplink, w, ok, err, m)
	}
	b := desired.Bridge{Name: "br0", Uplink: hostns.Uplink, MoveAddresses: true}
	var rv revert.Reverter
	if _, handled, err := o.EnsureBridge(ctx, b, &rv); err != nil || !handled {
		t.Fatalf("EnsureBridge = %v, %v", handled, err)
	}
	rv.Success()
	h.Run(t, "ip", "tuntap", "add", "dev", "vnet0", "mode", "tap")
	h.Run(t, "ip", "link", "set", "vnet0", "master", "br0", "up")
	withTap := lifetimes.ReplaceAllString(h.Dump(t), "lft")
	_, _, handled, err := o.ReleaseBridge(ctx, desired.Bridge{Name: "br0"}, &rv)
	if !handled || err == nil || !strings.Contains(err.Error(), "VM taps vnet0") {
		t.Fatalf("ReleaseBridge with a tap = %v, %v; want a refusal naming vnet0", handled, err)
	}
	t.Logf("refused: %v", err)
	if after := lifetimes.ReplaceAllString(h.Dump(t), "lft"); after != withTap {
		t.Fatalf("the refusal changed the host:\n%s\n--- after ---\n%s", withTap, after)
	}
	h.Run(t, "ip", "link", "del", "vnet0")
	cs, kept, handled, err := o.ReleaseBridge(ctx, desired.Bridge{Name: "br0"}, &rv)
	if !handled || err != nil || len(kept) != 0 {
		t.Fatalf("ReleaseBridge = %v, %v, %v", kept, handled, err)
	}
	t.Logf("changes: %v", cs)
	h.Settle(t)
	if after := lifetimes.ReplaceAllString(h.Dump(t), "lft"); after != before {
		t.Errorf("the host is not as before the handoff:\n%s\n--- after ---\n%s", before, after)
	}
	if p := nmProfiles(t, h); p != beforeProfiles {
		t.Errorf("NetworkManager's profiles are not as before:\n%s\n--- after ---\n%s", beforeProfiles, p)
	}
	h.Run(t, "ip", "link", "add", "br9", "type", "bridge")
	if _, _, handled, err := o.ReleaseBridge(ctx, desired.Bridge{Name: "br9"}, &rv); handled || err != nil {
		t.Errorf("ReleaseBridge of a bridge no manager configures = %v, %v; want the kernel path's", handled, err)
	}
}
