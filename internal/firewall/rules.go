package firewall

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/virtbridge/virtbridge/internal/names"
)

// Chain is the filter-table chain virtbridge owns in both families.
const Chain = "VIRTBRIDGE-FWD"

// DockerUser is Docker's chain for user rules. Docker re-inserts its own
// jumps at the top of FORWARD and sets its policy to DROP, but runs
// DOCKER-USER first, so virtbridge also jumps from there when it exists.
const DockerUser = "DOCKER-USER"

const (
	filterTable = "filter"
	forward     = "FORWARD"
	// jumpSpec is the one rule virtbridge puts into FORWARD (and
	// DOCKER-USER), exactly as `iptables -S` prints it.
	jumpSpec = "-m comment --comment virtbridge -j " + Chain
	// specVersion names the rule format; it is part of the remembered state,
	// so a virtbridge that writes other rules never trusts an old verdict.
	specVersion = "v2"
)

// acceptSpec is the rule that accepts the bridged traffic of bridge br. With
// br_netfilter and bridge-nf-call-iptables=1 a frame bridged between two
// ports of br passes FORWARD with in- and out-interface br; the physdev
// match keeps routed traffic that enters and leaves br out of it.
func acceptSpec(br string) string {
	return "-i " + br + " -o " + br + " -m physdev --physdev-is-bridged" +
		" -m comment --comment " + saveString("virtbridge: bridged traffic of "+br) + " -j ACCEPT"
}

// wantBridges validates the bridge names and returns them sorted without
// duplicates. Names are restricted beyond the kernel's rules so that they
// mean the same to iptables (a trailing '+' is a wildcard there) and print
// without quoting.
func wantBridges(in []string) ([]string, error) {
	out := slices.Clone(in)
	slices.Sort(out)
	out = slices.Compact(out)
	for _, b := range out {
		if err := names.Ifname(b); err != nil {
			return nil, fmt.Errorf("firewall rule for bridge %q: %w", b, err)
		}
		if strings.IndexFunc(b, func(r rune) bool {
			return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_.@", r))
		}) >= 0 {
			return nil, fmt.Errorf("firewall rule for bridge %q: iptables rules support only letters, digits and -_.@ in bridge names", b)
		}
	}
	return out, nil
}

// ruleset is one family's filter table as `iptables -S` prints it. Rules
// are kept as the text after "-A CHAIN ", which is what comparisons use.
type ruleset struct {
	chains []string            // built-in chains first, in the order printed
	policy map[string]string   // built-in chain -> policy
	rules  map[string][]string // chain -> rule specs in order
}

func newRuleset() *ruleset {
	r := &ruleset{policy: map[string]string{}, rules: map[string][]string{}}
	for _, c := range []string{"INPUT", forward, "OUTPUT"} {
		r.chains = append(r.chains, c)
		r.policy[c] = "ACCEPT"
	}
	return r
}

// Filter is a filter table as `iptables -t filter -S` prints it, for
// readers (ReadFilter, ParseFilter).
type Filter struct {
	Chains []string            // in the order printed: built-in chains first
	Policy map[string]string   // built-in chain -> policy
	Rules  map[string][]string // chain -> rule specs in order, as printed after "-A CHAIN "
}

// ParseFilter reads `iptables -t filter -S` output. It refuses a line it
// does not know, a rule of a chain not declared before it, and a table
// without FORWARD.
func ParseFilter(out string) (Filter, error) {
	r := Filter{Policy: map[string]string{}, Rules: map[string][]string{}}
	for i, line := range strings.Split(out, "\n") {
		if line == "" {
			continue
		}
		f := strings.SplitN(line, " ", 3)
		switch {
		case len(f) == 3 && f[0] == "-P":
			r.Chains = append(r.Chains, f[1])
			r.Policy[f[1]] = f[2]
		case len(f) == 2 && f[0] == "-N":
			r.Chains = append(r.Chains, f[1])
		case len(f) == 3 && f[0] == "-A" && slices.Contains(r.Chains, f[1]):
			r.Rules[f[1]] = append(r.Rules[f[1]], f[2])
		default:
			return Filter{}, fmt.Errorf("parsing iptables -S output line %d: unexpected %q", i+1, line)
		}
	}
	if !slices.Contains(r.Chains, forward) {
		return Filter{}, fmt.Errorf("parsing iptables -S output: no %s chain", forward)
	}
	return r, nil
}

// parseRuleset reads `iptables -t filter -S` output.
func parseRuleset(out string) (*ruleset, error) {
	f, err := ParseFilter(out)
	if err != nil {
		return nil, err
	}
	return rulesetOf(f), nil
}

// rulesetOf takes over a parsed table.
func rulesetOf(f Filter) *ruleset {
	return &ruleset{chains: f.Chains, policy: f.Policy, rules: f.Rules}
}

func (r *ruleset) has(chain string) bool { return slices.Contains(r.chains, chain) }

func (r *ruleset) clone() *ruleset {
	c := &ruleset{chains: slices.Clone(r.chains), policy: map[string]string{}, rules: map[string][]string{}}
	for k, v := range r.policy {
		c.policy[k] = v
	}
	for k, v := range r.rules {
		c.rules[k] = slices.Clone(v)
	}
	return c
}

// String renders the table like `iptables -S` (both variants): built-in
// chains with their policies, user chains sorted by name, then the rules
// chain by chain in that order.
func (r *ruleset) String() string {
	var b strings.Builder
	var builtin, user []string
	for _, c := range r.chains {
		if p, ok := r.policy[c]; ok {
			builtin = append(builtin, c)
			fmt.Fprintf(&b, "-P %s %s\n", c, p)
		} else {
			user = append(user, c)
		}
	}
	slices.Sort(user)
	for _, c := range user {
		fmt.Fprintf(&b, "-N %s\n", c)
	}
	for _, c := range append(builtin, user...) {
		for _, s := range r.rules[c] {
			fmt.Fprintf(&b, "-A %s %s\n", c, s)
		}
	}
	return b.String()
}

// errGone and errExists classify model failures like iptables' "does not
// exist" and "already exists".
var (
	errGone   = errors.New("no such chain or rule")
	errExists = errors.New("chain already exists")
)

// apply performs o on the in-memory table with iptables' semantics. For a
// delete it records in o.pos where the rule was, so that undo can put it
// back there.
func (r *ruleset) apply(o *op) error {
	if o.kind != opNewChain && !r.has(o.chain) {
		return fmt.Errorf("chain %s: %w", o.chain, errGone)
	}
	rules := r.rules[o.chain]
	switch o.kind {
	case opNewChain:
		if r.has(o.chain) {
			return fmt.Errorf("chain %s: %w", o.chain, errExists)
		}
		r.chains = append(r.chains, o.chain)
	case opDelChain:
		if _, builtin := r.policy[o.chain]; builtin || len(rules) > 0 || r.referenced(o.chain) {
			return fmt.Errorf("deleting chain %s: built-in, not empty or still referenced", o.chain)
		}
		r.chains = slices.DeleteFunc(r.chains, func(c string) bool { return c == o.chain })
		delete(r.rules, o.chain)
	case opAppend:
		r.rules[o.chain] = append(rules, o.spec)
	case opInsert:
		if o.pos < 1 || o.pos > len(rules)+1 {
			return fmt.Errorf("inserting into %s at %d: index of insertion too big", o.chain, o.pos)
		}
		r.rules[o.chain] = slices.Insert(rules, o.pos-1, o.spec)
	case opDelete:
		i := slices.Index(rules, o.spec)
		if i < 0 {
			return fmt.Errorf("rule %q in %s: %w", o.spec, o.chain, errGone)
		}
		o.pos = i + 1
		r.rules[o.chain] = slices.Delete(rules, i, i+1)
	case opPolicy:
		if _, builtin := r.policy[o.chain]; !builtin {
			return fmt.Errorf("setting the policy of %s: not a built-in chain", o.chain)
		}
		r.policy[o.chain] = o.spec
	}
	return nil
}

func (r *ruleset) referenced(chain string) bool {
	for _, c := range r.chains {
		for _, s := range r.rules[c] {
			if Target(s) == chain {
				return true
			}
		}
	}
	return false
}

// Target returns the chain or verdict a rule spec, as `iptables -S` prints
// it after "-A CHAIN ", jumps or goes to; "" when there is none or the spec
// does not split (SplitRule).
func Target(spec string) string {
	if !strings.Contains(spec, "-j ") && !strings.Contains(spec, "-g ") {
		return ""
	}
	t, err := SplitRule(spec)
	if err != nil {
		return ""
	}
	for i := 0; i+1 < len(t); i++ {
		if t[i] == "--comment" {
			i++
			continue
		}
		if t[i] == "-j" || t[i] == "-g" || t[i] == "--jump" || t[i] == "--goto" {
			return t[i+1]
		}
	}
	return ""
}

// SplitRule splits a rule spec printed by `iptables -S` back into
// arguments, undoing the double quotes and backslash escapes of
// xtables_save_string. An unterminated quote is an error.
func SplitRule(spec string) ([]string, error) {
	var out []string
	var cur strings.Builder
	quoted, inWord := false, false
	for i := 0; i < len(spec); i++ {
		c := spec[i]
		switch {
		case quoted && c == '\\' && i+1 < len(spec):
			i++
			cur.WriteByte(spec[i])
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
	if quoted {
		return nil, fmt.Errorf("rule %q: unterminated quote", spec)
	}
	if inWord {
		out = append(out, cur.String())
	}
	return out, nil
}

// saveString quotes s the way iptables prints string arguments
// (xtables_save_string): bare when it holds only [A-Za-z0-9_-], else in
// double quotes with ", ' and \ escaped.
func saveString(s string) string {
	bare := s != "" && strings.IndexFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-')
	}) < 0
	if bare {
		return s
	}
	var b strings.Builder
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		if strings.IndexByte(`"\'`, s[i]) >= 0 {
			b.WriteByte('\\')
		}
		b.WriteByte(s[i])
	}
	b.WriteByte('"')
	return b.String()
}

// opKind is a kind of change to a filter table.
type opKind int

const (
	opNewChain opKind = iota
	opDelChain
	opAppend
	opInsert
	opDelete
	opPolicy // only for Fake.Run: virtbridge never changes a policy
)

// op is one iptables change.
type op struct {
	kind  opKind
	chain string
	pos   int    // opInsert: where to insert (1 = top); opDelete: where the rule was
	spec  string // rule spec as `iptables -S` prints it; opPolicy: the policy
	why   string // the problem the change fixes, for Check
}

// String renders o as iptables arguments, e.g. "-I FORWARD 1 -j X".
func (o op) String() string {
	switch o.kind {
	case opNewChain:
		return "-N " + o.chain
	case opDelChain:
		return "-X " + o.chain
	case opAppend:
		return "-A " + o.chain + " " + o.spec
	case opInsert:
		return "-I " + o.chain + " " + strconv.Itoa(o.pos) + " " + o.spec
	case opDelete:
		return "-D " + o.chain + " " + o.spec
	}
	return "-P " + o.chain + " " + o.spec
}

// undo returns the change that takes o back.
func (o op) undo() op {
	switch o.kind {
	case opNewChain:
		return op{kind: opDelChain, chain: o.chain}
	case opDelChain:
		return op{kind: opNewChain, chain: o.chain}
	case opAppend, opInsert:
		return op{kind: opDelete, chain: o.chain, spec: o.spec}
	}
	return op{kind: opInsert, chain: o.chain, pos: max(o.pos, 1), spec: o.spec}
}
