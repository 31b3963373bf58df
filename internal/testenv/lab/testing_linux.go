package lab

import (
	"context"
	"path/filepath"
	"testing"
	"time"
)

// ForTest starts a lab for t, or skips t under -short (`make unit`) or when
// the machine cannot run one.
// The lab is closed when t ends; when t has failed, the tails of libvirtd's
// and dnsmasq's logs are logged first.
func ForTest(t testing.TB, opts Options) *Lab {
	t.Helper()
	if testing.Short() {
		t.Skip("skipped in -short: needs root, namespaces and libvirtd")
	}
	if err := Unavailable(opts.Upstream); err != nil {
		t.Skipf("skipping: %v", err)
	}
	if opts.Logf == nil {
		opts.Logf = t.Logf
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	l, err := Start(ctx, opts)
	if err != nil {
		t.Fatalf("starting lab: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			for _, f := range []string{"libvirtd.log", "dnsmasq.log"} {
				t.Logf("%s", tail(filepath.Join(l.Dir(), f), 30))
			}
		}
		if err := l.Close(); err != nil {
			t.Errorf("closing lab: %v", err)
		}
	})
	return l
}
