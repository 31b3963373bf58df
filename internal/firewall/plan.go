package firewall

import (
	"fmt"
	"slices"
	"strings"
)

// plan returns the changes that make cur hold virtbridge's rules for
// bridges, and nothing else of virtbridge's. It is pure. With no bridges
// it removes virtbridge entirely (jumps, rules, chain): an empty chain
// with jumps to it would only cost every forwarded packet a lookup.
//
// It never touches a rule that is not virtbridge's: ours are the rules of
// Chain and the rules anywhere that jump to Chain. Missing rules are added
// before stale ones are deleted, so traffic is not interrupted, except when
// the jump must move to the top and a copy of it is already further down:
// iptables deletes the first matching rule, so the old copy must go first.
func plan(cur *ruleset, bridges []string) ([]op, error) {
	var ops []op
	if len(bridges) == 0 {
		ops = planRemove(cur)
	} else {
		if !cur.has(Chain) {
			ops = append(ops, op{kind: opNewChain, chain: Chain, why: "chain " + Chain + " is missing"})
		}
		ops = append(ops, planChain(cur.rules[Chain], bridges)...)
		for _, parent := range []string{forward, DockerUser} {
			if cur.has(parent) {
				ops = append(ops, planJump(parent, cur.rules[parent])...)
			}
		}
	}
	// Play the changes on a copy: it fills in the positions undo needs and
	// proves that the plan converges.
	sim := cur.clone()
	for i := range ops {
		if err := sim.apply(&ops[i]); err != nil {
			return nil, fmt.Errorf("planning firewall changes: %s: %w", ops[i], err)
		}
	}
	if len(ops) > 0 {
		if again, err := plan(sim, bridges); err != nil || len(again) > 0 {
			return nil, fmt.Errorf("planning firewall changes: plan does not converge (%v, %v)", again, err)
		}
	}
	return ops, nil
}

// planChain makes the owned chain hold exactly one accept rule per bridge.
// Order does not matter: every rule accepts, and they are disjoint.
func planChain(have, bridges []string) []op {
	var ops []op
	want := map[string]bool{}
	for _, b := range bridges {
		s := acceptSpec(b)
		want[s] = true
		if !slices.Contains(have, s) {
			ops = append(ops, op{kind: opAppend, chain: Chain, spec: s, why: "rule for bridge " + b + " is missing from " + Chain})
		}
	}
	seen := map[string]bool{}
	for _, s := range have {
		switch {
		case !want[s]:
			ops = append(ops, op{kind: opDelete, chain: Chain, spec: s, why: "stray rule in " + Chain + ": " + s})
		case seen[s]:
			ops = append(ops, op{kind: opDelete, chain: Chain, spec: s, why: "duplicate rule in " + Chain + ": " + s})
		}
		seen[s] = true
	}
	return ops
}

// planJump makes jumpSpec the first rule of parent and the only one there
// that jumps to Chain.
func planJump(parent string, rules []string) []op {
	var jumps []int
	canon := 0
	for i, s := range rules {
		if Target(s) == Chain {
			jumps = append(jumps, i)
			if s == jumpSpec {
				canon++
			}
		}
	}
	if len(jumps) == 1 && jumps[0] == 0 && canon == 1 {
		return nil
	}
	why := jumpProblem(parent, rules, jumps)
	insert := op{kind: opInsert, chain: parent, pos: 1, spec: jumpSpec, why: why}
	var dels []op
	keepTop := len(jumps) > 0 && jumps[0] == 0 && rules[0] == jumpSpec && canon == 1
	for _, i := range jumps {
		if keepTop && i == 0 {
			continue
		}
		dels = append(dels, op{kind: opDelete, chain: parent, spec: rules[i], why: why})
	}
	switch {
	case keepTop:
		return dels
	case canon == 0:
		return append([]op{insert}, dels...)
	}
	return append(dels, insert)
}

func jumpProblem(parent string, rules []string, jumps []int) string {
	switch {
	case len(jumps) == 0:
		return fmt.Sprintf("%s has no jump to %s", parent, Chain)
	case len(jumps) > 1:
		return fmt.Sprintf("%s has %d jumps to %s, want one", parent, len(jumps), Chain)
	case jumps[0] != 0:
		return fmt.Sprintf("the jump to %s is rule %d of %s, not 1 (rule 1 is %q)", Chain, jumps[0]+1, parent, rules[0])
	}
	return fmt.Sprintf("the jump to %s in %s is %q, want %q", Chain, parent, rules[jumps[0]], jumpSpec)
}

// planRemove deletes every jump to Chain, then its rules, then the chain.
func planRemove(cur *ruleset) []op {
	var ops []op
	for _, c := range cur.chains {
		for _, s := range cur.rules[c] {
			if Target(s) == Chain {
				ops = append(ops, op{kind: opDelete, chain: c, spec: s, why: "jump to " + Chain + " in " + c + " is left over"})
			}
		}
	}
	if !cur.has(Chain) {
		return ops
	}
	for _, s := range cur.rules[Chain] {
		ops = append(ops, op{kind: opDelete, chain: Chain, spec: s, why: "rule in " + Chain + " is left over: " + s})
	}
	return append(ops, op{kind: opDelChain, chain: Chain, why: "chain " + Chain + " is left over"})
}

// problems lists the distinct reasons behind ops, for Check.
func problems(label string, ops []op) []string {
	var out []string
	for _, o := range ops {
		p := label + ": " + o.why
		if !slices.Contains(out, p) {
			out = append(out, p)
		}
	}
	return out
}

// describe renders ops one per line, for error messages.
func describe(ops []op) string {
	var s []string
	for _, o := range ops {
		s = append(s, o.String())
	}
	return strings.Join(s, "; ")
}
