package engine

import (
	"errors"
	"fmt"
	"testing"

	"github.com/virtbridge/virtbridge/internal/links"
)

// TestRetryable: the daemon retries a failed reconcile, but a running VM
// the policy refuses would be refused (and journaled) again at every
// retry; only the other failures are worth one.
func TestRetryable(t *testing.T) {
	refused := fmt.Errorf("domain %q: %w", "web", &PolicyError{Err: errors.New("NIC names eth0")})
	host := fmt.Errorf("domain %q: %w", "db", &HostError{Err: errors.New("uplink missing")})
	lock := errors.New("waiting for the host lock: timed out")
	for _, tc := range []struct {
		in   error
		want string
	}{
		{nil, ""},
		{refused, ""},
		{errors.Join(nil, refused), ""},
		{errors.Join(errors.Join(refused), host), host.Error()},
		{errors.Join(refused, lock, host), lock.Error() + "\n" + host.Error()},
		{lock, lock.Error()},
	} {
		got := Retryable(tc.in)
		if (got == nil) != (tc.want == "") || (got != nil && got.Error() != tc.want) {
			t.Errorf("Retryable(%v) = %v, want %q", tc.in, got, tc.want)
		}
	}
}

// TestRetryableRefusals: a bridge refusal that stays until the host or the
// configuration changes is no more worth a retry than a policy refusal;
// every bridge's error must be one for nothing to be left (the daemon is
// then ready with the refusal). A bridge still waiting (its uplink not
// there yet, a probe that may pass) keeps the whole worth a retry.
func TestRetryableRefusals(t *testing.T) {
	lease := &BridgeError{Bridge: "br0", Err: fmt.Errorf("uplink %q of bridge %q has a lease: %w", "eth0", "br0", links.ErrDynamicAddress)}
	wireless := &BridgeError{Bridge: "br1", Err: fmt.Errorf("wlan0: %w", links.ErrUplinkWireless)}
	missing := &BridgeError{Bridge: "br2", Err: fmt.Errorf("eth9: %w", links.ErrUplinkMissing)}
	probe := &BridgeError{Bridge: "br3", Err: fmt.Errorf("10.0.0.1 silent: %w", links.ErrProbe)}
	for _, c := range []struct {
		name    string
		err     error
		refused bool
	}{
		{"none", nil, false},
		{"a lease", lease, true},
		{"a lease and a wireless uplink", errors.Join(lease, wireless), true},
		{"a policy refusal", &PolicyError{Err: errors.New("no bridge for network x")}, true},
		{"a lease and a missing uplink", errors.Join(lease, missing), false},
		{"a probe", probe, false},
		{"netlink", errors.New("netlink: resource busy"), false},
		{"a join nested in one bridge's error", &BridgeError{Bridge: "br0", Err: errors.Join(lease, missing)}, false},
	} {
		if got := c.err != nil && Retryable(c.err) == nil; got != c.refused {
			t.Errorf("%s: refused (Retryable(%v) = nil) is %v, want %v", c.name, c.err, got, c.refused)
		}
	}
}
