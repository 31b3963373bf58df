package firewall

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/virtbridge/virtbridge/internal/desired"
	"github.com/virtbridge/virtbridge/internal/testenv/netnstest"
)

// TestRecycledNamespaceIsNotTrusted reproduces issue 14 #2: a namespace
// is deleted, the next one gets its inode number (and its /run/netns
// path), and after a few rule changes its nf_tables generation is the one
// recorded in the old namespace's state. Keyed by the inode, Ensure then
// believed the rules were in place, skipped them, and FORWARD kept
// rejecting bridged frames. Keyed by the namespace cookie it verifies.
func TestRecycledNamespaceIsNotTrusted(t *testing.T) {
	netnstest.RequireRoot(t)
	dir := t.TempDir()
	l := &lab{dir: dir, log: filepath.Join(dir, "calls.log"),
		fail: filepath.Join(dir, "fail"), state: filepath.Join(dir, "firewall.state")}
	p := desired.Firewall{Backend: BackendAuto, AcceptBridges: []string{"br0"}}
	var st *state
	// Other processes make namespaces too and may take the freed number
	// and keep it: then start over with a new first namespace.
	deadline := time.Now().Add(3 * time.Minute)
	for round := 1; ; round++ {
		first := netnstest.New(t, "vbfrec")
		l.useNS(t, first)
		f := l.firewall(false)
		breakForward(t, l)
		mustEnsure(t, f, p)
		if _, runs := ensureCounting(t, l, f, p); len(runs) != 0 {
			t.Fatalf("steady Ensure in the first namespace ran %q", runs)
		}
		var err error
		if st, err = loadState(l.state); err != nil || st == nil || !st.GenOK {
			t.Fatalf("state after Ensure: %+v, %v", st, err)
		}
		ino := first.Inode(t)
		first.Delete(t)
		next, tries, ok := netnstest.Recycle(t, "vbfrec", ino, 20*time.Second)
		if ok {
			t.Logf("round %d: namespace inode %d handed out again to %s after %d tries", round, ino, next.Name, tries)
			l.useNS(t, next) // the same state file
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("round %d: namespace inode %d not handed out again in %d tries", round, ino, tries)
		}
		t.Logf("round %d: inode %d taken by another namespace; starting over", round, ino)
	}
	f := l.firewall(false)
	breakForward(t, l)
	l.ns.PadGeneration(t, st.Gen)
	t.Logf("nf_tables generation brought to %d, as recorded", st.Gen)

	n, runs := ensureCounting(t, l, f, p)
	t.Logf("Ensure in the recycled namespace: %d changes, %d iptables runs", n, len(runs))
	fwd := l.ipt(t, NFT, IPv4, "-S", "FORWARD")
	if !strings.Contains(fwd, "-j "+Chain) {
		t.Errorf("after Ensure in a namespace that reuses the inode and generation of a deleted one, FORWARD has no jump to %s:\n%s", Chain, fwd)
	}
	if diff, err := f.Check(context.Background(), p); err != nil || len(diff) != 0 {
		t.Errorf("Check after Ensure: %q, %v", diff, err)
	}
	if _, runs := ensureCounting(t, l, f, p); len(runs) != 0 {
		t.Errorf("steady Ensure in the recycled namespace ran %q", runs)
	}
}

// useNS points the lab's wrappers at namespace ns.
func (l *lab) useNS(t *testing.T, ns *netnstest.NS) {
	t.Helper()
	l.ns = ns
	l.wrap(t, commands, []Variant{NFT})
}

// breakForward makes FORWARD drop and reject, as Docker and old RHEL do.
func breakForward(t *testing.T, l *lab) {
	t.Helper()
	l.both(t, NFT, "-P", "FORWARD", "DROP")
	l.ipt(t, NFT, IPv4, "-A", "FORWARD", "-j", "REJECT", "--reject-with", "icmp-host-prohibited")
	l.ipt(t, NFT, IPv6, "-A", "FORWARD", "-j", "REJECT")
}

// BenchmarkFacts measures what the fast path reads before it decides, in
// the process's own namespace as the hook does: boot id, namespace cookie,
// legacy tables, nf_tables generation.
func BenchmarkFacts(b *testing.B) {
	for _, tc := range []struct {
		name string
		fn   func() error
	}{
		{"facts", func() error { _, err := netns{}.facts(); return err }},
		{"generation+cookie", func() error { _, _, err := nftGeneration(0); return err }},
	} {
		b.Run(tc.name, func(b *testing.B) {
			for b.Loop() {
				if err := tc.fn(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
