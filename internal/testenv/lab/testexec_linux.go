package lab

import (
	"context"
	"testing"
	"time"
)

// testStep bounds each command of the helpers below.
const testStep = 60 * time.Second

// RunHV runs a command in the lab's hypervisor namespaces (ExecHV) and
// returns its output; it fails t on error or after 60 s.
func (l *Lab) RunHV(t testing.TB, name string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testStep)
	defer cancel()
	out, err := l.ExecHV(ctx, name, args...)
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

// RunVirsh runs virsh in the lab (Virsh) and returns its output; it fails t
// on error or after 60 s.
func (l *Lab) RunVirsh(t testing.TB, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testStep)
	defer cancel()
	out, err := l.Virsh(ctx, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// DefineForTest defines the domain name from domainXML without starting it
// (Define), failing t on error, and destroys and undefines it when t ends.
func (l *Lab) DefineForTest(t testing.TB, name, domainXML string) {
	t.Helper()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), testStep)
		defer cancel()
		if err := l.DestroyUndefine(ctx, name); err != nil {
			t.Errorf("removing VM: %v", err)
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), testStep)
	defer cancel()
	if err := l.Define(ctx, domainXML); err != nil {
		t.Fatal(err)
	}
}
