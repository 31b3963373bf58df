package firewall

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/virtbridge/virtbridge/internal/change"
	"github.com/virtbridge/virtbridge/internal/deadline"
	"github.com/virtbridge/virtbridge/internal/revert"
)

// ErrNativeLeave classifies the refusal when an administrator's native
// forward chain may drop a managed bridge's frames and the configuration
// forbids virtbridge to touch it (firewall.native_tables: leave).
var ErrNativeLeave = errors.New("firewall.native_tables is leave")

// ensureNative reads the native forward chains and makes the
// administrator's ones pass the bridged frames of bridges (planNative), in
// one transaction; the caller holds the host lock, and the read right
// before the change is what the plan is made from. Every change pushes its
// undo on rv. It reports whether it changed anything.
func (f *Firewall) ensureNative(ctx context.Context, bridges []string, leave bool, rv *revert.Reverter) ([]change.Change, bool, error) {
	chains, err := ReadForward(f.ns.path)
	if err != nil {
		return nil, false, err
	}
	ops, refusals := planNative(chains, bridges, leave)
	if len(refusals) > 0 {
		return nil, false, refuseNative(chains, bridges, refusals)
	}
	if len(ops) == 0 {
		return nil, false, nil
	}
	if err := applyNative(f.ns.path, ops); err != nil {
		return nil, false, err
	}
	rv.Add(func() error {
		_, cancel := deadline.Uncancelled(ctx)
		defer cancel()
		return f.undoNative(ops)
	})
	cs := make([]change.Change, 0, len(ops))
	for _, o := range ops {
		cs = append(cs, nativeChange(o))
	}
	return cs, true, nil
}

// refuseNative names each chain and bridge, and the ways out.
func refuseNative(chains []NativeChain, bridges []string, refusals []string) error {
	var cmds []string
	for _, c := range chains {
		for _, br := range bridges {
			if c.Owner == OwnerAdmin && Judge(c, br).Drops {
				cmds = append(cmds, "`"+nativeOp{Chain: c, Bridge: br}.String()+"`")
			}
		}
	}
	return fmt.Errorf("%s: %w: set firewall: {native_tables: accept} to let virtbridge insert its accept rules, "+
		"or add them yourself (%s), or set sysctl: {bridge_nf_call_iptables: 0, bridge_nf_call_ip6tables: 0} if nothing on this host filters bridged frames by IP rules",
		strings.Join(refusals, "; "), ErrNativeLeave, strings.Join(cmds, ", "))
}

// undoNative takes ops back: it deletes the rules inserted and puts back
// virtbridge's accept rules deleted, reading the chains again first.
func (f *Firewall) undoNative(ops []nativeOp) error {
	chains, err := ReadForward(f.ns.path)
	if err != nil {
		return fmt.Errorf("undoing nftables changes: %w", err)
	}
	var undo []nativeOp
	for _, o := range ops {
		for _, c := range chains {
			if c.Name() != o.Chain.Name() {
				continue
			}
			if o.Delete {
				undo = append(undo, nativeOp{Chain: c, Bridge: o.Bridge})
				continue
			}
			for _, r := range c.Rules {
				if br, ok := r.ours(); ok && br == o.Bridge {
					undo = append(undo, nativeOp{Chain: c, Delete: true, Handle: r.Handle, Bridge: br})
				}
			}
		}
	}
	if len(undo) == 0 {
		return nil
	}
	return applyNative(f.ns.path, undo)
}

// verifyNative reads the chains back and fails if they still differ.
func (f *Firewall) verifyNative(bridges []string, leave bool) error {
	ps, err := f.checkNative(bridges, leave)
	if err != nil {
		return err
	}
	if len(ps) > 0 {
		return fmt.Errorf("nftables forward chains still differ after the changes (changed concurrently?): %s", strings.Join(ps, "; "))
	}
	return nil
}

// checkNative lists what differs in the native chains, changing nothing.
func (f *Firewall) checkNative(bridges []string, leave bool) ([]string, error) {
	chains, err := ReadForward(f.ns.path)
	if err != nil {
		return nil, err
	}
	ops, refusals := planNative(chains, bridges, leave)
	out := refusals
	for _, o := range ops {
		out = append(out, "nftables: "+o.Why)
	}
	return out, nil
}

func nativeChange(o nativeOp) change.Change {
	obj := "nftables " + o.Chain.Name()
	if o.Delete {
		return change.Change{Kind: change.RuleRemoved, Object: obj, Before: fmt.Sprintf("rule handle %d (virtbridge's, for %s)", o.Handle, o.Bridge)}
	}
	return change.Change{Kind: change.RuleAdded, Object: obj, After: fmt.Sprintf("iifname %q oifname %q accept comment %q (at the top)", o.Bridge, o.Bridge, nativeComment(o.Bridge))}
}
