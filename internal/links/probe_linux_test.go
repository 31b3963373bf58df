package links

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/virtbridge/virtbridge/internal/change"
	"github.com/virtbridge/virtbridge/internal/revert"
)

// TestProbeAnswers: after the handoff the gateway the host had reached on
// the uplink is resolved through the bridge (the IPv4 one on a dual-stack
// host; the IPv6 one on an IPv6-only host), and the answer is recorded
// with the time it took; a second run moves nothing and probes nothing.
func TestProbeAnswers(t *testing.T) {
	l := newLab(t, true)
	waitNoTentative(t, l.host)
	l.host.Run(t, "ping", "-c1", "-W5", "10.77.0.1")
	l.host.Run(t, "ping", "-c1", "-W5", "2001:db8:77::1")
	var rv revert.Reverter
	start := time.Now()
	cs, err := l.m.EnsureBridge(context.Background(), upBridge(), &rv)
	t.Logf("handoff with probe took %v", time.Since(start))
	if err != nil {
		t.Fatalf("EnsureBridge: %v", err)
	}
	checkProbed(t, cs, "10.77.0.1")
	cs, err = l.m.EnsureBridge(context.Background(), upBridge(), &rv)
	if err != nil || len(cs) != 0 {
		t.Errorf("second EnsureBridge = %v, %v; want nothing moved, nothing probed", cs, err)
	}

	l6 := newLab(t, true)
	l6.host.Script(t, "ip -4 addr flush dev uplink scope global")
	waitNoTentative(t, l6.host)
	l6.host.Run(t, "ping", "-c1", "-W5", "2001:db8:77::1")
	start = time.Now()
	cs, err = l6.m.EnsureBridge(context.Background(), upBridge(), &rv)
	t.Logf("IPv6-only handoff with probe took %v", time.Since(start))
	if err != nil {
		t.Fatalf("EnsureBridge (IPv6 only): %v", err)
	}
	checkProbed(t, cs, "2001:db8:77::1")
}

func checkProbed(t *testing.T, cs []change.Change, gw string) {
	t.Helper()
	var probed []string
	for _, c := range cs {
		if c.Kind == change.UplinkProbed {
			t.Logf("  %s", c)
			probed = append(probed, c.Object+" "+c.After)
		}
	}
	if len(probed) != 1 || !strings.HasPrefix(probed[0], gw+" answered on br-up in ") {
		t.Errorf("probes = %q; want %s answered", probed, gw)
	}
}

// TestProbeRollsBack: the gateway stops answering during the handoff (its
// addresses leave the upstream namespace): the probe sees no answer on the
// bridge, EnsureBridge refuses saying what it tried and saw, and the undo
// leaves the host exactly as before the handoff.
func TestProbeRollsBack(t *testing.T) {
	l := newLab(t, true)
	l.host.Script(t, moreRoutes)
	waitNoTentative(t, l.host)
	l.host.Run(t, "ping", "-c1", "-W5", "10.77.0.1")
	l.up.Script(t, `
		ip addr del 10.77.0.1/24 dev upstream
		ip -6 addr del 2001:db8:77::1/64 dev upstream`)
	before := dump(t, l.host)
	b := upBridge()
	b.ProbeTimeout = time.Second
	var rv revert.Reverter
	start := time.Now()
	cs, err := l.m.EnsureBridge(context.Background(), b, &rv)
	t.Logf("refused after %v: %v", time.Since(start), err)
	if !errors.Is(err, ErrProbe) {
		t.Fatalf("EnsureBridge = %v (%v); want ErrProbe", err, cs)
	}
	for _, w := range []string{"gateway 10.77.0.1", `bridge "br-up"`, "ARP resolution", "rolled back", "probe_target"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error lacks %q", w)
		}
	}
	if last := cs[len(cs)-1]; last.Kind != change.UplinkProbed || !strings.Contains(last.After, "no answer") {
		t.Errorf("last change = %s; want the failed probe recorded", last)
	}
	if err := rv.Fail(); err != nil {
		t.Fatalf("undo: %v", err)
	}
	requireSame(t, "rollback after the probe", before, dump(t, l.host))
}
