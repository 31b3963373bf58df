package handoff

import (
	"context"
	"errors"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/virtbridge/virtbridge/internal/apply"
	"github.com/virtbridge/virtbridge/internal/change"
	"github.com/virtbridge/virtbridge/internal/desired"
	"github.com/virtbridge/virtbridge/internal/links"
	"github.com/virtbridge/virtbridge/internal/owner/networkd"
	"github.com/virtbridge/virtbridge/internal/owner/nm"
	"github.com/virtbridge/virtbridge/internal/revert"
	"github.com/virtbridge/virtbridge/internal/testenv/hostns"
)

var _ apply.Owners = (*Owners)(nil)

// failingSysctls fails every sysctl: the step after the bridges, so that
// the transaction is undone after a committed handoff.
type failingSysctls struct{}

func (failingSysctls) Ensure(context.Context, desired.Sysctl, *revert.Reverter) ([]change.Change, error) {
	return nil, errors.New("writing net.ipv4.ip_forward: injected failure")
}

var lifetimes = regexp.MustCompile(`valid_lft \S+ preferred_lft \S+`)

// TestApplyHandsOverToTheOwner drives apply.Host as the engine does, on a
// host of each manager: the bridge is the owner's (not the kernel path's:
// no virtbridge alias on it), a second Apply changes nothing, and a
// transaction that fails after the handoff gives the uplink back to its
// owner: the host is as before.
func TestApplyHandsOverToTheOwner(t *testing.T) {
	for _, m := range []hostns.Manager{hostns.NetworkManager, hostns.Networkd} {
		t.Run(string(m), func(t *testing.T) {
			t.Parallel()
			testApply(t, m)
		})
	}
}

func testApply(t *testing.T, m hostns.Manager) {
	h := hostns.New(t, "vbn", m)
	bus := h.Bus(t)
	o := &Owners{NS: h.NS.Handle, Root: h.Path("/")}
	if m == hostns.NetworkManager {
		o.NM = nm.New(bus)
	} else {
		o.Networkd = networkd.New(bus)
	}
	l, err := links.NewAt(h.NS.Handle)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	addr := h.OwnUplink(t)
	before, beforeProfiles := lifetimes.ReplaceAllString(h.Dump(t), "lft"), nmProfiles(t, h)
	d := desired.Desired{Action: desired.ActionHost,
		Bridges: []desired.Bridge{{Name: "br0", Uplink: hostns.Uplink, MoveAddresses: true}},
		Sysctls: []desired.Sysctl{{Name: "net.ipv4.ip_forward", Value: "0"}}}
	failing := &apply.Host{Links: l, Owners: o, Sysctls: failingSysctls{}}
	if _, err := failing.Apply(context.Background(), d, ""); err == nil || !strings.Contains(err.Error(), "injected failure") {
		t.Fatalf("Apply with a failing sysctl = %v", err)
	}
	h.Settle(t)
	if after := lifetimes.ReplaceAllString(h.Dump(t), "lft"); after != before {
		t.Fatalf("the undone transaction left the host changed:\n%s\n--- after ---\n%s", before, after)
	}
	if p := nmProfiles(t, h); p != beforeProfiles {
		t.Fatalf("the undone transaction left NetworkManager's profiles changed:\n%s\n--- after ---\n%s", beforeProfiles, p)
	}
	d.Sysctls = nil
	host := &apply.Host{Links: l, Owners: o}
	cs, err := host.Apply(context.Background(), d, "")
	if err != nil || len(cs) == 0 {
		t.Fatalf("Apply = %v, %v", cs, err)
	}
	t.Logf("changes: %v", cs)
	if a := h.Addresses(t, "br0"); len(a) != 1 || a[0] != addr || h.Master(t, hostns.Uplink) != "br0" {
		t.Fatalf("bridge has %v (want %s), uplink master %q", a, addr, h.Master(t, hostns.Uplink))
	}
	if out := h.Run(t, "ip", "-d", "link", "show", "br0"); strings.Contains(out, links.ManagedAlias) {
		t.Fatalf("the kernel path made br0:\n%s", out)
	}
	if cs, err := host.Apply(context.Background(), d, ""); err != nil || len(cs) != 0 {
		t.Fatalf("second Apply = %v, %v; want no change", cs, err)
	}
}

// nmProfiles is NetworkManager's profiles with their autoconnect and
// device, sorted ("" on a networkd host).
func nmProfiles(t *testing.T, h *hostns.Host) string {
	if h.Mgr != hostns.NetworkManager {
		return ""
	}
	out := strings.Split(strings.TrimSpace(h.Run(t, "nmcli", "-t", "-f", "NAME,UUID,TYPE,AUTOCONNECT,DEVICE", "con", "show")), "\n")
	slices.Sort(out)
	return strings.Join(out, "\n")
}
