// Package netnstest gives privileged tests a fresh network namespace of
// their own, created with iproute2 (so no test thread ever switches
// namespace) and deleted when the test ends, also when it fails.
package netnstest

import (
	"crypto/rand"
	"encoding/hex"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/vishvananda/netns"
)

// NS is a named network namespace owned by one test.
type NS struct {
	Name   string
	Handle netns.NsHandle

	deleted bool // by Delete, before the test's end
}

// RequireRoot skips t, saying why, unless the test runs as root with
// iproute2 available, and always under -short (`make unit`): -short runs
// no privileged test, not even as root.
func RequireRoot(t testing.TB) {
	t.Helper()
	if testing.Short() {
		t.Skip("skipped in -short: needs root and network namespaces")
	}
	if os.Geteuid() != 0 {
		t.Skip("skipped: needs root to create network namespaces (run `sudo make test`)")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("skipped: needs iproute2's ip command")
	}
}

// New creates a network namespace named after prefix and a random suffix,
// with lo up. It is deleted at the end of the test.
func New(t testing.TB, prefix string) *NS {
	t.Helper()
	RequireRoot(t)
	b := make([]byte, 4)
	rand.Read(b)
	name := prefix + "-" + hex.EncodeToString(b)
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add %s: %v: %s", name, err, out)
	}
	n := &NS{Name: name, Handle: -1}
	t.Cleanup(func() {
		if n.deleted {
			return
		}
		if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
			t.Errorf("ip netns del %s: %v: %s", name, err, out)
		}
	})
	h, err := netns.GetFromName(name)
	if err != nil {
		t.Fatalf("opening netns %s: %v", name, err)
	}
	n.Handle = h
	t.Cleanup(func() { n.Handle.Close() })
	n.Run(t, "ip", "link", "set", "lo", "up")
	return n
}

// Exec runs a command inside the namespace (ip netns exec, so /sys and
// /proc/sys/net are the namespace's own) with LC_ALL=C and returns its
// combined output.
func (n *NS) Exec(args ...string) (string, error) {
	cmd := exec.Command("ip", append([]string{"netns", "exec", n.Name}, args...)...)
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// Run is Exec that fails the test on error.
func (n *NS) Run(t testing.TB, args ...string) string {
	t.Helper()
	out, err := n.Exec(args...)
	if err != nil {
		t.Fatalf("in netns %s: %s: %v\n%s", n.Name, strings.Join(args, " "), err, out)
	}
	return out
}

// Script runs each line as a command in the namespace, failing the test on
// the first error. Lines are split on spaces; no shell is involved.
func (n *NS) Script(t testing.TB, lines string) {
	t.Helper()
	for _, l := range strings.Split(lines, "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
			n.Run(t, strings.Fields(l)...)
		}
	}
}
