package networkd

import (
	"context"
	"errors"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/virtbridge/virtbridge/internal/desired"
	"github.com/virtbridge/virtbridge/internal/links"
	"github.com/virtbridge/virtbridge/internal/testenv/hostns"
)

const bridge = "br0"

func spec(h *hostns.Host) Spec {
	return Spec{
		Bridge:  desired.Bridge{Name: bridge, Uplink: hostns.Uplink, MoveAddresses: true},
		Timeout: 30 * time.Second,
		Probe: func(ctx context.Context, link string) error {
			// What handoff does with the plan's probe targets.
			m, err := links.NewAt(h.NS.Handle)
			if err != nil {
				return err
			}
			defer m.Close()
			_, err = m.Probe(ctx, link, hostns.Uplink, []string{hostns.Gateway}, 0)
			return err
		},
		NS:   h.NS.Handle,
		Root: h.Path("/"),
	}
}

// checkBridged checks one sample of a host handed over: the leased
// address on the bridge and nowhere else, the default route and one
// connected route through the bridge, the uplink a port of it, networkd
// configuring the bridge from virtbridge's file, and upstream able to ping
// the host.
func checkBridged(t *testing.T, h *hostns.Host, c *Client, addr string) []string {
	var bad []string
	if a := h.Addresses(t, bridge); !slices.Equal(a, []string{addr}) {
		bad = append(bad, "bridge addresses "+strings.Join(a, ","))
	}
	if a := h.Addresses(t, hostns.Uplink); len(a) > 0 {
		bad = append(bad, "uplink addresses "+strings.Join(a, ","))
	}
	if m := h.Master(t, hostns.Uplink); m != bridge {
		bad = append(bad, "uplink master "+m)
	}
	if r := h.DefaultRoute(t); !strings.Contains(r, "via "+hostns.Gateway+" dev "+bridge) {
		bad = append(bad, "default route "+r)
	}
	if rs := h.ConnectedRoutes(t); len(rs) != 1 || !strings.Contains(rs[0], "dev "+bridge) {
		bad = append(bad, "connected routes "+strings.Join(rs, " | "))
	}
	_, nw, _ := Files(spec(h).Bridge)
	l, ok, err := c.linkState(context.Background(), bridge)
	if err != nil || !ok || l.admin != "configured" || l.file != filepath.Join(c.Dir, nw) {
		bad = append(bad, "bridge in networkd: "+l.admin+" from "+l.file)
	}
	if !h.PingFromUpstream(addr) {
		bad = append(bad, "upstream cannot ping "+addr)
	}
	return bad
}

// TestHandover runs the long cases side by side, each in its own host.
func TestHandover(t *testing.T) {
	t.Run("keeps the host through a lease and a restart", func(t *testing.T) {
		t.Parallel()
		testHandoverKeeps(t)
	})
	t.Run("probe failure rolls back", func(t *testing.T) {
		t.Parallel()
		testHandoverRollsBack(t)
	})
	t.Run("refuses an existing bridge", func(t *testing.T) {
		t.Parallel()
		h := hostns.New(t, "vbn", hostns.Networkd)
		c := New(h.Bus(t))
		h.OwnUplink(t)
		h.Run(t, "ip", "link", "add", bridge, "type", "bridge")
		before := h.Dump(t)
		if _, err := c.Handover(context.Background(), spec(h)); !errors.Is(err, ErrBridgeExists) {
			t.Fatalf("Handover with %s there = %v, want ErrBridgeExists", bridge, err)
		}
		if after := h.Dump(t); after != before {
			t.Fatalf("the refusal changed the host:\n%s\n---\n%s", before, after)
		}
	})
}

func testHandoverKeeps(t *testing.T) {
	h := hostns.New(t, "vbn", hostns.Networkd)
	c := New(h.Bus(t))
	ctx := context.Background()
	addr := h.OwnUplink(t)
	r, err := c.Handover(ctx, spec(h))
	if err != nil {
		t.Fatalf("Handover: %v\n%s", err, h.Log("networkd"))
	}
	t.Logf("systemd-networkd handoff %v, probe %v; changes %v", r.Handoff.Round(time.Millisecond), r.Probe.Round(time.Millisecond), r.Changes)
	if bad := checkBridged(t, h, c, addr); len(bad) > 0 {
		t.Fatalf("right after the handoff: %s", strings.Join(bad, "; "))
	}
	h.Run(t, "ip", "tuntap", "add", "dev", "vnet0", "mode", "tap")
	h.Run(t, "ip", "link", "set", "vnet0", "master", bridge, "up")
	if again, err := c.Handover(ctx, spec(h)); err != nil || len(again.Changes) != 0 {
		t.Fatalf("second Handover = %v, %v; want no change", again.Changes, err)
	}
	span := hostns.LeaseTime + 30*time.Second
	start, samples, failed := time.Now(), 0, 0
	for time.Since(start) < span {
		samples++
		bad := checkBridged(t, h, c, addr)
		if m := h.Master(t, "vnet0"); m != bridge {
			bad = append(bad, "tap master "+m)
		}
		if len(bad) > 0 {
			failed++
			t.Errorf("sample %d (%v after the handoff): %s", samples, time.Since(start).Round(time.Second), strings.Join(bad, "; "))
		}
		time.Sleep(time.Second)
	}
	t.Logf("%d samples over %v, %d bad", samples, span, failed)
	h.StopManager(t)
	h.StartManager(t)
	var bad []string
	for end := time.Now().Add(30 * time.Second); time.Now().Before(end); time.Sleep(200 * time.Millisecond) {
		if bad = checkBridged(t, h, c, addr); len(bad) == 0 && h.Master(t, "vnet0") == bridge {
			break
		}
	}
	if len(bad) > 0 || h.Master(t, "vnet0") != bridge {
		t.Fatalf("after restarting networkd: %s; tap master %q\n%s", strings.Join(bad, "; "), h.Master(t, "vnet0"), h.Log("networkd"))
	}
}

var lifetimes = regexp.MustCompile(`valid_lft \S+ preferred_lft \S+`)

func testHandoverRollsBack(t *testing.T) {
	h := hostns.New(t, "vbn", hostns.Networkd)
	c := New(h.Bus(t))
	addr := h.OwnUplink(t)
	before := lifetimes.ReplaceAllString(h.Dump(t), "lft")
	s := spec(h)
	probe := s.Probe
	s.Probe = func(ctx context.Context, link string) error {
		h.BreakGateway(t)
		defer h.MendGateway(t)
		ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		defer cancel()
		return probe(ctx, link)
	}
	r, err := c.Handover(context.Background(), s)
	if !errors.Is(err, ErrRolledBack) || !errors.Is(err, links.ErrProbe) || !strings.Contains(err.Error(), "gateway "+hostns.Gateway) {
		t.Fatalf("Handover with the gateway gone = %v; want a rollback naming the unreachable gateway", err)
	}
	t.Logf("refused after handoff %v, probe %v: %v", r.Handoff.Round(time.Millisecond), r.Probe.Round(time.Millisecond), err)
	h.Settle(t)
	if after := lifetimes.ReplaceAllString(h.Dump(t), "lft"); after != before {
		t.Errorf("the host is not as before the handoff:\n%s\n--- after ---\n%s", before, after)
	}
	nd, nw, port := Files(s.Bridge)
	for _, f := range []string{nd, nw, port} {
		if _, err := filepath.Glob(h.Path(filepath.Join(c.Dir, f))); err == nil {
			if m, _ := filepath.Glob(h.Path(filepath.Join(c.Dir, f))); len(m) > 0 {
				t.Errorf("%s left behind", f)
			}
		}
	}
	if a := h.Addresses(t, hostns.Uplink); !slices.Equal(a, []string{addr}) || !h.PingFromUpstream(addr) {
		t.Errorf("uplink has %v after the rollback, want %s reachable", a, addr)
	}
}
