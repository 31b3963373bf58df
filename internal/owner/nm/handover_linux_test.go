package nm

import (
	"context"
	"errors"
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
	}
}

// profiles is NetworkManager's list of profiles with their autoconnect
// and device, sorted.
func profiles(t *testing.T, h *hostns.Host) string {
	out := strings.Split(strings.TrimSpace(h.Run(t, "nmcli", "-t", "-f", "NAME,UUID,TYPE,AUTOCONNECT,DEVICE", "con", "show")), "\n")
	slices.Sort(out)
	return strings.Join(out, "\n")
}

// activeProfile is the profile NetworkManager has active on link, with
// its device state ("" when none).
func activeProfile(t *testing.T, h *hostns.Host, link string) string {
	out, _ := h.Exec("nmcli", "-t", "-f", "GENERAL.STATE,GENERAL.CONNECTION", "dev", "show", link)
	return strings.TrimSpace(out)
}

// checkBridged checks one sample of a host handed over: the leased address
// on the bridge and nowhere else, the default route and one connected
// route through the bridge, the uplink a port of it, the bridge profile
// active (not "externally connected") and the upstream able to ping the
// host.
func checkBridged(t *testing.T, h *hostns.Host, addr string) []string {
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
	if p := activeProfile(t, h, bridge); p != "GENERAL.STATE:100 (connected)\nGENERAL.CONNECTION:"+BridgeProfile(bridge) {
		bad = append(bad, "bridge in NetworkManager: "+p)
	}
	if !h.PingFromUpstream(addr) {
		bad = append(bad, "upstream cannot ping "+addr)
	}
	return bad
}

// TestHandover runs the owners' long cases side by side, each in its own
// host.
func TestHandover(t *testing.T) {
	t.Run("keeps the host through a lease and a restart", func(t *testing.T) {
		t.Parallel()
		testHandoverKeeps(t)
	})
	t.Run("probe failure rolls back", func(t *testing.T) {
		t.Parallel()
		testHandoverRollsBack(t)
	})
}

func testHandoverKeeps(t *testing.T) {
	h := hostns.New(t, "vbn", hostns.NetworkManager)
	c := New(h.Bus(t))
	ctx := context.Background()
	addr := h.OwnUplink(t)
	r, err := c.Handover(ctx, spec(h))
	if err != nil {
		t.Fatalf("Handover: %v\n%s", err, h.Log("networkmanager"))
	}
	t.Logf("NetworkManager handoff %v, probe %v; changes %v", r.Handoff.Round(time.Millisecond), r.Probe.Round(time.Millisecond), r.Changes)
	if bad := checkBridged(t, h, addr); len(bad) > 0 {
		t.Fatalf("right after the handoff: %s", strings.Join(bad, "; "))
	}
	if p := profiles(t, h); !strings.Contains(p, hostns.Uplink+":") || !strings.Contains(p, ":802-3-ethernet:no:\n") {
		t.Errorf("the uplink's own profile must stay, autoconnect off, inactive:\n%s", p)
	}
	// A VM's tap in the bridge, as libvirt puts it there.
	h.Run(t, "ip", "tuntap", "add", "dev", "vnet0", "mode", "tap")
	h.Run(t, "ip", "link", "set", "vnet0", "master", bridge, "up")
	if again, err := c.Handover(ctx, spec(h)); err != nil || len(again.Changes) != 0 {
		t.Fatalf("second Handover = %v, %v; want no change", again.Changes, err)
	}
	deadline := time.Now().Add(hostns.LeaseTime + 30*time.Second)
	samples, failed := 0, 0
	for time.Now().Before(deadline) {
		samples++
		bad := checkBridged(t, h, addr)
		if m := h.Master(t, "vnet0"); m != bridge {
			bad = append(bad, "tap master "+m)
		}
		if len(bad) > 0 {
			failed++
			t.Errorf("sample %d (%v after the handoff): %s", samples, time.Since(deadline.Add(-hostns.LeaseTime-30*time.Second)).Round(time.Second), strings.Join(bad, "; "))
		}
		time.Sleep(time.Second)
	}
	t.Logf("%d samples over %v, %d bad", samples, hostns.LeaseTime+30*time.Second, failed)
	h.StopManager(t)
	h.StartManager(t)
	var bad []string
	for end := time.Now().Add(30 * time.Second); time.Now().Before(end); time.Sleep(200 * time.Millisecond) {
		if bad = checkBridged(t, h, addr); len(bad) == 0 && h.Master(t, "vnet0") == bridge {
			break
		}
	}
	if len(bad) > 0 || h.Master(t, "vnet0") != bridge {
		t.Fatalf("after restarting NetworkManager: %s; tap master %q\n%s", strings.Join(bad, "; "), h.Master(t, "vnet0"), h.Log("networkmanager"))
	}
}

// lifetimes are what an address dump shows that runs down by itself.
var lifetimes = regexp.MustCompile(`valid_lft \S+ preferred_lft \S+`)

func testHandoverRollsBack(t *testing.T) {
	h := hostns.New(t, "vbn", hostns.NetworkManager)
	c := New(h.Bus(t))
	addr := h.OwnUplink(t)
	before, beforeProfiles := lifetimes.ReplaceAllString(h.Dump(t), "lft"), profiles(t, h)
	s := spec(h)
	probe := s.Probe
	s.Probe = func(ctx context.Context, link string) error {
		h.BreakGateway(t) // the gateway stops answering during the handoff
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
	if p := profiles(t, h); p != beforeProfiles {
		t.Errorf("NetworkManager's profiles are not as before:\n%s\n--- after ---\n%s", beforeProfiles, p)
	}
	if a := h.Addresses(t, hostns.Uplink); !slices.Equal(a, []string{addr}) || !h.PingFromUpstream(addr) {
		t.Errorf("uplink has %v after the rollback, want %s reachable", a, addr)
	}
}
