package firewall

import (
	"fmt"
	"strings"
	"testing"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
)

// Rule fixtures: the expressions nft 1.0 makes for the rules named.

func ifExpr(out bool, op expr.CmpOp, name string) []expr.Any {
	key := expr.MetaKeyIIFNAME
	if out {
		key = expr.MetaKeyOIFNAME
	}
	data := []byte(name)
	if !strings.HasSuffix(name, "*") {
		data = append(data, make([]byte, 16-len(name))...)
	} else {
		data = data[:len(data)-1]
	}
	return []expr.Any{&expr.Meta{Key: key, Register: 1}, &expr.Cmp{Op: op, Register: 1, Data: data}}
}

func iif(n string) []expr.Any { return ifExpr(false, expr.CmpOpEq, n) }
func oif(n string) []expr.Any { return ifExpr(true, expr.CmpOpEq, n) }
func notOif(n string) []expr.Any {
	return ifExpr(true, expr.CmpOpNeq, n)
}

// ctState is `ct state established,related`: a bitwise match this model
// does not judge.
func ctState() []expr.Any {
	return []expr.Any{&expr.Ct{Key: expr.CtKeySTATE, Register: 1},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: []byte{6, 0, 0, 0}, Xor: []byte{0, 0, 0, 0}},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: []byte{0, 0, 0, 0}}}
}

func verdict(k expr.VerdictKind, chain string) []expr.Any {
	return []expr.Any{&expr.Verdict{Kind: k, Chain: chain}}
}

func rule(h uint64, comment string, parts ...[]expr.Any) NativeRule {
	r := &nftables.Rule{Handle: h}
	for _, p := range parts {
		r.Exprs = append(r.Exprs, p...)
	}
	if comment != "" {
		r.UserData = userdata.AppendString(nil, userdata.TypeComment, comment)
	}
	return ruleOf(r)
}

var (
	accept = verdict(expr.VerdictAccept, "")
	drop   = verdict(expr.VerdictDrop, "")
	ret    = verdict(expr.VerdictReturn, "")
	reject = []expr.Any{&expr.Reject{Type: 0, Code: 3}}
	count  = []expr.Any{&expr.Counter{}}
)

func TestRuleOfRendersFixtures(t *testing.T) {
	got := strings.Join([]string{
		rule(1, "", iif("br0"), oif("br0"), count, accept).String(),
		rule(2, "virtbridge", iif("br*"), notOif("eth0"), drop).String(),
		rule(3, "", ctState(), accept).String(),
		rule(4, "", reject).String(),
		rule(5, "", verdict(expr.VerdictJump, "fwd_in")).String(),
		rule(6, "", verdict(expr.VerdictQueue, "")).String(),
	}, "\n")
	want := strings.Join([]string{
		`iifname "br0" oifname "br0" accept`,
		`iifname "br*" oifname != "eth0" drop comment "virtbridge"`,
		`… accept`,
		`reject`,
		`jump fwd_in`,
		`unknown`,
	}, "\n")
	if got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}

func TestJudge(t *testing.T) {
	base := func(policy string, rules ...NativeRule) NativeChain {
		return NativeChain{Family: "inet", Table: "filter", Chain: "forward", Policy: policy, Owner: OwnerAdmin, Rules: rules,
			Chains: map[string][]NativeRule{
				"accept_br0": {rule(20, "", iif("br0"), accept)},
				"maybe_ret":  {rule(30, "", ctState(), ret), rule(31, "", accept)},
				"drops":      {rule(40, "", drop)},
			}}
	}
	cases := []struct {
		name  string
		chain NativeChain
		want  string
	}{
		{"empty accept policy", base("accept"), "passes"},
		{"empty drop policy", base("drop"), "drops at policy drop"},
		{"trailing reject", base("accept", rule(1, "", reject)), "drops at chain forward rule handle 1: reject"},
		{"ct accept then drop policy", base("drop", rule(1, "", ctState(), accept)), "drops at policy drop"},
		{"our accept on top", base("drop", rule(9, "virtbridge", iif("br0"), oif("br0"), accept), rule(1, "", drop)), "passes"},
		{"other bridge's accept", base("drop", rule(9, "", iif("br1"), oif("br1"), accept)), "drops at policy drop"},
		{"wildcard accept", base("drop", rule(9, "", iif("br*"), accept)), "passes"},
		{"drop of another device", base("accept", rule(1, "", oif("eth0"), drop)), "passes"},
		{"drop unless eth0", base("accept", rule(1, "", notOif("eth0"), drop)), "drops at chain forward rule handle 1: oifname != \"eth0\" drop"},
		{"counter only", base("accept", rule(1, "", count)), "passes"},
		{"maybe drop", base("accept", rule(1, "", ctState(), drop)), "drops at chain forward rule handle 1: … drop"},
		{"queue", base("accept", rule(1, "", verdict(expr.VerdictQueue, ""))), "drops at chain forward rule handle 1: unknown"},
		{"jump that accepts", base("drop", rule(1, "", verdict(expr.VerdictJump, "accept_br0"))), "passes"},
		{"jump that drops", base("accept", rule(1, "", verdict(expr.VerdictJump, "drops"))), "drops at chain drops rule handle 40: drop"},
		{"jump not read", base("accept", rule(1, "", verdict(expr.VerdictJump, "gone"))), "drops at chain forward rule handle 1: jump gone (target not read)"},
		{"jump: maybe return before accept, policy drop", base("drop", rule(1, "", verdict(expr.VerdictJump, "maybe_ret"))), "drops at policy drop"},
		{"jump: maybe return before accept, policy accept", base("accept", rule(1, "", verdict(expr.VerdictJump, "maybe_ret"))), "passes"},
		{"goto maybe return before accept, policy drop", base("drop", rule(1, "", verdict(expr.VerdictGoto, "maybe_ret"))), "drops at policy drop"},
		{"return then drop", base("accept", rule(1, "", ret), rule(2, "", drop)), "passes"},
		{"maybe return then accept, policy drop", base("drop", rule(1, "", ctState(), ret), rule(2, "", accept)), "drops at policy drop"},
	}
	for _, c := range cases {
		v := Judge(c.chain, "br0")
		got := "passes"
		if v.Drops {
			got = "drops at " + v.At
		}
		if got != c.want {
			t.Errorf("%s: got %q, want %q", c.name, got, c.want)
		}
	}
}

func TestOwnerOf(t *testing.T) {
	var got []string
	for _, ft := range [][2]string{{"inet", "firewalld"}, {"ip", "docker-bridges"}, {"ip6", "docker-bridges"},
		{"ip", "libvirt_network"}, {"inet", "libvirt_network"}, {"inet", "incus"}, {"ip", "filter"}, {"ip6", "filter"},
		{"inet", "filter"}, {"ip", "mytable"}} {
		got = append(got, fmt.Sprintf("%s %s: %s", ft[0], ft[1], OwnerOf(ft[0], ft[1])))
	}
	want := `inet firewalld: firewalld
ip docker-bridges: docker
ip6 docker-bridges: docker
ip libvirt_network: libvirt
inet libvirt_network: libvirt
inet incus: incus
ip filter: iptables-nft
ip6 filter: iptables-nft
inet filter: administrator
ip mytable: administrator`
	if g := strings.Join(got, "\n"); g != want {
		t.Errorf("got\n%s\nwant\n%s", g, want)
	}
}

func TestPlanNative(t *testing.T) {
	ours := func(h uint64, br string) NativeRule {
		return rule(h, nativeComment(br), iif(br), oif(br), accept)
	}
	admin := NativeChain{Family: "inet", Table: "filter", Chain: "forward", Policy: "drop", Owner: OwnerAdmin}
	docker := NativeChain{Family: "ip", Table: "docker-bridges", Chain: "filter-FORWARD", Policy: "drop", Owner: OwnerDocker}
	passing := NativeChain{Family: "inet", Table: "t2", Chain: "fw", Policy: "accept", Owner: OwnerAdmin,
		Rules: []NativeRule{ours(3, "br0"), rule(4, "", oif("eth0"), drop)}}
	render := func(ops []nativeOp, refusals []string) string {
		var s []string
		for _, o := range ops {
			s = append(s, o.String())
		}
		return strings.Join(append(s, refusals...), "\n")
	}
	cases := []struct {
		name   string
		chains []NativeChain
		leave  bool
		want   string
	}{
		{"insert per bridge, not into docker's, stale removed where not needed",
			[]NativeChain{admin, docker, passing}, false,
			`nft insert rule inet filter forward iifname "br0" oifname "br0" accept comment "virtbridge: bridged traffic of br0"
nft insert rule inet filter forward iifname "br1" oifname "br1" accept comment "virtbridge: bridged traffic of br1"
nft delete rule inet t2 fw handle 3`},
		{"in place: nothing",
			[]NativeChain{withRules(admin, ours(7, "br1"), ours(6, "br0"), rule(1, "", ctState(), accept))}, false, ""},
		{"below another rule, duplicate, altered, bridge gone",
			[]NativeChain{withRules(admin, ours(7, "br0"), ours(8, "br0"), rule(9, nativeComment("br1"), iif("br1"), accept),
				ours(10, "br9"), rule(1, "", count), ours(11, "br1"))}, false,
			`nft delete rule inet filter forward handle 8
nft delete rule inet filter forward handle 9
nft delete rule inet filter forward handle 10
nft delete rule inet filter forward handle 11
nft insert rule inet filter forward iifname "br1" oifname "br1" accept comment "virtbridge: bridged traffic of br1"`},
		{"leave: refusals only",
			[]NativeChain{admin, docker}, true,
			`nftables chain inet filter forward (the administrator's table) may drop bridged frames of br0 (policy drop), and firewall.native_tables is leave
nftables chain inet filter forward (the administrator's table) may drop bridged frames of br1 (policy drop), and firewall.native_tables is leave`},
	}
	for _, c := range cases {
		if got := render(planNative(c.chains, []string{"br0", "br1"}, c.leave)); got != c.want {
			t.Errorf("%s: got\n%s\nwant\n%s", c.name, got, c.want)
		}
	}
}

func withRules(c NativeChain, rs ...NativeRule) NativeChain {
	c.Rules = rs
	return c
}
