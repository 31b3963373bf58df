package main

import (
	"errors"
	"fmt"
	"testing"

	"github.com/virtbridge/virtbridge/internal/engine"
	"github.com/virtbridge/virtbridge/internal/links"
)

// TestRefusedOnly: the start-up pass is a refusal no retry cures only when
// every bridge's error is one; a bridge still waiting (its uplink not
// there yet, a probe that may pass) keeps the daemon retrying.
func TestRefusedOnly(t *testing.T) {
	lease := &engine.BridgeError{Bridge: "br0", Err: fmt.Errorf("uplink %q of bridge %q has a lease: %w", "eth0", "br0", links.ErrDynamicAddress)}
	wireless := &engine.BridgeError{Bridge: "br1", Err: fmt.Errorf("wlan0: %w", links.ErrUplinkWireless)}
	missing := &engine.BridgeError{Bridge: "br2", Err: fmt.Errorf("eth9: %w", links.ErrUplinkMissing)}
	probe := &engine.BridgeError{Bridge: "br3", Err: fmt.Errorf("10.0.0.1 silent: %w", links.ErrProbe)}
	for _, c := range []struct {
		name string
		err  error
		want bool
	}{
		{"none", nil, false},
		{"a lease", lease, true},
		{"a lease and a wireless uplink", errors.Join(lease, wireless), true},
		{"a policy refusal", &engine.PolicyError{Err: errors.New("no bridge for network x")}, true},
		{"a lease and a missing uplink", errors.Join(lease, missing), false},
		{"a probe", probe, false},
		{"netlink", errors.New("netlink: resource busy"), false},
		{"a join nested in one bridge's error", &engine.BridgeError{Bridge: "br0", Err: errors.Join(lease, missing)}, false},
	} {
		if got := refusedOnly(c.err); got != c.want {
			t.Errorf("%s: refusedOnly(%v) = %v, want %v", c.name, c.err, got, c.want)
		}
	}
}
