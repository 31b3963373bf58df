package links

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"testing"

	"github.com/virtbridge/virtbridge/internal/desired"
	"github.com/virtbridge/virtbridge/internal/revert"
)

var (
	anyMACRE    = regexp.MustCompile(`\b([0-9a-f]{1,2}:){5}[0-9a-f]{1,2}\b`) // bridge_id drops leading zeros
	linkLocalRE = regexp.MustCompile(`fe80::[0-9a-f:]+`)
	// The local routes of link-local addresses are sorted by address,
	// which is made from the random MAC.
	localLLRE = regexp.MustCompile(`(?m)^local fe80::.*\n`)
)

// sameText is dump(ns) with what differs between two labs built alike
// (MACs, the link-local addresses made from them, namespace names) masked.
func (l *lab) sameText(t *testing.T) string {
	t.Helper()
	s := strings.ReplaceAll(dump(t, l.host), l.up.Name, "UPSTREAM")
	s = localLLRE.ReplaceAllString(s, "")
	s = linkLocalRE.ReplaceAllString(s, "fe80::LL")
	return anyMACRE.ReplaceAllString(s, "MAC")
}

var errKilled = errors.New("killed")

// TestEnsureBridgeConvergesAfterKillAtEachStep stops EnsureBridge before
// each change of a full run in turn (as a SIGKILL after the previous change
// would: no undo runs), then runs it again on that half-changed host: it
// must succeed, leave the host exactly as an uninterrupted run does, and a
// third run must change nothing.
func TestEnsureBridgeConvergesAfterKillAtEachStep(t *testing.T) {
	b := upBridge()
	b.MTU = 1400
	ref := newLab(t, true)
	ref.host.Script(t, moreRoutes)
	var steps []string
	ref.m.hook = func(step, object string) error {
		steps = append(steps, step+" "+object)
		return nil
	}
	if _, err := ref.m.EnsureBridge(context.Background(), b, nil); err != nil {
		t.Fatal(err)
	}
	want := ref.sameText(t)
	t.Logf("a full run takes %d steps: %s", len(steps), strings.Join(steps, "; "))

	for k, step := range steps {
		t.Run(fmt.Sprintf("%02d %s", k, step), func(t *testing.T) {
			t.Parallel()
			l := newLab(t, true)
			l.host.Script(t, moreRoutes)
			n := 0
			l.m.hook = func(string, string) error {
				if n++; n == k+1 {
					return errKilled
				}
				return nil
			}
			if _, err := l.m.EnsureBridge(context.Background(), b, &revert.Reverter{}); !errors.Is(err, errKilled) {
				t.Fatalf("EnsureBridge = %v, want it stopped before step %d", err, k)
			}
			l.m.hook = nil
			if _, err := l.m.EnsureBridge(context.Background(), b, nil); err != nil {
				t.Fatalf("the run after the kill: %v\n%s", err, dump(t, l.host))
			}
			if got := l.sameText(t); got != want {
				t.Fatalf("the run after the kill left:\n%s\nwant (an uninterrupted run):\n%s", diff(want, got), got)
			}
			if cs, err := l.m.EnsureBridge(context.Background(), b, nil); err != nil || len(cs) > 0 {
				t.Fatalf("a third run: %v, %v; want no change", cs, err)
			}
		})
	}
}

// TestEnsurePortConvergesAfterKillAtEachStep stops EnsurePort before each
// of its changes (attach, alias) in turn, without undo, as a SIGKILL of
// the hook at started would; the next run must finish the job and a third
// change nothing.
func TestEnsurePortConvergesAfterKillAtEachStep(t *testing.T) {
	p := desired.Port{Tap: "vnet9", MAC: "52:54:00:aa:01:09", Bridge: "br-up"}
	const alias = "vm:web01 uuid:5b0c0000-0000-4000-8000-000000000009"
	for k, step := range []string{"port-attach", "alias-set"} {
		t.Run(step, func(t *testing.T) {
			t.Parallel()
			l := newLab(t, false)
			l.host.Script(t, "ip link add br-up type bridge\nip tuntap add dev vnet9 mode tap\nip link set vnet9 address fe:54:00:aa:01:09")
			n := 0
			l.m.hook = func(string, string) error {
				if n++; n == k+1 {
					return errKilled
				}
				return nil
			}
			if _, err := l.m.EnsurePort(context.Background(), p, alias, &revert.Reverter{}); !errors.Is(err, errKilled) {
				t.Fatalf("EnsurePort = %v, want it stopped before %s", err, step)
			}
			l.m.hook = nil
			if _, err := l.m.EnsurePort(context.Background(), p, alias, nil); err != nil {
				t.Fatalf("the run after the kill: %v", err)
			}
			if link := l.host.Run(t, "ip", "-d", "link", "show", "vnet9"); !strings.Contains(link, "master br-up") ||
				!strings.Contains(link, "alias "+alias) {
				t.Fatalf("after the kill at %s and a run, the tap is not in its bridge with its alias:\n%s", step, link)
			}
			if cs, err := l.m.EnsurePort(context.Background(), p, alias, nil); err != nil || len(cs) > 0 {
				t.Fatalf("a third run: %v, %v; want no change", cs, err)
			}
		})
	}
}
