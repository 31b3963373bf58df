package engine

import (
	"errors"
	"fmt"
	"testing"
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
