package firewall

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/virtbridge/virtbridge/internal/change"
	"github.com/virtbridge/virtbridge/internal/desired"
	"github.com/virtbridge/virtbridge/internal/revert"
)

var (
	acceptBr0 = "-A VIRTBRIDGE-FWD " + acceptSpec("br0")
	acceptBr1 = "-A VIRTBRIDGE-FWD " + acceptSpec("br1")
)

func fw(bridges ...string) desired.Firewall {
	return desired.Firewall{Backend: BackendAuto, AcceptBridges: bridges}
}

// family returns one family's part of Fake.String.
func family(f *Fake, fam Family) string {
	v4, v6, _ := strings.Cut(strings.TrimPrefix(f.String(), "# ipv4\n"), "# ipv6\n")
	if fam == IPv6 {
		return v6
	}
	return v4
}

func fakeRun(t *testing.T, f *Fake, cmds ...string) {
	t.Helper()
	for _, c := range cmds {
		for _, fam := range []Family{IPv4, IPv6} {
			if err := f.Run(fam, c); err != nil {
				t.Fatalf("%s: %v", c, err)
			}
		}
	}
}

// ensureTwice runs Ensure twice and fails unless the second changes nothing.
func ensureTwice(t *testing.T, f *Fake, p desired.Firewall) []change.Change {
	t.Helper()
	var rv revert.Reverter
	cs, err := f.Ensure(context.Background(), p, &rv)
	if err != nil {
		t.Fatal(err)
	}
	before := f.String()
	again, err := f.Ensure(context.Background(), p, &rv)
	if err != nil || len(again) != 0 || f.String() != before {
		t.Fatalf("second Ensure: changes %v, err %v", again, err)
	}
	if probs, err := f.Check(context.Background(), p); err != nil || len(probs) != 0 {
		t.Fatalf("Check after Ensure: %q, %v", probs, err)
	}
	return cs
}

func TestFakeEnsureFromEmpty(t *testing.T) {
	f := NewFake()
	if probs, _ := f.Check(context.Background(), fw("br0")); len(probs) != 6 {
		t.Errorf("Check on an empty table: %q, want chain, rule and jump missing, per family", probs)
	}
	cs := ensureTwice(t, f, fw("br1", "br0"))
	want := `-P INPUT ACCEPT
-P FORWARD ACCEPT
-P OUTPUT ACCEPT
-N VIRTBRIDGE-FWD
-A FORWARD -m comment --comment virtbridge -j VIRTBRIDGE-FWD
` + acceptBr0 + "\n" + acceptBr1 + "\n"
	if got := family(f, IPv4); got != want {
		t.Errorf("ipv4:\n%s\nwant\n%s", got, want)
	}
	if family(f, IPv6) != want {
		t.Errorf("ipv6 differs from ipv4:\n%s", f)
	}
	if len(cs) != 8 || cs[0].Kind != change.ChainCreated || cs[3].String() !=
		`rule-added iptables-fake filter FORWARD: "" -> "-I FORWARD 1 -m comment --comment virtbridge -j VIRTBRIDGE-FWD"` {
		t.Errorf("changes:\n%v", cs)
	}
}

func TestFakeMovesJumpAndKeepsForeignRules(t *testing.T) {
	f := NewFake()
	ensureTwice(t, f, fw("br0", "br1"))
	fakeRun(t, f,
		"-I FORWARD 1 -s 10.9.0.0/16 -j DROP",
		"-A FORWARD -j REJECT --reject-with icmp-host-prohibited",
		"-N DOCKER-USER",
		"-A DOCKER-USER -j RETURN",
		"-I FORWARD 1 -j DOCKER-USER",
		"-P FORWARD DROP",
	)
	cs := ensureTwice(t, f, fw("br0")) // br1 leaves the config
	want := `-P INPUT ACCEPT
-P FORWARD DROP
-P OUTPUT ACCEPT
-N DOCKER-USER
-N VIRTBRIDGE-FWD
-A FORWARD -m comment --comment virtbridge -j VIRTBRIDGE-FWD
-A FORWARD -j DOCKER-USER
-A FORWARD -s 10.9.0.0/16 -j DROP
-A FORWARD -j REJECT --reject-with icmp-host-prohibited
-A DOCKER-USER -m comment --comment virtbridge -j VIRTBRIDGE-FWD
-A DOCKER-USER -j RETURN
` + acceptBr0 + "\n"
	if got := family(f, IPv4); got != want {
		t.Errorf("ipv4:\n%s\nwant\n%s", got, want)
	}
	var kinds []string
	for _, c := range cs[:3] {
		kinds = append(kinds, c.String())
	}
	if want := []string{
		fmt.Sprintf(`rule-removed iptables-fake filter VIRTBRIDGE-FWD: %q -> ""`, acceptBr1+" (was rule 2)"),
		`rule-removed iptables-fake filter FORWARD: "-A FORWARD ` + jumpSpec + ` (was rule 3)" -> ""`,
		`rule-added iptables-fake filter FORWARD: "" -> "-I FORWARD 1 ` + jumpSpec + `"`,
	}; !slices.Equal(kinds, want) {
		t.Errorf("changes:\n%s\nwant\n%s", strings.Join(kinds, "\n"), strings.Join(want, "\n"))
	}
}

func TestFakeRepairsOddJumps(t *testing.T) {
	for name, cmds := range map[string][]string{
		"duplicate at the end":   {"-A FORWARD " + jumpSpec},
		"foreign form on top":    {"-D FORWARD " + jumpSpec, "-I FORWARD 1 -j " + Chain},
		"foreign form below":     {"-D FORWARD " + jumpSpec, "-A FORWARD -j " + Chain},
		"ours below, odd on top": {"-I FORWARD 1 -i x -j " + Chain, "-I FORWARD 1 -j DROP"},
		"stray rule in chain":    {"-A " + Chain + " -j DROP", "-A " + Chain + " " + acceptSpec("br0")},
	} {
		t.Run(name, func(t *testing.T) {
			f := NewFake()
			ensureTwice(t, f, fw("br0"))
			good := f.String()
			fakeRun(t, f, "-A FORWARD -j LOG")
			good = strings.ReplaceAll(good, "-A FORWARD "+jumpSpec+"\n", "-A FORWARD "+jumpSpec+"\n-A FORWARD -j LOG\n")
			fakeRun(t, f, cmds...)
			if name == "ours below, odd on top" {
				good = strings.ReplaceAll(good, "-A FORWARD -j LOG\n", "-A FORWARD -j DROP\n-A FORWARD -j LOG\n")
			}
			ensureTwice(t, f, fw("br0"))
			if got := f.String(); got != good {
				t.Errorf("got\n%s\nwant\n%s", got, good)
			}
		})
	}
}

func TestFakeEmptyListRemovesEverything(t *testing.T) {
	f := NewFake()
	empty := family(f, IPv4)
	ensureTwice(t, f, fw("br0"))
	fakeRun(t, f, "-N DOCKER-USER", "-A FORWARD -j DROP")
	ensureTwice(t, f, fw("br0"))
	fakeRun(t, f, "-A INPUT -j "+Chain)
	cs := ensureTwice(t, f, fw())
	want := strings.ReplaceAll(empty, "-P OUTPUT ACCEPT\n", "-P OUTPUT ACCEPT\n-N DOCKER-USER\n") + "-A FORWARD -j DROP\n"
	if got := family(f, IPv4); got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
	if cs[len(cs)-1].Kind != change.ChainRemoved {
		t.Errorf("last change %v, want chain removal", cs[len(cs)-1])
	}
	if cs, err := f.Remove(context.Background()); err != nil || len(cs) != 0 {
		t.Errorf("Remove after removal: %v, %v", cs, err)
	}
}

func TestFakeUndoRestoresExactly(t *testing.T) {
	f := NewFake()
	ensureTwice(t, f, fw("br0", "br1"))
	fakeRun(t, f, "-I FORWARD 1 -j LOG", "-N DOCKER-USER", "-A "+Chain+" -j DROP")
	before := f.String()
	calls := 0
	f.Fail = func(fam Family, cmd string) error {
		if calls++; fam == IPv6 && strings.HasPrefix(cmd, "-I DOCKER-USER") {
			return errors.New("injected")
		}
		return nil
	}
	var rv revert.Reverter
	cs, err := f.Ensure(context.Background(), fw("br2"), &rv)
	if err == nil || !strings.Contains(err.Error(), "injected") {
		t.Fatalf("Ensure: %v, want the injected error", err)
	}
	if len(cs) == 0 || rv.Len() != len(cs) {
		t.Fatalf("%d changes, %d undo steps", len(cs), rv.Len())
	}
	f.Fail = nil
	if err := rv.Fail(); err != nil {
		t.Fatal(err)
	}
	if got := f.String(); got != before {
		t.Errorf("after undo:\n%s\nwant\n%s", got, before)
	}
}

// TestFakeConverges replays random states, as other tools leave them, and
// checks that one Ensure reaches the wanted state, foreign rules intact.
func TestFakeConverges(t *testing.T) {
	foreign := []string{
		"-I FORWARD 1 -j LOG", "-A FORWARD -j REJECT", "-P FORWARD DROP", "-N DOCKER-USER",
		"-A FORWARD -j " + Chain, "-I FORWARD 1 " + jumpSpec, "-A FORWARD " + jumpSpec,
		"-A " + Chain + " -j DROP", "-A " + Chain + " " + acceptSpec("br9"), "-A " + Chain + " " + acceptSpec("br0"),
	}
	bridgeSets := [][]string{nil, {"br0"}, {"br0", "br1"}, {"br9"}}
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 300 {
		f := NewFake()
		ensureTwice(t, f, fw(bridgeSets[rng.IntN(len(bridgeSets))]...))
		var applied []string
		for range rng.IntN(6) {
			c := foreign[rng.IntN(len(foreign))]
			if f.Run(IPv4, c) == nil {
				applied = append(applied, c)
			}
		}
		want := bridgeSets[rng.IntN(len(bridgeSets))]
		ensureTwice(t, f, fw(want...))
		got := family(f, IPv4)
		for _, c := range applied {
			if c == "-I FORWARD 1 -j LOG" && !strings.Contains(got, "-A FORWARD -j LOG\n") ||
				c == "-A FORWARD -j REJECT" && !strings.Contains(got, "-A FORWARD -j REJECT\n") {
				t.Fatalf("state %d: foreign rule %q lost after %q:\n%s", i, c, applied, got)
			}
		}
		if n := strings.Count(got, "-j "+Chain); len(want) > 0 && n != 1+strings.Count(got, "-N DOCKER-USER") || len(want) == 0 && n != 0 {
			t.Fatalf("state %d (%q, want %v): %d jumps:\n%s", i, applied, want, n, got)
		}
	}
}

func TestFakeRefusesBadInput(t *testing.T) {
	f := NewFake()
	if _, err := f.Ensure(context.Background(), desired.Firewall{Backend: "pf", AcceptBridges: []string{"br0"}}, &revert.Reverter{}); err == nil {
		t.Error("unknown backend: no error")
	}
	if _, err := f.Ensure(context.Background(), fw("br+"), &revert.Reverter{}); err == nil {
		t.Error("wildcard bridge name: no error")
	}
	if cs, err := f.Ensure(context.Background(), desired.Firewall{Backend: BackendNone, AcceptBridges: []string{"br0"}}, &revert.Reverter{}); err != nil || cs != nil {
		t.Errorf("backend none: %v, %v", cs, err)
	}
	if err := f.Run(IPv4, "-Z FORWARD"); err == nil {
		t.Error("unsupported command: no error")
	}
}
