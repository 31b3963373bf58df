package apply

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/virtbridge/virtbridge/internal/change"
	"github.com/virtbridge/virtbridge/internal/desired"
	"github.com/virtbridge/virtbridge/internal/revert"
)

// portLinks is a Links whose ports each attach their tap; the tap named
// bad fails after attaching, and the undo of that attach fails too.
type portLinks struct {
	bad      string
	attached map[string]bool
}

func (l *portLinks) EnsureBridge(context.Context, desired.Bridge, *revert.Reverter) ([]change.Change, error) {
	return nil, nil
}

func (l *portLinks) EnsurePort(_ context.Context, p desired.Port, alias string, rv *revert.Reverter) ([]change.Change, error) {
	if l.attached[p.Tap] {
		return nil, nil
	}
	l.attached[p.Tap] = true
	cs := []change.Change{{Kind: change.PortAttached, Object: p.Tap, After: p.Bridge}}
	if p.Tap == l.bad {
		rv.Add(func() error { return fmt.Errorf("detaching %q: device busy", p.Tap) })
		return cs, fmt.Errorf("setting the alias of %q: injected failure", p.Tap)
	}
	rv.Add(func() error { delete(l.attached, p.Tap); return nil })
	return cs, nil
}

func portsDesired() desired.Desired {
	return desired.Desired{Action: desired.ActionPorts, Ports: []desired.Port{
		{Tap: "vnet0", MAC: "52:54:00:aa:00:01", Bridge: "br0"},
		{Tap: "vnet1", MAC: "52:54:00:aa:00:02", Bridge: "br0"},
		{MAC: "52:54:00:aa:00:03", Bridge: "br0"}, // no tap yet: not checked
		{Tap: "vnet2", MAC: "52:54:00:aa:00:04", Bridge: "br1"},
	}}
}

func changesText(cs []change.Change) string {
	var b strings.Builder
	for _, c := range cs {
		fmt.Fprintf(&b, "%s %s %s\n", c.Kind, c.Object, c.After)
	}
	return b.String()
}

// TestPortsKeepTheOtherPortsChanges: at ActionPorts one port that fails
// does not hide what was done for the others: Apply returns their changes
// with the error, and the error says that undoing the failed port's own
// change failed too.
func TestPortsKeepTheOtherPortsChanges(t *testing.T) {
	h := &Host{Links: &portLinks{bad: "vnet1", attached: map[string]bool{}}}
	changes, err := h.Apply(context.Background(), portsDesired(), "vm:web01")
	want := "port-attached vnet0 br0\nport-attached vnet2 br1\n"
	if got := changesText(changes); got != want {
		t.Errorf("changes kept:\n%s\nwant:\n%s", got, want)
	}
	for _, part := range []string{`setting the alias of "vnet1": injected failure`, `detaching "vnet1": device busy`} {
		if err == nil || !strings.Contains(err.Error(), part) {
			t.Errorf("Apply error = %v, want it to say %q", err, part)
		}
	}
	var pe *PortError
	if !errors.As(err, &pe) || pe.Port.Tap != "vnet1" {
		t.Errorf("Apply error = %#v, want a *PortError for vnet1", err)
	}
}

// TestApplyPorts renders the result of each port as text.
func TestApplyPorts(t *testing.T) {
	l := &portLinks{bad: "vnet1", attached: map[string]bool{}}
	h := &Host{Links: l}
	render := func(rs []PortResult) string {
		var b strings.Builder
		for _, r := range rs {
			fmt.Fprintf(&b, "%s: %s", r.Port.Tap, strings.ReplaceAll(changesText(r.Changes), "\n", "; "))
			if r.Err != nil {
				fmt.Fprintf(&b, "error: %v", r.Err)
			}
			b.WriteString("\n")
		}
		return b.String()
	}
	got := render(h.ApplyPorts(context.Background(), portsDesired(), "vm:web01"))
	want := `vnet0: port-attached vnet0 br0; 
vnet1: error: setting the alias of "vnet1": injected failure (and undoing the changes made so far failed too: detaching "vnet1": device busy; the host may need a manual look)
vnet2: port-attached vnet2 br1; 
`
	if got != want {
		t.Errorf("first pass:\n%s\nwant:\n%s", got, want)
	}
	// Idempotent: the good ports are right now, and the bad one (whose
	// undo failed) stayed attached.
	got = render(h.ApplyPorts(context.Background(), portsDesired(), "vm:web01"))
	if want := "vnet0: \nvnet1: \nvnet2: \n"; got != want {
		t.Errorf("second pass:\n%s\nwant:\n%s", got, want)
	}
}

// bridgeLinks records the bridges the kernel path made.
type bridgeLinks struct{ made []string }

func (l *bridgeLinks) EnsureBridge(_ context.Context, b desired.Bridge, rv *revert.Reverter) ([]change.Change, error) {
	l.made = append(l.made, b.Name)
	rv.Add(func() error { l.made = l.made[:len(l.made)-1]; return nil })
	return []change.Change{{Kind: change.BridgeCreated, Object: b.Name}}, nil
}

func (l *bridgeLinks) EnsurePort(context.Context, desired.Port, string, *revert.Reverter) ([]change.Change, error) {
	return nil, nil
}

// ownedBy hands over the bridges whose uplink it owns, and fails for
// the uplink named bad.
type ownedBy struct {
	uplinks map[string]bool
	bad     string
	handed  []string
}

func (o *ownedBy) EnsureBridge(_ context.Context, b desired.Bridge, rv *revert.Reverter) ([]change.Change, bool, error) {
	if b.Uplink == o.bad {
		return nil, true, fmt.Errorf("handing %q over: probe failed; rolled back", b.Uplink)
	}
	if !o.uplinks[b.Uplink] {
		return nil, false, nil
	}
	o.handed = append(o.handed, b.Name)
	rv.Add(func() error { o.handed = o.handed[:len(o.handed)-1]; return nil })
	return []change.Change{{Kind: change.UplinkEnslaved, Object: b.Uplink, After: b.Name + " (owner)"}}, true, nil
}

// TestOwnersTakeTheirBridges: a bridge whose uplink a manager owns is
// handed over to it instead of the kernel path; the others go the kernel
// path; an owner's failure undoes the whole transaction, the owner's
// handoffs included.
func TestOwnersTakeTheirBridges(t *testing.T) {
	l := &bridgeLinks{}
	o := &ownedBy{uplinks: map[string]bool{"eth0": true}, bad: "eth2"}
	h := &Host{Links: l, Owners: o}
	d := desired.Desired{Action: desired.ActionHost, Bridges: []desired.Bridge{
		{Name: "br0", Uplink: "eth0"}, {Name: "br1", Uplink: "eth1"},
	}}
	cs, err := h.Apply(context.Background(), d, "")
	if got, want := changesText(cs), "uplink-enslaved eth0 br0 (owner)\nbridge-created br1 \n"; err != nil || got != want {
		t.Fatalf("Apply = %q, %v; want %q", got, err, want)
	}
	if fmt.Sprint(o.handed, l.made) != "[br0] [br1]" {
		t.Fatalf("owner made %v, kernel path %v; want [br0] [br1]", o.handed, l.made)
	}
	d.Bridges = []desired.Bridge{{Name: "br3", Uplink: "eth0"}, {Name: "br4", Uplink: "eth1"}, {Name: "br2", Uplink: "eth2"}}
	if _, err := h.Apply(context.Background(), d, ""); err == nil || !strings.Contains(err.Error(), `handing "eth2" over`) {
		t.Fatalf("Apply with a failing owner = %v", err)
	}
	if fmt.Sprint(o.handed, l.made) != "[br0] [br1]" {
		t.Fatalf("after the failure owner has %v, kernel path %v; want the transaction undone: [br0] [br1]", o.handed, l.made)
	}
}
