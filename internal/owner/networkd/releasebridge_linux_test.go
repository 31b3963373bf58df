package networkd

import (
	"context"
	"path/filepath"
	"slices"
	"testing"

	"github.com/virtbridge/virtbridge/internal/desired"
	"github.com/virtbridge/virtbridge/internal/testenv/hostns"
)

// TestReleaseBridge: after a handoff to systemd-networkd, ReleaseBridge
// (in a later run: it knows only the bridge's name) removes virtbridge's
// files, the bridge goes, and the uplink is configured from its own
// .network again with its leased address, reachable from upstream.
func TestReleaseBridge(t *testing.T) {
	h := hostns.New(t, "vbq", hostns.Networkd)
	c := New(h.Bus(t))
	ctx := context.Background()
	addr := h.OwnUplink(t)
	was, _, err := c.linkState(ctx, hostns.Uplink)
	if err != nil {
		t.Fatal(err)
	}
	s := spec(h)
	if _, err := c.Handover(ctx, s); err != nil {
		t.Fatalf("Handover: %v\n%s", err, h.Log("networkd"))
	}
	file, ok, err := c.MadeBridge(ctx, bridge)
	if err != nil || !ok || !c.Ours(file, bridge) {
		t.Fatalf("MadeBridge = %q, %v, %v; want one of virtbridge's files", file, ok, err)
	}
	s.Bridge = desired.Bridge{Name: bridge}
	cs, err := New(h.Bus(t)).ReleaseBridge(ctx, s)
	if err != nil {
		t.Fatalf("ReleaseBridge: %v\n%s", err, h.Log("networkd"))
	}
	t.Logf("changes: %v", cs)
	if m, _ := filepath.Glob(h.Path(filepath.Join(c.Dir, prefix+"*"))); len(m) > 0 {
		t.Errorf("files left behind: %v", m)
	}
	if _, err := h.Exec("ip", "link", "show", bridge); err == nil {
		t.Errorf("bridge %s still there after the release", bridge)
	}
	if l, _, err := c.linkState(ctx, hostns.Uplink); err != nil || l.file != was.file || l.admin != "configured" {
		t.Errorf("uplink in networkd after the release: %s from %q (%v); want configured from %q", l.admin, l.file, err, was.file)
	}
	if a := h.Addresses(t, hostns.Uplink); !slices.Equal(a, []string{addr}) || !h.PingFromUpstream(addr) {
		t.Errorf("uplink has %v after the release, want %s reachable", a, addr)
	}
}
