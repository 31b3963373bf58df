package doctor

import (
	"testing"

	"github.com/virtbridge/virtbridge/internal/firewall"
)

type fakeNative []firewall.NativeChain

func (f fakeNative) ForwardChains() ([]firewall.NativeChain, error) { return f, nil }

func nativeChain(fam, table, chain, policy string, rules ...firewall.NativeRule) firewall.NativeChain {
	return firewall.NativeChain{Family: fam, Table: table, Chain: chain, Policy: policy,
		Owner: firewall.OwnerOf(fam, table), Rules: rules}
}

// TestNativeForwardByOwner: each owner's dropping chain is named, with
// the rule or policy and the fix that owner allows.
func TestNativeForwardByOwner(t *testing.T) {
	drop := firewall.NativeRule{Handle: 4, Verdict: "drop", Conds: []firewall.IfCond{{Out: true, Name: "br", Prefix: true}}}
	reject := firewall.NativeRule{Handle: 7, Verdict: "reject"}
	accept := firewall.NativeRule{Handle: 9, Verdict: "accept", Conds: []firewall.IfCond{{Name: "br0"}, {Out: true, Name: "br0"}}}
	s := Sources{ConfigPath: "test.yaml", Config: mustConfig(t, "bridges: {br0: {}}\n"),
		Sysctls: fakeSysctls{ipForward: "1", nfCallIPTables: "1", nfCallIP6Tables: "1"},
		Native: fakeNative{
			nativeChain("inet", "filter", "forward", "drop"),
			nativeChain("ip", "docker-bridges", "filter-FORWARD", "accept", drop),
			nativeChain("inet", "firewalld", "filter_FORWARD", "accept", reject),
			nativeChain("ip6", "libvirt_network", "guest_cross", "accept", reject),
			nativeChain("inet", "incus", "fwd", "drop", accept),
		},
	}
	r := Run(s)
	admin := one(t, r, "nft-forward", "nft inet filter forward (administrator, priority 0) for br0")
	want(t, admin, Fail, "inet filter forward may drop bridged frames of br0", "policy drop", "a drop anywhere is final",
		"doctor --fix", "at the top of that chain")
	if !admin.Fixable {
		t.Error("the administrator's chain is virtbridge's to fix by default")
	}
	for _, c := range []struct{ yaml, says string }{
		{"firewall: {native_tables: leave}\n", "firewall.native_tables is leave"},
		{"firewall: {bridged_forward: leave}\n", "set firewall: {bridged_forward: accept}"},
	} {
		s2 := s
		s2.Config = mustConfig(t, "bridges: {br0: {}}\n"+c.yaml)
		f := one(t, Run(s2), "nft-forward", "nft inet filter forward (administrator, priority 0) for br0")
		want(t, f, Fail, c.says, "`nft insert rule inet filter forward iifname \"br0\" oifname \"br0\" accept`", "bridge_nf_call_iptables: 0")
		if f.Fixable {
			t.Errorf("%s: fixable", c.yaml)
		}
	}
	want(t, one(t, r, "nft-forward", "nft ip docker-bridges filter-FORWARD (docker, priority 0) for br0"), Fail,
		"docker's table", `rule handle 4: oifname "br*" drop`, "no DOCKER-USER chain")
	want(t, one(t, r, "docker", "nft ip docker-bridges"), OK, "no DOCKER-USER chain")
	fwd := one(t, r, "nft-forward", "nft inet firewalld filter_FORWARD (firewalld, priority 0) for br0")
	want(t, fwd, Fail, "reject", "doctor --fix", "uplink's zone", "D-Bus")
	if !fwd.Fixable {
		t.Error("firewalld's zones are virtbridge's to set when it manages the firewall")
	}
	s2 := s
	s2.Config = mustConfig(t, "bridges: {br0: {}}\nfirewall: {bridged_forward: leave}\n")
	want(t, one(t, Run(s2), "nft-forward", "nft inet firewalld filter_FORWARD (firewalld, priority 0) for br0"), Fail,
		"--add-interface=br0", "--add-forward", "not `trusted`", "never edit firewalld's table")
	want(t, one(t, r, "nft-forward", "nft ip6 libvirt_network guest_cross (libvirt, priority 0) for br0"), Fail,
		"libvirt's table is libvirt's")
	want(t, one(t, r, "nft-forward", "nft inet incus fwd (incus, priority 0) for br0"), OK, "pass")

	// Bridged IPv6 skips ip6 chains when bridge-nf-call-ip6tables is 0;
	// with both off no chain is crossed.
	s.Sysctls = fakeSysctls{ipForward: "1", nfCallIPTables: "1", nfCallIP6Tables: "0"}
	if fs := find(Run(s), "nft-forward", "nft ip6 libvirt_network guest_cross (libvirt, priority 0) for br0"); len(fs) != 0 {
		t.Errorf("ip6 chain judged with bridge-nf-call-ip6tables=0: %+v", fs)
	}
	s.Sysctls = fakeSysctls{ipForward: "1", nfCallIPTables: "0", nfCallIP6Tables: "0"}
	if fs := find(Run(s), "nft-forward", ""); len(fs) != 0 {
		t.Errorf("chains judged with bridge-nf-call off: %+v", fs)
	}
}
