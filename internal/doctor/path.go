package doctor

import (
	"fmt"
	"slices"
	"strings"

	"github.com/virtbridge/virtbridge/internal/config"
	"github.com/virtbridge/virtbridge/internal/firewall"
	"github.com/virtbridge/virtbridge/internal/policy"
)

// The forward path of a bridge: with br_netfilter on, a frame bridged on a
// managed bridge crosses every base chain on the forward hook of its
// family — iptables-legacy's and iptables-nft's FORWARD, native nftables
// tables, firewalld's table — in hook priority order, and an accept ends
// only its own chain while a drop anywhere is final. The forward-path
// finding lists them, one Hop each, and names the first that drops.

// Hop is one forward base chain a bridged frame crosses.
type Hop struct {
	// Chain names it as its tool does: "iptables-nft FORWARD",
	// "nft inet filter forward".
	Chain string `json:"chain"`
	// Source is how it is read: iptables-legacy, iptables-nft (through
	// iptables), nftables (natively), firewalld (its table, natively).
	Source string `json:"source"`
	// Owner is who keeps it (firewall.Owner, or the iptables variant).
	Owner string `json:"owner"`
	// Family is the frames it sees: ipv4, ipv6, or inet (both).
	Family   string `json:"family"`
	Priority int32  `json:"priority"`
	// Verdict is "drop" (it may drop or reject the frame: the rule or
	// policy is in At) or "pass" (it accepts it or lets it through).
	Verdict string `json:"verdict"`
	At      string `json:"at,omitempty"`
	// Fix lets the frame through this chain, for a dropping hop.
	Fix     string `json:"fix,omitempty"`
	Fixable bool   `json:"fixable,omitempty"`
}

// forwardRead is what the forwarding checks read once and share.
type forwardRead struct {
	tables     []Table
	tablesErr  error
	readNative bool // bridged frames cross the native chains, read (or tried)
	chains     []firewall.NativeChain
	chainsErr  error
	// allChains are the native chains read, crossed or not (they tell who
	// is on the host).
	allChains []firewall.NativeChain
}

// readForward reads the iptables tables and, when bridged frames pass IP
// filtering at all, the native forward chains.
func readForward(s Sources, cfg *config.Config, nfOn map[string]bool) forwardRead {
	var rd forwardRead
	if s.Tables != nil {
		rd.tables, rd.tablesErr = s.Tables.Tables()
	}
	if s.Native != nil && len(cfg.Bridges) > 0 {
		rd.allChains, rd.chainsErr = s.Native.ForwardChains()
		if nfOn["ipv4"] || nfOn["ipv6"] {
			rd.readNative, rd.chains = true, rd.allChains
		}
	}
	return rd
}

// checkPath adds, per managed bridge, the forward path of its bridged
// frames and the first chain that drops them, with that chain's fix.
func checkPath(r *Report, s Sources, cfg *config.Config, nfOn map[string]bool, rd forwardRead) {
	if s.Tables == nil && s.Native == nil {
		return
	}
	for _, b := range cfg.Bridges {
		r.add(pathFinding(b.Name, s, cfg, nfOn, rd))
	}
}

func pathFinding(br string, s Sources, cfg *config.Config, nfOn map[string]bool, rd forwardRead) Finding {
	f := Finding{Section: SectionForwarding, Check: "forward-path", Object: br, Status: OK}
	if !nfOn["ipv4"] && !nfOn["ipv6"] {
		f.Message = "bridged frames of " + br + " cross no IP forward chain (bridge-nf-call-iptables/ip6tables off, or br_netfilter not loaded)"
		return f
	}
	f.Path = pathHops(br, s, cfg, nfOn, rd)
	var unread []string
	if rd.tablesErr != nil {
		unread = append(unread, "iptables ("+rd.tablesErr.Error()+")")
	}
	if rd.chainsErr != nil {
		unread = append(unread, "nftables ("+rd.chainsErr.Error()+")")
	}
	var drops []Hop
	for _, h := range f.Path {
		if h.Verdict == "drop" {
			drops = append(drops, h)
		}
	}
	if len(drops) == 0 {
		f.Message = fmt.Sprintf("bridged frames of %s pass all %d forward chain(s) they cross", br, len(f.Path))
		if len(unread) > 0 {
			f.Status, f.Message = Warn, f.Message+", but could not read "+strings.Join(unread, ", ")
			f.Fix = "run the doctor as root"
		}
		return f
	}
	first := drops[0]
	f.Status, f.Why = Fail, whyNative
	f.Message = fmt.Sprintf("%d of the %d forward chain(s) bridged frames of %s cross may drop them; the first, in hook priority order, is %s (%s)",
		len(drops), len(f.Path), br, first.Chain, first.At)
	f.Fix, f.Fixable = first.Fix, true
	var rest []string
	for _, h := range drops {
		f.Fixable = f.Fixable && h.Fixable
		if h.Chain != first.Chain {
			rest = append(rest, h.Chain)
		}
	}
	if len(rest) > 0 {
		f.Fix += "; then also " + strings.Join(rest, ", ") + " (a drop anywhere is final: see their own findings)"
	}
	return f
}

// pathHops lists the chains br's bridged frames cross, in hook priority
// order. iptables' filter FORWARD has priority 0 (NF_IP_PRI_FILTER); at
// equal priority the kernel runs chains in the order they were registered,
// which nothing here can read, so iptables' come first — any drop among
// them is final either way.
func pathHops(br string, s Sources, cfg *config.Config, nfOn map[string]bool, rd forwardRead) []Hop {
	var hops []Hop
	intent := policy.FirewallIntent(cfg)
	docker := slices.ContainsFunc(rd.tables, isDocker)
	for _, t := range rd.tables {
		if !nfOn[t.Family] || t.Variant == "nft" && t.empty() {
			continue // no rule and no policy: iptables-nft made no chain there
		}
		h := Hop{Chain: t.Name() + " FORWARD", Source: "iptables-" + t.Variant, Owner: "iptables-" + t.Variant, Family: t.Family, Verdict: "pass"}
		v := forwardVerdict(t, firewall.Chain, []string{br})
		switch {
		case v.ours:
			h.At = fmt.Sprintf("virtbridge's jump (rule %d) accepts", v.acceptedBy)
		case v.acceptedBy > 0:
			h.At = fmt.Sprintf("rule %d (%s) accepts", v.acceptedBy, v.rule)
		case v.droppedBy > 0:
			h.Verdict, h.At = "drop", fmt.Sprintf("rule %d (-A FORWARD %s)", v.droppedBy, v.rule)
		case v.policy == "DROP":
			h.Verdict, h.At = "drop", "policy DROP"
		default:
			h.At = "policy " + v.policy
		}
		if h.Verdict == "drop" {
			fc := forwardCtx{bridges: []string{br}, fixable: fixableIn(t, rd.tables, cfg, intent), managed: intent != nil, docker: docker, cfgPath: s.ConfigPath}
			ff := forwardFinding(t, fc)
			h.Fix, h.Fixable = ff.Fix, ff.Fixable
		}
		hops = append(hops, h)
	}
	for _, c := range rd.chains {
		if !crosses(c.Family, nfOn) {
			continue
		}
		fam := map[string]string{"ip": "ipv4", "ip6": "ipv6"}[c.Family]
		if fam == "" {
			fam = c.Family
		}
		h := Hop{Chain: "nft " + c.Name(), Source: "nftables", Owner: string(c.Owner), Family: fam, Priority: c.Priority, Verdict: "pass"}
		if c.Owner == firewall.OwnerFirewalld {
			h.Source = "firewalld"
		}
		v := firewall.Judge(c, br)
		h.At = "policy accept"
		if c.Policy != "accept" {
			h.At = "a rule accepts them first"
		}
		if v.Drops {
			nf := nativeFinding(v, br, cfg, s.ConfigPath)
			h.Verdict, h.At, h.Fix, h.Fixable = "drop", v.At, nf.Fix, nf.Fixable
		}
		hops = append(hops, h)
	}
	slices.SortStableFunc(hops, func(a, b Hop) int { return int(a.Priority) - int(b.Priority) })
	return hops
}
