package netnstest

import (
	"strings"
	"testing"
)

// ruleTools are the iptables commands whose rules the namespace holds:
// the nf_tables variants always, the legacy ones where their filter table
// exists (merely listing them would create it).
func (n *NS) ruleTools() []string {
	tools := []string{"iptables-nft", "ip6tables-nft"}
	if tables, _ := n.Exec("cat", "/proc/net/ip_tables_names"); strings.Contains(tables, "filter") {
		tools = append(tools, "iptables-legacy")
	}
	if tables, _ := n.Exec("cat", "/proc/net/ip6_tables_names"); strings.Contains(tables, "filter") {
		tools = append(tools, "ip6tables-legacy")
	}
	return tools
}

// WantRulesOnce checks the firewall of the namespace after concurrent
// writers: in every table (IPv4 and IPv6, nf_tables and legacy) no rule
// appears twice, and wherever chain exists, each chain of from that exists
// (FORWARD always does) jumps to it exactly once. A chain that exists in no
// table is a failure too. Failures are reported with t.Errorf.
func (n *NS) WantRulesOnce(t testing.TB, chain string, from ...string) {
	t.Helper()
	found := false
	for _, tool := range n.ruleTools() {
		rules := n.Run(t, tool, "-S")
		seen := map[string]int{}
		for _, l := range strings.Split(rules, "\n") {
			if strings.HasPrefix(l, "-A ") {
				seen[l]++
				if seen[l] == 2 {
					t.Errorf("%s: rule %q is there more than once:\n%s", tool, l, rules)
				}
			}
		}
		if !strings.Contains(rules, "\n-N "+chain+"\n") {
			continue
		}
		found = true
		for _, c := range from {
			if c != "FORWARD" && !strings.Contains(rules, "\n-N "+c+"\n") {
				continue
			}
			jumps := 0
			for l, k := range seen {
				if strings.HasPrefix(l, "-A "+c+" ") && strings.HasSuffix(l, " -j "+chain) {
					jumps += k
				}
			}
			if jumps != 1 {
				t.Errorf("%s: %d jumps from %s to %s, want 1:\n%s", tool, jumps, c, chain, rules)
			}
		}
	}
	if !found {
		t.Errorf("no chain %s in any iptables table of %s", chain, n.Name)
	}
}
