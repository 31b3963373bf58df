package links

import (
	"errors"
	"fmt"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Policy-routing rules naming the uplink (`ip rule add iif eth0 ...`,
// `oif eth0`). Once the uplink is a bridge port, packets it receives
// arrive on the bridge, so a rule matching iif uplink never matches again;
// such rules name the bridge instead: a copy naming the bridge is added at
// the same priority before the original is deleted, each with its undo.
// (Rules that only name a source or a table keep their path as the routes
// of their table move.)

// uplinkRules lists the rules (both families) whose iif or oif is uplink.
func (m *Manager) uplinkRules(uplink string) ([]netlink.Rule, error) {
	// netlink's rule dump request carries an ifinfomsg, not a
	// fib_rule_hdr, which the kernel refuses under strict checking
	// (setStrict): the dump is made without it.
	if err := m.h.SetStrictCheck(false); err != nil && !errors.Is(err, unix.ENOPROTOOPT) {
		return nil, fmt.Errorf("listing policy-routing rules: %w", err)
	}
	var rs []netlink.Rule
	var err error
	for range 5 {
		if rs, err = m.h.RuleList(netlink.FAMILY_ALL); !errors.Is(err, netlink.ErrDumpInterrupted) {
			break
		}
	}
	if serr := m.h.SetStrictCheck(true); err == nil && serr != nil && !errors.Is(serr, unix.ENOPROTOOPT) {
		err = serr
	}
	if err != nil {
		return nil, fmt.Errorf("listing policy-routing rules: %w", err)
	}
	var out []netlink.Rule
	for _, r := range rs {
		if r.IifName == uplink || r.OifName == uplink {
			out = append(out, r)
		}
	}
	return out, nil
}

// ruleOn is rule with its iif and oif naming to where they named from.
func ruleOn(rule netlink.Rule, from, to string) netlink.Rule {
	c := rule
	if c.IifName == from {
		c.IifName = to
	}
	if c.OifName == from {
		c.OifName = to
	}
	return c
}

func ruleString(r netlink.Rule) string { return ruleValues([]netlink.Rule{r})[0].String() }

// moveRule makes rule name the bridge instead of the uplink: a copy
// naming the bridge first, then the original goes.
func (m *Manager) moveRule(r *run, rule netlink.Rule) error {
	up, br := r.up.Attrs().Name, r.b.Name
	what := ruleString(rule)
	c := ruleOn(rule, up, br)
	if err := m.h.RuleAdd(&c); err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("adding rule %q for bridge %q: %w", ruleString(c), br, err)
	}
	r.rv.Add(func() error {
		err := m.h.RuleDel(&c)
		if errors.Is(err, unix.ENOENT) {
			return nil
		}
		return m.wrap(fmt.Sprintf("deleting rule %q", ruleString(c)), err)
	})
	orig := rule
	if err := m.h.RuleDel(&orig); err != nil && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("deleting rule %q: %w", what, err)
	}
	r.rv.Add(func() error {
		err := m.h.RuleAdd(&orig)
		if errors.Is(err, unix.EEXIST) {
			return nil
		}
		return m.wrap(fmt.Sprintf("adding rule %q back", what), err)
	})
	return nil
}
