package doctor

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/virtbridge/virtbridge/internal/desired"
	"github.com/virtbridge/virtbridge/internal/firewall"
)

// Table is the filter table of one iptables variant and family, as
// `iptables -t filter -S` prints it (firewall.ParseFilter).
type Table struct {
	Variant string // "nft" or "legacy"
	Family  string // "ipv4" or "ipv6"
	firewall.Filter
}

// Name is the command of the table's variant and family: iptables-nft,
// ip6tables-legacy, ...
func (t Table) Name() string {
	cmd := "iptables"
	if t.Family == "ipv6" {
		cmd = "ip6tables"
	}
	return cmd + "-" + t.Variant
}

func (t Table) has(chain string) bool { return slices.Contains(t.Chains, chain) }

// empty: nothing but the built-in chains, accepting, without rules.
func (t Table) empty() bool {
	for _, c := range t.Chains {
		if p, builtin := t.Policy[c]; !builtin || p != "ACCEPT" || len(t.Rules[c]) > 0 {
			return false
		}
	}
	return true
}

// Tables reads the hosts's filter tables.
type Tables interface {
	Tables() ([]Table, error)
}

// Firewall checks virtbridge's own chain and jumps (internal/firewall).
type Firewall interface {
	// Check lists what differs from what the firewall backend would
	// leave for fw; empty when everything is in place.
	Check(ctx context.Context, fw desired.Firewall) ([]string, error)
}

// ParseTable reads `iptables -t filter -S` output of a variant and family.
func ParseTable(variant, family, out string) (Table, error) {
	f, err := firewall.ParseFilter(out)
	return tableOf(variant, family, f, err)
}

// tableOf makes the table of a variant and family from the parsed filter
// table, naming the table in err.
func tableOf(variant, family string, f firewall.Filter, err error) (Table, error) {
	t := Table{Variant: variant, Family: family, Filter: f}
	if err != nil {
		return t, fmt.Errorf("%s: %w", t.Name(), err)
	}
	return t, nil
}

// ifaceMatches reports whether iptables' interface pattern (a trailing '+'
// is a wildcard) matches name.
func ifaceMatches(pattern, name string) bool {
	if p, ok := strings.CutSuffix(pattern, "+"); ok {
		return strings.HasPrefix(name, p)
	}
	return pattern == name
}

// matchesBridged reports whether a rule's matches can select frames bridged
// between ports of one of bridges: those traverse FORWARD with in- and
// out-interface the bridge. strict asks for a rule that selects all of
// them (an accepting rule must not be partial); otherwise any rule that
// might select some counts (a dropping rule is dangerous if it might).
func matchesBridged(spec string, bridges []string, strict bool) bool {
	tok, err := firewall.SplitRule(spec)
	if err != nil {
		return !strict // cannot tell: it might select some
	}
	for i := 0; i < len(tok); i++ {
		switch t := tok[i]; t {
		case "-j", "-g":
			i++
		case "-i", "-o":
			if i+1 >= len(tok) {
				return !strict
			}
			i++
			if !anyBridge(tok[i], bridges) {
				return false
			}
		case "-m":
			i++ // the module name; its options follow and are judged below
		case "--comment":
			i++
		case "--physdev-is-bridged":
		case "!":
			if strict {
				return false
			}
			if i+1 < len(tok) && (tok[i+1] == "-i" || tok[i+1] == "-o") {
				i += 2 // "not this interface" may well select the bridge
			}
		case "--ctstate", "--state":
			if i+1 < len(tok) && onlyInvalid(tok[i+1]) {
				return false // drops only what conntrack cannot place
			}
			i++
			if strict {
				return false
			}
		default:
			if strict {
				return false // -s, -p, negations, other matches: partial
			}
		}
	}
	return true
}

func anyBridge(pattern string, bridges []string) bool {
	return slices.ContainsFunc(bridges, func(b string) bool { return ifaceMatches(pattern, b) })
}

func onlyInvalid(states string) bool {
	for _, s := range strings.Split(states, ",") {
		if s != "INVALID" {
			return false
		}
	}
	return true
}

// verdict is what FORWARD of a table does to frames bridged on the managed
// bridges.
type verdict struct {
	// acceptedBy is the rule (1-based) that accepts them first, 0 none;
	// ours tells it is virtbridge's jump.
	acceptedBy int
	ours       bool
	// droppedBy is the rule that drops them first, 0 none (the policy
	// decides when neither is set).
	droppedBy int
	rule      string
	policy    string
}

func (v verdict) blocked() bool {
	if v.acceptedBy > 0 {
		return false
	}
	return v.droppedBy > 0 || v.policy == "DROP"
}

// forwardVerdict walks FORWARD in order to the first rule that accepts or
// drops bridged frames of bridges. Jumps to other chains are not followed
// (a Docker or ufw chain is judged by its own findings).
func forwardVerdict(t Table, chain string, bridges []string) verdict {
	v := verdict{policy: t.Policy["FORWARD"]}
	for i, spec := range t.Rules["FORWARD"] {
		switch tgt := firewall.Target(spec); {
		case tgt == chain:
			v.acceptedBy, v.ours, v.rule = i+1, true, spec
			return v
		case tgt == "ACCEPT" && matchesBridged(spec, bridges, true):
			v.acceptedBy, v.rule = i+1, spec
			return v
		case (tgt == "DROP" || tgt == "REJECT") && matchesBridged(spec, bridges, false):
			v.droppedBy, v.rule = i+1, spec
			return v
		}
	}
	return v
}
