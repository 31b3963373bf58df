package doctor

import (
	"bytes"
	"strings"
	"testing"

	"github.com/virtbridge/virtbridge/internal/firewall"
)

// TestForwardPathOrder: the forward path of a bridge lists iptables'
// FORWARD and every native chain its frames cross in hook priority order,
// names the first that drops, and gives that chain's fix first; the text
// output lists the path, and chains of a family whose frames skip IP
// filtering are left out.
func TestForwardPathOrder(t *testing.T) {
	early := nativeChain("inet", "filter", "forward", "drop")
	early.Priority = -10
	docker := nativeChain("ip", "docker-bridges", "filter-FORWARD", "accept",
		firewall.NativeRule{Handle: 4, Verdict: "drop", Conds: []firewall.IfCond{{Out: true, Name: "br", Prefix: true}}})
	fwd := nativeChain("inet", "firewalld", "filter_FORWARD", "accept")
	fwd.Priority = 10
	v6 := nativeChain("ip6", "mine", "fwd", "drop")
	v6.Priority = 20
	s := Sources{ConfigPath: "test.yaml", Config: mustConfig(t, "bridges: {br0: {}}\n"),
		Sysctls: fakeSysctls{ipForward: "1", nfCallIPTables: "1", nfCallIP6Tables: "0"},
		Tables:  fakeTables{table(t, "nft", "ipv4", "-P FORWARD DROP\n"), table(t, "nft", "ipv6", "-P FORWARD DROP\n")},
		Native:  fakeNative{docker, fwd, early, v6},
	}
	r := Run(s)
	f := one(t, r, "forward-path", "br0")
	var got []string
	for _, h := range f.Path {
		got = append(got, h.Verdict+" "+h.Chain+" "+h.At)
	}
	wantPath := []string{
		"drop nft inet filter forward policy drop",
		"drop iptables-nft FORWARD policy DROP",
		`drop nft ip docker-bridges filter-FORWARD chain filter-FORWARD rule handle 4: oifname "br*" drop`,
		"pass nft inet firewalld filter_FORWARD policy accept",
	}
	if strings.Join(got, "\n") != strings.Join(wantPath, "\n") {
		t.Errorf("path:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(wantPath, "\n"))
	}
	want(t, f, Fail, "3 of the 4 forward chain(s)", "the first, in hook priority order, is nft inet filter forward (policy drop)",
		"at the top of that chain", "then also iptables-nft FORWARD, nft ip docker-bridges filter-FORWARD")
	if f.Fixable {
		t.Error("Docker's chain is not virtbridge's to fix, so the path is not either")
	}
	var b bytes.Buffer
	if err := WriteText(&b, r, nil, false); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), "        1. drop nft inet filter forward (administrator, inet, priority -10): policy drop\n"+
		"        2. drop iptables-nft FORWARD (iptables-nft, ipv4, priority 0): policy DROP\n") {
		t.Errorf("text output does not list the path:\n%s", b.String())
	}

	// The administrator's and iptables' chains fixed: what is left is
	// Docker's, which virtbridge does not touch.
	early.Rules = []firewall.NativeRule{{Handle: 9, Verdict: "accept", Comment: "virtbridge: bridged traffic of br0",
		Conds: []firewall.IfCond{{Name: "br0"}, {Out: true, Name: "br0"}}}}
	s.Native = fakeNative{docker, fwd, early}
	s.Tables = fakeTables{table(t, "nft", "ipv4", "-P FORWARD DROP\n-N VIRTBRIDGE-FWD\n-A FORWARD -j VIRTBRIDGE-FWD\n")}
	f = one(t, Run(s), "forward-path", "br0")
	want(t, f, Fail, "1 of the 4", "is nft ip docker-bridges filter-FORWARD", "Docker's table is Docker's")
	if f.Path[0].Verdict != "pass" || f.Path[1].At != "virtbridge's jump (rule 1) accepts" {
		t.Errorf("path after the fix: %+v", f.Path)
	}

	s.Native = fakeNative{fwd, early}
	want(t, one(t, Run(s), "forward-path", "br0"), OK, "pass all 3")
	s.Sysctls = fakeSysctls{ipForward: "1", nfCallIPTables: "0", nfCallIP6Tables: "0"}
	f = one(t, Run(s), "forward-path", "br0")
	want(t, f, OK, "cross no IP forward chain")
	if len(f.Path) != 0 {
		t.Errorf("a path with bridge-nf-call off: %+v", f.Path)
	}
}
