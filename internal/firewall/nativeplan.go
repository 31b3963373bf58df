package firewall

import (
	"fmt"
	"slices"
	"strings"
)

// Native tables: where an administrator's table (not firewalld's, Docker's,
// libvirt's, Incus's or iptables-nft's) has a forward base chain that may
// drop a managed bridge's frames, virtbridge inserts at its top one accept
// rule per such bridge, matching the bridge as in- and out-device (the
// forward hook sees the bridge, not its ports), and tagged with the
// comment nativeComment(bridge) so that it finds and removes exactly its
// own rules.

// Values of desired.Firewall.NativeTables.
const (
	NativeAccept = "accept" // insert virtbridge's accept rules ("" too)
	NativeLeave  = "leave"  // never touch them: refuse instead
)

// nativeCommentPrefix starts the comment of every rule virtbridge puts
// into a native table.
const nativeCommentPrefix = "virtbridge: bridged traffic of "

func nativeComment(br string) string { return nativeCommentPrefix + br }

// ours reports whether r is virtbridge's, and for which bridge.
func (r NativeRule) ours() (string, bool) {
	return strings.CutPrefix(r.Comment, nativeCommentPrefix)
}

// isAcceptFor reports whether r is exactly virtbridge's accept rule for br.
func (r NativeRule) isAcceptFor(br string) bool {
	return !r.Other && r.Verdict == "accept" && r.Target == "" && r.Comment == nativeComment(br) &&
		slices.Equal(r.Conds, []IfCond{{Name: br}, {Out: true, Name: br}})
}

// nativeOp is one change to a native chain: insert virtbridge's accept
// rule for Bridge at the top, or delete the rule with Handle.
type nativeOp struct {
	Chain  NativeChain
	Delete bool
	Handle uint64
	Bridge string
	Why    string
}

// String renders o as the nft command that does the same.
func (o nativeOp) String() string {
	c := o.Chain
	if o.Delete {
		return fmt.Sprintf("nft delete rule %s %s %s handle %d", c.Family, c.Table, c.Chain, o.Handle)
	}
	return fmt.Sprintf("nft insert rule %s %s %s iifname %q oifname %q accept comment %q", c.Family, c.Table, c.Chain, o.Bridge, o.Bridge, nativeComment(o.Bridge))
}

// without returns c without virtbridge's rules.
func (c NativeChain) without() NativeChain {
	c.Rules = slices.DeleteFunc(slices.Clone(c.Rules), func(r NativeRule) bool { _, ok := r.ours(); return ok })
	return c
}

// planNative returns the changes that make the administrator's forward
// chains pass the bridged frames of bridges, and remove virtbridge's rules
// that are no longer needed. With leave it changes nothing and returns,
// instead, one refusal per chain and bridge that needs a rule. Chains of
// other owners are never touched. It is pure.
func planNative(chains []NativeChain, bridges []string, leave bool) (ops []nativeOp, refusals []string) {
	for _, c := range chains {
		if c.Owner != OwnerAdmin {
			continue
		}
		bare := c.without()
		var need []string
		for _, br := range bridges {
			if v := Judge(bare, br); v.Drops {
				if leave {
					refusals = append(refusals, fmt.Sprintf("nftables chain %s (the administrator's table) may drop bridged frames of %s (%s), "+
						"and firewall.native_tables is leave", c.Name(), br, v.At))
				}
				need = append(need, br)
			}
		}
		if leave {
			continue
		}
		ops = append(ops, planChainNative(c, need)...)
	}
	return ops, refusals
}

// planChainNative keeps, in the block of virtbridge's rules at the top of
// c, exactly one accept rule per bridge in need, and deletes every other
// rule of virtbridge's in c (stale, duplicate, altered, or below another
// rule, where it may come too late).
func planChainNative(c NativeChain, need []string) []nativeOp {
	var ops []nativeOp
	kept := map[string]bool{}
	top := true
	for _, r := range c.Rules {
		br, mine := r.ours()
		if !mine {
			top = false
			continue
		}
		switch {
		case !slices.Contains(need, br):
			ops = append(ops, nativeOp{Chain: c, Delete: true, Handle: r.Handle, Bridge: br, Why: fmt.Sprintf("%s: virtbridge's rule for %s is not needed", c.Name(), br)})
		case !top || kept[br] || !r.isAcceptFor(br):
			ops = append(ops, nativeOp{Chain: c, Delete: true, Handle: r.Handle, Bridge: br, Why: fmt.Sprintf("%s: virtbridge's rule for %s is below another rule, a duplicate or altered", c.Name(), br)})
		default:
			kept[br] = true
		}
	}
	for _, br := range need {
		if !kept[br] {
			ops = append(ops, nativeOp{Chain: c, Bridge: br, Why: fmt.Sprintf("%s may drop bridged frames of %s and has no accept rule of virtbridge's at its top", c.Name(), br)})
		}
	}
	return ops
}
