package hostns

import (
	"strings"
	"testing"
)

// TestHostManagersGetALease proves the environment: each manager runs in
// its own host, owns the uplink and gets a DHCP lease from upstream, which
// can ping it; nothing of it is left in the machine's namespaces.
func TestHostManagersGetALease(t *testing.T) {
	for _, m := range []Manager{NetworkManager, Networkd} {
		t.Run(string(m), func(t *testing.T) {
			t.Parallel()
			h := New(t, "vbn", m)
			addr := h.OwnUplink(t)
			if !strings.HasPrefix(addr, "10.88.0.") {
				t.Fatalf("lease %q not from upstream", addr)
			}
			if !h.PingFromUpstream(addr) {
				t.Fatalf("upstream cannot ping %s", addr)
			}
			t.Logf("%s: uplink has %s, %s", h, addr, h.DefaultRoute(t))
		})
	}
}
