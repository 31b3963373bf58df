package firewall

import (
	"bytes"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
)

// ruleOf translates one nftables rule. Registers loaded with iifname or
// oifname and compared for (in)equality become IfConds; counters and log
// statements change nothing; anything else is Other, which makes the
// rule's match "maybe".
func ruleOf(r *nftables.Rule) NativeRule {
	out := NativeRule{Handle: r.Handle}
	if c, ok := userdata.GetString(r.UserData, userdata.TypeComment); ok {
		out.Comment = c
	}
	regs := map[uint32]expr.MetaKey{}
	for _, e := range r.Exprs {
		switch e := e.(type) {
		case *expr.Meta:
			if !e.SourceRegister && (e.Key == expr.MetaKeyIIFNAME || e.Key == expr.MetaKeyOIFNAME) {
				regs[e.Register] = e.Key
			} else {
				delete(regs, e.Register)
				out.Other = true
			}
		case *expr.Cmp:
			key, ok := regs[e.Register]
			if !ok || e.Op != expr.CmpOpEq && e.Op != expr.CmpOpNeq {
				out.Other = true
				continue
			}
			name, prefix := ifname(e.Data)
			out.Conds = append(out.Conds, IfCond{Out: key == expr.MetaKeyOIFNAME, Neq: e.Op == expr.CmpOpNeq, Prefix: prefix, Name: name})
		case *expr.Counter, *expr.Log:
		case *expr.Reject:
			out.Verdict = "reject"
		case *expr.Verdict:
			out.Verdict, out.Target = verdictOf(e)
		default:
			out.Other = true
		}
	}
	return out
}

// ifname reads a compared interface name: nft pads an exact name with
// NULs (at least one); a wildcard "br*" is the bare prefix.
func ifname(b []byte) (name string, prefix bool) {
	i := bytes.IndexByte(b, 0)
	if i < 0 {
		return string(b), true
	}
	return string(b[:i]), false
}

func verdictOf(v *expr.Verdict) (string, string) {
	switch v.Kind {
	case expr.VerdictAccept:
		return "accept", ""
	case expr.VerdictDrop:
		return "drop", ""
	case expr.VerdictJump:
		return "jump", v.Chain
	case expr.VerdictGoto:
		return "goto", v.Chain
	case expr.VerdictReturn:
		return "return", ""
	case expr.VerdictContinue, expr.VerdictBreak:
		return "", ""
	}
	return "unknown", "" // queue, stolen, …: the frame may not come back
}
