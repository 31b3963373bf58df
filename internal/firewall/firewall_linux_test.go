package firewall

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/virtbridge/virtbridge/internal/change"
	"github.com/virtbridge/virtbridge/internal/desired"
	"github.com/virtbridge/virtbridge/internal/revert"
)

var variants = []Variant{NFT, Legacy}

func backendOf(v Variant) string { return "iptables-" + string(v) }

func mustEnsure(t testing.TB, f interface {
	Ensure(context.Context, desired.Firewall, *revert.Reverter) ([]change.Change, error)
}, p desired.Firewall) []change.Change {
	t.Helper()
	var rv revert.Reverter
	cs, err := f.Ensure(context.Background(), p, &rv)
	if err != nil {
		t.Fatalf("Ensure(%v): %v", p, err)
	}
	rv.Success()
	return cs
}

// TestEnsureMatchesFake is the differential test: the same foreign
// commands and the same Ensure calls on the kernel and on the Fake must
// leave exactly the same `iptables -S` and `ip6tables -S`.
func TestEnsureMatchesFake(t *testing.T) {
	for _, v := range variants {
		t.Run(string(v), func(t *testing.T) {
			l := newLab(t, v)
			real, fake := l.firewall(true), NewFake()
			step := func(name string, p desired.Firewall, foreign ...string) {
				t.Helper()
				for _, c := range foreign {
					l.both(t, v, strings.Fields(c)...)
					fakeRun(t, fake, c)
				}
				rc, fc := mustEnsure(t, real, p), mustEnsure(t, fake, p)
				if got, want := l.show(t, v), fake.String(); got != want {
					t.Fatalf("%s: kernel\n%s\nFake\n%s", name, got, want)
				}
				if rs, fs := changeKinds(rc), changeKinds(fc); rs != fs {
					t.Errorf("%s: kernel changes %s, Fake changes %s", name, rs, fs)
				}
				before := l.show(t, v)
				if again := mustEnsure(t, real, p); len(again) != 0 {
					t.Errorf("%s: second Ensure changed %v", name, again)
				}
				if after := l.show(t, v); after != before {
					t.Errorf("%s: second Ensure changed the table:\n%s\nto\n%s", name, before, after)
				}
				if probs, err := real.Check(context.Background(), p); err != nil || len(probs) != 0 {
					t.Errorf("%s: Check after Ensure: %q, %v", name, probs, err)
				}
			}
			p := desired.Firewall{Backend: backendOf(v), AcceptBridges: []string{"br0", "br1"}}
			step("from empty", p)
			want := "-P INPUT ACCEPT\n-P FORWARD ACCEPT\n-P OUTPUT ACCEPT\n-N VIRTBRIDGE-FWD\n" +
				"-A FORWARD -m comment --comment virtbridge -j VIRTBRIDGE-FWD\n" + acceptBr0 + "\n" + acceptBr1 + "\n"
			if got := l.ipt(t, v, IPv4, "-S"); got != want {
				t.Errorf("iptables -S:\n%s\nwant\n%s", got, want)
			}
			step("foreign rules above and below", p,
				"-I FORWARD 1 -i eth9 -m comment --comment foreign -j DROP",
				"-A FORWARD -o eth9 -j DROP",
				"-P FORWARD DROP")
			step("docker", p, "-N DOCKER-USER", "-A DOCKER-USER -j RETURN", "-I FORWARD 1 -j DOCKER-USER")
			step("bridge removed", desired.Firewall{Backend: backendOf(v), AcceptBridges: []string{"br1"}})
			step("stray and duplicate", desired.Firewall{Backend: backendOf(v), AcceptBridges: []string{"br1"}},
				"-A FORWARD "+jumpSpec, "-A VIRTBRIDGE-FWD -j DROP")
			step("no bridges", desired.Firewall{Backend: backendOf(v)})
			if got := l.ipt(t, v, IPv4, "-S"); strings.Contains(got, Chain) || !strings.Contains(got, "-A FORWARD -i eth9 -m comment --comment foreign -j DROP") {
				t.Errorf("after removal:\n%s", got)
			}
		})
	}
}

func changeKinds(cs []change.Change) string {
	var s []string
	for _, c := range cs {
		s = append(s, string(c.Kind)+" "+strings.SplitN(c.Object, " ", 2)[1]+" "+c.Before+c.After)
	}
	return strings.Join(s, "\n")
}

// TestUndoRestoresKernelTables fails a change halfway (the ip6tables jump
// into DOCKER-USER) and checks that the undo steps restore both tables.
func TestUndoRestoresKernelTables(t *testing.T) {
	for _, v := range variants {
		t.Run(string(v), func(t *testing.T) {
			l := newLab(t, v)
			f := l.firewall(false)
			p := desired.Firewall{Backend: backendOf(v), AcceptBridges: []string{"br0"}}
			mustEnsure(t, f, p)
			l.both(t, v, "-N", "DOCKER-USER")
			l.both(t, v, "-I", "FORWARD", "1", "-j", "LOG")
			before := l.show(t, v)
			l.failOn(t, fmt.Sprintf("ip6tables-%s -t filter -I DOCKER-USER", v))
			var rv revert.Reverter
			cs, err := f.Ensure(context.Background(), desired.Firewall{Backend: backendOf(v), AcceptBridges: []string{"br1"}}, &rv)
			if err == nil || !strings.Contains(err.Error(), "injected failure") {
				t.Fatalf("Ensure: %v, want the injected failure", err)
			}
			if len(cs) < 4 || rv.Len() != len(cs) {
				t.Fatalf("%d changes, %d undo steps:\n%v", len(cs), rv.Len(), cs)
			}
			l.failOn(t, "")
			if err := rv.Fail(); err != nil {
				t.Fatal(err)
			}
			if after := l.show(t, v); after != before {
				t.Errorf("after undo:\n%s\nwant\n%s", after, before)
			}
		})
	}
}

// TestBatchAndItsUndo: with iptables-restore at hand a table's changes go
// in one batch; when the other family then fails (batch and one-by-one
// alike), undoing restores both tables exactly.
func TestBatchAndItsUndo(t *testing.T) {
	for _, v := range variants {
		t.Run(string(v), func(t *testing.T) {
			l := newLab(t, v)
			l.addRestore(t, v)
			f := l.firewall(true)
			l.both(t, v, "-I", "FORWARD", "1", "-j", "LOG")
			before := l.show(t, v)
			l.calls(t)
			l.failOn(t, fmt.Sprintf("ip6tables-%[1]s-restore\nip6tables-%[1]s -t filter", v))
			var rv revert.Reverter
			_, err := f.Ensure(context.Background(), desired.Firewall{Backend: backendOf(v), AcceptBridges: []string{"br0", "br1"}}, &rv)
			if err == nil || !strings.Contains(err.Error(), "injected failure") {
				t.Fatalf("Ensure: %v, want the injected failure", err)
			}
			if calls := strings.Join(l.calls(t), "\n"); !strings.Contains(calls, "iptables-"+string(v)+"-restore --noflush") {
				t.Fatalf("IPv4 changes were not batched:\n%s", calls)
			}
			if got := l.ipt(t, v, IPv4, "-S", "VIRTBRIDGE-FWD"); !strings.Contains(got, "br1") {
				t.Fatalf("the IPv4 batch did not apply:\n%s", got)
			}
			l.failOn(t, "")
			if err := rv.Fail(); err != nil {
				t.Fatal(err)
			}
			if after := l.show(t, v); after != before {
				t.Errorf("after undo:\n%s\nwant\n%s", after, before)
			}
			// Without failures the batch path reaches the same state twice.
			mustEnsure(t, f, desired.Firewall{Backend: backendOf(v), AcceptBridges: []string{"br0"}})
			first := l.show(t, v)
			mustEnsure(t, f, desired.Firewall{Backend: backendOf(v), AcceptBridges: []string{"br0"}})
			if again := l.show(t, v); again != first || !strings.Contains(first, "-i br0 -o br0") {
				t.Errorf("second Ensure changed the tables or br0 is missing:\n%s\n---\n%s", first, again)
			}
		})
	}
}

// TestRemoveAndCheck: Check reports what is wrong, Remove takes away every
// trace of virtbridge in both variants and nothing else.
func TestRemoveAndCheck(t *testing.T) {
	l := newLab(t)
	f := l.firewall(false)
	for _, v := range variants {
		mustEnsure(t, f, desired.Firewall{Backend: backendOf(v), AcceptBridges: []string{"br0"}})
		l.both(t, v, "-I", "FORWARD", "1", "-j", "LOG")
		l.both(t, v, "-A", "VIRTBRIDGE-FWD", "-j", "DROP")
	}
	probs, err := f.Check(context.Background(), desired.Firewall{Backend: BackendNFT, AcceptBridges: []string{"br0", "br1"}})
	want := []string{
		"iptables-nft: rule for bridge br1 is missing from VIRTBRIDGE-FWD",
		"iptables-nft: stray rule in VIRTBRIDGE-FWD: -j DROP",
		`iptables-nft: the jump to VIRTBRIDGE-FWD is rule 2 of FORWARD, not 1 (rule 1 is "-j LOG")`,
	}
	if err != nil || !slices.Equal(probs[:3], want) || len(probs) != 6 {
		t.Errorf("Check = %q, %v; want %q and the same for ip6tables-nft", probs, err, want)
	}
	if _, err := f.Remove(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, v := range variants {
		got := l.show(t, v)
		if strings.Contains(got, Chain) || strings.Count(got, "-A FORWARD -j LOG\n") != 2 {
			t.Errorf("%s after Remove:\n%s", v, got)
		}
	}
	if cs, err := f.Remove(context.Background()); err != nil || len(cs) != 0 {
		t.Errorf("second Remove: %v, %v", cs, err)
	}
}

func TestFindBinaries(t *testing.T) {
	dir := t.TempDir()
	touch := func(name string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("#!/bin/sh\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	link := func(name, target string) {
		os.Remove(filepath.Join(dir, name))
		if err := os.Symlink(target, filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	touch("xtables-nft-multi")
	touch("xtables-legacy-multi")
	b := binaries{dir: dir}
	find := func(v Variant, f Family, suffix string) string {
		p, err := b.find(v, f, suffix)
		if err != nil {
			return "-"
		}
		return filepath.Base(p)
	}
	if got := find(NFT, IPv4, ""); got != "-" {
		t.Errorf("empty dir: found %s", got)
	}
	link("iptables", "xtables-nft-multi") // a distribution with only plain names (RHEL)
	if got, gotL := find(NFT, IPv4, ""), find(Legacy, IPv4, ""); got != "iptables" || gotL != "-" {
		t.Errorf("iptables -> xtables-nft-multi: nft %s, legacy %s", got, gotL)
	}
	link("iptables", "xtables-legacy-multi")
	if got, gotL := find(NFT, IPv4, ""), find(Legacy, IPv4, ""); got != "-" || gotL != "iptables" {
		t.Errorf("iptables -> xtables-legacy-multi: nft %s, legacy %s", got, gotL)
	}
	link("ip6tables-nft-save", "xtables-nft-multi")
	link("ip6tables-legacy", "xtables-legacy-multi")
	if got, gotL := find(NFT, IPv6, "-save"), find(Legacy, IPv6, ""); got != "ip6tables-nft-save" || gotL != "ip6tables-legacy" {
		t.Errorf("explicit names: %s, %s", got, gotL)
	}
	link("iptables", "xtables-nft-multi")
	if _, err := New(Options{BinDir: dir}).tables(NFT); err == nil || !strings.Contains(err.Error(), "ip6tables-nft not found") {
		t.Errorf("tables without ip6tables-nft: %v", err)
	}
}

// TestChangeAlreadyMade: iptables reports "exists" and "does not exist"
// only as text, so a failed change is judged by reading the table back: a
// chain that exists after -N, a chain or rule that is gone after -X or -D
// is a change already made; any other failure stays an error.
func TestChangeAlreadyMade(t *testing.T) {
	for _, v := range variants {
		t.Run(string(v), func(t *testing.T) {
			l := newLab(t, v)
			ts, err := l.firewall(true).tables(v)
			if err != nil {
				t.Fatal(err)
			}
			tb := ts[0]
			rule := "-i br0 -j ACCEPT"
			for i, tc := range []struct {
				o       op
				done    bool
				wantErr bool
			}{
				{op{kind: opNewChain, chain: "VB-TEST"}, true, false},
				{op{kind: opNewChain, chain: "VB-TEST"}, false, false},
				{op{kind: opDelete, chain: "VB-TEST", spec: rule}, false, false},
				{op{kind: opAppend, chain: "VB-TEST", spec: rule}, true, false},
				{op{kind: opDelete, chain: "VB-TEST", spec: rule}, true, false},
				{op{kind: opDelChain, chain: "VB-TEST"}, true, false},
				{op{kind: opDelChain, chain: "VB-TEST"}, false, false},
				{op{kind: opAppend, chain: "VB-MISSING", spec: rule}, false, true},
			} {
				done, err := tb.do(context.Background(), tc.o)
				if done != tc.done || (err != nil) != tc.wantErr {
					t.Fatalf("step %d %s: done %v err %v; want done %v, error %v", i, tc.o, done, err, tc.done, tc.wantErr)
				}
			}
		})
	}
}
