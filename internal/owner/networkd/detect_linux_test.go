package networkd

import (
	"context"
	"strings"
	"testing"

	"github.com/virtbridge/virtbridge/internal/owner"
	"github.com/virtbridge/virtbridge/internal/testenv/hostns"
)

// TestDetect: networkd owns the uplink once a .network matches it, not
// before; a link it does not know is nobody's; the detection changes
// nothing.
func TestDetect(t *testing.T) {
	h := hostns.New(t, "vbn", hostns.Networkd)
	c := New(h.Bus(t))
	ctx := context.Background()
	if o, ok, err := c.Detect(ctx, hostns.Uplink); err != nil || ok {
		t.Fatalf("before any .network: Detect = %+v, %v, %v; want not owned", o, ok, err)
	}
	if o, ok, err := c.Detect(ctx, "nosuch0"); err != nil || ok {
		t.Fatalf("unknown link: Detect = %+v, %v, %v; want not owned, no error", o, ok, err)
	}
	h.OwnUplink(t)
	before := h.Dump(t)
	o, ok, err := c.Detect(ctx, hostns.Uplink)
	if err != nil || !ok || o.Kind != owner.Networkd || o.Uplink != hostns.Uplink ||
		!strings.Contains(o.Detail, hostns.NetworkdUplinkFile) {
		t.Fatalf("Detect = %+v, %v, %v; want networkd with its .network named", o, ok, err)
	}
	if after := h.Dump(t); after != before {
		t.Fatalf("Detect changed the host:\n%s\n---\n%s", before, after)
	}
}
