package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// stormNativeVMs is how many prepares run at once on the native ruleset.
const stormNativeVMs = 30

// adminRuleset is an administrator's nftables ruleset that drops bridged
// frames: an inet filter forward chain with policy drop, and an ip table
// of theirs whose forward chain ends in a reject.
const adminRuleset = `table inet filter {
	chain forward {
		type filter hook forward priority filter; policy drop;
		ct state established,related accept
	}
}
table ip mine {
	chain vbr_fw {
		type filter hook forward priority 5; policy accept;
		ip saddr 192.0.2.0/24 accept
		reject
	}
}
`

// nativeRulesOf counts, in `nft list chain` output, virtbridge's accept
// rule for each of bridges.
func nativeRulesOf(list string, bridges ...string) map[string]int {
	n := map[string]int{}
	for _, l := range strings.Split(list, "\n") {
		for _, br := range bridges {
			if strings.Contains(l, fmt.Sprintf(`iifname %q oifname %q accept comment "virtbridge: bridged traffic of %s"`, br, br, br)) {
				n[br]++
			}
		}
	}
	return n
}

// TestStormNativeTables: 30 VMs' prepares at once, each a process of the
// built hook, on a host whose administrator's nftables chains drop bridged
// frames (inet filter forward, policy drop; ip mine vbr_fw, a trailing
// reject): every call succeeds silently, and each chain holds exactly one
// accept rule of virtbridge's per bridge, at its top; iptables holds no
// rule twice.
func TestStormNativeTables(t *testing.T) {
	h := newHypervisorNamed(t, cfgStorm, "vbrs", "vbru")
	h.hv.Script(t, `
		ip link add uplink1 type veth peer name upstream1
		ip link set upstream1 netns `+h.up.Name+`
		ip link set uplink1 up
		ip addr add 10.78.0.2/24 dev uplink1`)
	rules := filepath.Join(h.dir, "admin.nft")
	if err := os.WriteFile(rules, []byte(adminRuleset), 0o644); err != nil {
		t.Fatal(err)
	}
	h.hv.Run(t, "nft", "-f", rules)
	// The hook journals to its fallback file here; it says so once, and
	// this test wants every call silent.
	if err := os.WriteFile(filepath.Join(h.dir, "journal.jsonl.noticed"), nil, 0o644); err != nil {
		t.Fatal(err)
	}

	vms := stormFleet(stormNativeVMs)
	begin := time.Now()
	fails := h.storm(t, vms, "01-prepare-begin")
	t.Logf("%d prepares at once: %v", len(vms), time.Since(begin).Round(time.Millisecond))
	if len(fails) > 0 {
		t.Fatalf("%d of %d prepares failed:\n%s", len(fails), len(vms), strings.Join(fails, "\n"))
	}
	for _, chain := range [][]string{{"inet", "filter", "forward"}, {"ip", "mine", "vbr_fw"}} {
		list := h.hv.Run(t, append([]string{"nft", "list", "chain"}, chain...)...)
		n := nativeRulesOf(list, "br-a", "br-b")
		if n["br-a"] != 1 || n["br-b"] != 1 {
			t.Errorf("%s: virtbridge's accept rules per bridge %v, want one each:\n%s", strings.Join(chain, " "), n, list)
		}
		// The first two rules of the chain are virtbridge's.
		var body []string
		for _, l := range strings.Split(list, "\n") {
			if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "table ") && !strings.HasPrefix(l, "chain ") && !strings.HasPrefix(l, "type ") && l != "}" {
				body = append(body, l)
			}
		}
		if len(body) < 2 || len(nativeRulesOf(strings.Join(body[:2], "\n"), "br-a", "br-b")) != 2 {
			t.Errorf("%s: virtbridge's rules are not at the top:\n%s", strings.Join(chain, " "), list)
		}
	}
	h.hv.WantRulesOnce(t, "VIRTBRIDGE-FWD", "FORWARD")

	// The count is sensitive: a second rule of virtbridge's for br-a is seen.
	h.hv.Run(t, "nft", "insert", "rule", "inet", "filter", "forward", "iifname", "br-a", "oifname", "br-a", "accept", "comment", `"virtbridge: bridged traffic of br-a"`)
	if n := nativeRulesOf(h.hv.Run(t, "nft", "list", "chain", "inet", "filter", "forward"), "br-a"); n["br-a"] != 2 {
		t.Errorf("control: a duplicate rule counted %d times, want 2", n["br-a"])
	}
}
