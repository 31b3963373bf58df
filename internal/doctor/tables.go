package doctor

import (
	"fmt"
	"slices"
	"strings"

	"github.com/virtbridge/virtbridge/internal/policy"
)

// Table is the filter table of one iptables variant and family, as
// `iptables -t filter -S` prints it.
type Table struct {
	Variant string // "nft" or "legacy"
	Family  string // "ipv4" or "ipv6"
	// Chains in the order printed; Policy holds the built-in ones'.
	Chains []string
	Policy map[string]string
	// Rules holds each chain's rules, as printed after "-A CHAIN ".
	Rules map[string][]string
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
	Check(fw policy.Firewall) ([]string, error)
}

// ParseTable reads `iptables -t filter -S` output of a variant and family.
func ParseTable(variant, family, out string) (Table, error) {
	t := Table{Variant: variant, Family: family, Policy: map[string]string{}, Rules: map[string][]string{}}
	for i, line := range strings.Split(out, "\n") {
		if line == "" {
			continue
		}
		f := strings.SplitN(line, " ", 3)
		switch {
		case len(f) == 3 && f[0] == "-P":
			t.Chains = append(t.Chains, f[1])
			t.Policy[f[1]] = f[2]
		case len(f) == 2 && f[0] == "-N":
			t.Chains = append(t.Chains, f[1])
		case len(f) == 3 && f[0] == "-A":
			t.Rules[f[1]] = append(t.Rules[f[1]], f[2])
		default:
			return t, fmt.Errorf("%s: line %d of iptables -S output: unexpected %q", t.Name(), i+1, line)
		}
	}
	if !t.has("FORWARD") {
		return t, fmt.Errorf("%s: no FORWARD chain in iptables -S output", t.Name())
	}
	return t, nil
}

// specTokens splits a rule as iptables -S prints it: words separated by
// spaces, "double quotes" around words with spaces, backslash escapes.
func specTokens(spec string) []string {
	var out []string
	var cur strings.Builder
	quoted, inWord := false, false
	for i := 0; i < len(spec); i++ {
		c := spec[i]
		switch {
		case c == '\\' && i+1 < len(spec):
			i++
			cur.WriteByte(spec[i])
			inWord = true
		case c == '"':
			quoted, inWord = !quoted, true
		case c == ' ' && !quoted:
			if inWord {
				out = append(out, cur.String())
				cur.Reset()
				inWord = false
			}
		default:
			cur.WriteByte(c)
			inWord = true
		}
	}
	if inWord {
		out = append(out, cur.String())
	}
	return out
}

// target is the -j (or -g) target of a rule.
func target(spec string) string {
	tok := specTokens(spec)
	for i := 0; i+1 < len(tok); i++ {
		if tok[i] == "-j" || tok[i] == "-g" {
			return tok[i+1]
		}
	}
	return ""
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
	tok := specTokens(spec)
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
		switch tgt := target(spec); {
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
