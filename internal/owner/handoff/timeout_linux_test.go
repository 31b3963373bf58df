package handoff

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/virtbridge/virtbridge/internal/desired"
)

// TestTimeoutKeepsRoomForTheRollback: without a deadline (the daemon) a
// manager gets o.Timeout (30 s by default); under the hook's deadline it
// gets what is left less rollbackReserve, so a failed probe is rolled back
// before the hook gives up; with too little left the handoff is refused
// before it starts, by a message naming hook_timeout.
func TestTimeoutKeepsRoomForTheRollback(t *testing.T) {
	b := desired.Bridge{Name: "br0", Uplink: "uplink0"}
	within := func(limit time.Duration) context.Context {
		ctx, cancel := context.WithTimeout(context.Background(), limit)
		t.Cleanup(cancel)
		return ctx
	}
	for _, tc := range []struct {
		name     string
		o        Owners
		ctx      context.Context
		min, max time.Duration
		err      string
	}{
		{"no deadline, default", Owners{}, context.Background(), 30 * time.Second, 30 * time.Second, ""},
		{"no deadline, set", Owners{Timeout: 5 * time.Second}, context.Background(), 5 * time.Second, 5 * time.Second, ""},
		{"hook_timeout 20s", Owners{}, within(20 * time.Second), 11 * time.Second, 12 * time.Second, ""},
		{"shorter timeout", Owners{Timeout: 3 * time.Second}, within(20 * time.Second), 3 * time.Second, 3 * time.Second, ""},
		{"too little left", Owners{}, within(8500 * time.Millisecond), 0, 0,
			`bridge "br0": handing uplink "uplink0" over to its manager: `},
	} {
		got, err := tc.o.timeout(tc.ctx, b)
		if tc.err != "" {
			if err == nil || !strings.HasPrefix(err.Error(), tc.err) || !strings.Contains(err.Error(), "raise hook_timeout") {
				t.Errorf("%s: timeout = %v, %v; want an error %q... naming hook_timeout", tc.name, got, err, tc.err)
			}
			continue
		}
		if err != nil || got < tc.min || got > tc.max {
			t.Errorf("%s: timeout = %v, %v; want %v..%v", tc.name, got, err, tc.min, tc.max)
		}
	}
}
