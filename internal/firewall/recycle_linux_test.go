package firewall

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/virtbridge/virtbridge/internal/netnstest"
	"github.com/virtbridge/virtbridge/internal/policy"
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
	p := policy.Firewall{Backend: BackendAuto, AcceptBridges: []string{"br0"}}
	var st *state
	var f *Firewall
	// Other processes make namespaces too and may take the freed number
	// and keep it: then start over with a new first namespace.
	deadline := time.Now().Add(3 * time.Minute)
	for round := 1; ; round++ {
		b := make([]byte, 4)
		rand.Read(b)
		first := "vbfrec-" + hex.EncodeToString(b)
		addNS(t, first)
		l.useNS(t, first)
		f = l.firewall(false)
		breakForward(t, l)
		mustEnsure(t, f, p)
		if _, runs := ensureCounting(t, l, f, p); len(runs) != 0 {
			t.Fatalf("steady Ensure in the first namespace ran %q", runs)
		}
		var err error
		if st, err = loadState(l.state); err != nil || st == nil || !st.GenOK {
			t.Fatalf("state after Ensure: %+v, %v", st, err)
		}
		ino := inodeOf(t, "/run/netns/"+first)
		delNS(t, first)
		name, tries, ok := recycle(t, first, ino, 20*time.Second)
		if ok {
			t.Logf("round %d: namespace inode %d handed out again to %s after %d tries", round, ino, name, tries)
			l.useNS(t, name) // the same state file
			f = l.firewall(false)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("round %d: namespace inode %d not handed out again in %d tries (held by: %s)", round, ino, tries, holders(ino))
		}
		t.Logf("round %d: inode %d taken by another namespace (held by: %s); starting over", round, ino, holders(ino))
	}
	breakForward(t, l)
	gen := padGeneration(t, f, st.Gen)
	t.Logf("nf_tables generation brought to %d, as recorded", gen)

	n, runs := ensureCounting(t, l, f, p)
	t.Logf("Ensure in the recycled namespace: %d changes, %d iptables runs", n, len(runs))
	fwd := l.ipt(t, NFT, IPv4, "-S", "FORWARD")
	if !strings.Contains(fwd, "-j "+Chain) {
		t.Errorf("after Ensure in a namespace that reuses the inode and generation of a deleted one, FORWARD has no jump to %s:\n%s", Chain, fwd)
	}
	if diff, err := f.Check(p); err != nil || len(diff) != 0 {
		t.Errorf("Check after Ensure: %q, %v", diff, err)
	}
	if _, runs := ensureCounting(t, l, f, p); len(runs) != 0 {
		t.Errorf("steady Ensure in the recycled namespace ran %q", runs)
	}
}

// useNS points the lab's wrappers at namespace name.
func (l *lab) useNS(t *testing.T, name string) {
	t.Helper()
	l.ns = &netnstest.NS{Name: name}
	l.wrap(t, commands, []Variant{NFT})
}

// breakForward makes FORWARD drop and reject, as Docker and old RHEL do.
func breakForward(t *testing.T, l *lab) {
	t.Helper()
	l.both(t, NFT, "-P", "FORWARD", "DROP")
	l.ipt(t, NFT, IPv4, "-A", "FORWARD", "-j", "REJECT", "--reject-with", "icmp-host-prohibited")
	l.ipt(t, NFT, IPv6, "-A", "FORWARD", "-j", "REJECT")
}

// recycle creates namespaces named prefix-N until one gets inode ino, and
// returns its name. The kernel hands out the lowest free number, and frees
// a deleted namespace's number once its cleanup has run, some time after
// `ip netns del`. A namespace that got a higher number is deleted (ino is
// not free yet); one that got a lower number is kept until the end, since
// it fills a hole left by a namespace deleted after the first was made.
// ok is false when ino did not come back within patience.
func recycle(t *testing.T, prefix string, ino uint64, patience time.Duration) (name string, tries int, ok bool) {
	t.Helper()
	deadline := time.Now().Add(patience)
	for try := 1; ; try++ {
		name := fmt.Sprintf("%s-%d", prefix, try)
		addNS(t, name)
		got := inodeOf(t, "/run/netns/"+name)
		if got == ino {
			return name, try, true
		}
		if got > ino {
			delNS(t, name)
		}
		if time.Now().After(deadline) {
			return "", try, false
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// padGeneration changes the ruleset until its generation is want.
func padGeneration(t *testing.T, f *Firewall, want uint32) uint32 {
	t.Helper()
	for i := 0; ; i++ {
		fx, err := f.ns.facts()
		if err != nil || !fx.GenOK {
			t.Fatalf("reading the generation: %+v, %v", fx, err)
		}
		if fx.Gen == want {
			return fx.Gen
		}
		if fx.Gen > want || i > 1000 {
			t.Fatalf("generation %d passed the recorded %d", fx.Gen, want)
		}
		verb := "add"
		if i%2 == 1 {
			verb = "delete"
		}
		cmd := exec.Command("ip", "netns", "exec", f.ns.path[len("/run/netns/"):], "nft", verb, "table", "inet", "vbfpad")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("nft %s table: %v: %s", verb, err, out)
		}
	}
}

func addNS(t *testing.T, name string) {
	t.Helper()
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add %s: %v: %s", name, err, out)
	}
	t.Cleanup(func() {
		if _, err := os.Stat("/run/netns/" + name); errors.Is(err, fs.ErrNotExist) {
			return
		}
		if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
			t.Errorf("ip netns del %s: %v: %s", name, err, out)
		}
	})
}

func delNS(t *testing.T, name string) {
	t.Helper()
	if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns del %s: %v: %s", name, err, out)
	}
}

func inodeOf(t *testing.T, path string) uint64 {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	return st.Ino
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

// holders lists the threads whose network namespace is inode ino.
func holders(ino uint64) string {
	links, _ := filepath.Glob("/proc/*/task/*/ns/net")
	var out []string
	want := fmt.Sprintf("net:[%d]", ino)
	for _, l := range links {
		if dst, err := os.Readlink(l); err == nil && dst == want {
			out = append(out, l)
		}
	}
	if len(out) == 0 {
		return "no thread (a socket, a mount or the kernel's cleanup)"
	}
	return strings.Join(out, ", ")
}
