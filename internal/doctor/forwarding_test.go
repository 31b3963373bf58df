package doctor

import (
	"context"
	"fmt"
	"testing"

	"github.com/virtbridge/virtbridge/internal/desired"
	"github.com/virtbridge/virtbridge/internal/sysctl"
)

func table(t *testing.T, variant, family, save string) Table {
	t.Helper()
	tb, err := ParseTable(variant, family, save)
	if err != nil {
		t.Fatal(err)
	}
	return tb
}

// TestForwardVerdict walks FORWARD rule sets seen on real hosts.
func TestForwardVerdict(t *testing.T) {
	br := []string{"br0"}
	for _, tc := range []struct {
		name, save string
		blocked    bool
		ours       bool
		rule       int
	}{
		{"empty", "-P INPUT ACCEPT\n-P FORWARD ACCEPT\n-P OUTPUT ACCEPT\n", false, false, 0},
		{"drop policy", "-P FORWARD DROP\n", true, false, 0},
		{"old RHEL reject", "-P FORWARD ACCEPT\n-A FORWARD -j REJECT --reject-with icmp-host-prohibited\n", true, false, 1},
		{"our jump first", "-P FORWARD DROP\n-N VIRTBRIDGE-FWD\n-A FORWARD -m comment --comment virtbridge -j VIRTBRIDGE-FWD\n-A FORWARD -j REJECT --reject-with icmp-host-prohibited\n", false, true, 1},
		{"reject before our jump", "-P FORWARD ACCEPT\n-N VIRTBRIDGE-FWD\n-A FORWARD -j REJECT --reject-with icmp-host-prohibited\n-A FORWARD -m comment --comment virtbridge -j VIRTBRIDGE-FWD\n", true, false, 1},
		{"physdev accept by hand", "-P FORWARD DROP\n-A FORWARD -m physdev --physdev-is-bridged -j ACCEPT\n", false, false, 1},
		{"established only is no accept", "-P FORWARD DROP\n-A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n", true, false, 0},
		{"invalid-only drop is harmless", "-P FORWARD ACCEPT\n-A FORWARD -m conntrack --ctstate INVALID -j DROP\n", false, false, 0},
		{"drop on another interface", "-P FORWARD ACCEPT\n-A FORWARD -i eth1 -j DROP\n", false, false, 0},
		{"drop on a wildcard matching the bridge", "-P FORWARD ACCEPT\n-A FORWARD -o br+ -j DROP\n", true, false, 1},
		{"drop on everything but another interface", "-P FORWARD ACCEPT\n-A FORWARD ! -i eth1 -j DROP\n", true, false, 1},
		{"accept for the bridge", "-P FORWARD DROP\n-A FORWARD -i br0 -o br0 -j ACCEPT\n", false, false, 1},
		{"accept of some sources is partial", "-P FORWARD DROP\n-A FORWARD -s 10.0.0.0/8 -j ACCEPT\n", true, false, 0},
		{"quoted comment", "-P FORWARD DROP\n-A FORWARD -m comment --comment \"let bridged \\\"frames\\\" pass\" -m physdev --physdev-is-bridged -j ACCEPT\n", false, false, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := forwardVerdict(table(t, "nft", "ipv4", tc.save), "VIRTBRIDGE-FWD", br)
			if v.blocked() != tc.blocked || v.ours != tc.ours {
				t.Errorf("blocked %v ours %v (%+v), want blocked %v ours %v", v.blocked(), v.ours, v, tc.blocked, tc.ours)
			}
			if got := max(v.acceptedBy, v.droppedBy); got != tc.rule {
				t.Errorf("deciding rule %d, want %d (%+v)", got, tc.rule, v)
			}
		})
	}
}

func TestParseTableRefusesGarbage(t *testing.T) {
	if _, err := ParseTable("nft", "ipv4", "-P FORWARD ACCEPT\nbogus line\n"); err == nil {
		t.Error("no error for an unexpected line")
	}
	if _, err := ParseTable("nft", "ipv4", "-P INPUT ACCEPT\n"); err == nil {
		t.Error("no error for a table without FORWARD")
	}
}

type fakeTables []Table

func (f fakeTables) Tables() ([]Table, error) { return f, nil }

type fakeFirewall []string

func (f fakeFirewall) Check(context.Context, desired.Firewall) ([]string, error) { return f, nil }

const dockerSave = `-P INPUT ACCEPT
-P FORWARD DROP
-P OUTPUT ACCEPT
-N DOCKER
-N DOCKER-USER
-A FORWARD -j DOCKER-USER
-A FORWARD -o docker0 -j DOCKER
-A FORWARD -i docker0 ! -o docker0 -j ACCEPT
-A DOCKER-USER -j RETURN
`

// dockerFixed is dockerSave after virtbridge's Ensure.
const dockerFixed = `-P INPUT ACCEPT
-P FORWARD DROP
-P OUTPUT ACCEPT
-N DOCKER
-N DOCKER-USER
-N VIRTBRIDGE-FWD
-A FORWARD -m comment --comment virtbridge -j VIRTBRIDGE-FWD
-A FORWARD -j DOCKER-USER
-A FORWARD -o docker0 -j DOCKER
-A FORWARD -i docker0 ! -o docker0 -j ACCEPT
-A DOCKER-USER -m comment --comment virtbridge -j VIRTBRIDGE-FWD
-A DOCKER-USER -j RETURN
-A VIRTBRIDGE-FWD -i br0 -o br0 -m physdev --physdev-is-bridged -m comment --comment "virtbridge: bridged traffic of br0" -j ACCEPT
`

// TestForwardingDocker: Docker's DROP policy in both families, without and
// with virtbridge's jumps. IPv6 explains what breaks: neighbour discovery.
func TestForwardingDocker(t *testing.T) {
	s := Sources{ConfigPath: "test.yaml", Config: mustConfig(t, "bridges: {br0: {}}\n"),
		Sysctls:  fakeSysctls{ipForward: "1", nfCallIPTables: "1", nfCallIP6Tables: "1"},
		Tables:   fakeTables{table(t, "nft", "ipv4", dockerSave), table(t, "nft", "ipv6", dockerSave)},
		Firewall: fakeFirewall{"iptables-nft: FORWARD has no jump to VIRTBRIDGE-FWD"},
	}
	r := Run(s)
	v4 := one(t, r, "forward", "iptables-nft FORWARD")
	want(t, v4, Fail, "policy DROP drops bridged frames of br0", "no DHCP lease", "doctor --fix")
	v6 := one(t, r, "forward", "ip6tables-nft FORWARD")
	want(t, v6, Fail, "neighbour discovery and router advertisements", "Docker sets this DROP policy for ip6tables too")
	if !v4.Fixable || !v6.Fixable {
		t.Error("the jump is virtbridge's to add")
	}
	want(t, one(t, r, "docker", "iptables-nft DOCKER-USER"), Warn, "does not jump to virtbridge's chain", "also jumps from DOCKER-USER")
	want(t, one(t, r, "firewall-rules", "VIRTBRIDGE-FWD"), Warn, "FORWARD has no jump")

	s.Tables = fakeTables{table(t, "nft", "ipv4", dockerFixed), table(t, "nft", "ipv6", dockerFixed)}
	s.Firewall = fakeFirewall{}
	r = Run(s)
	want(t, one(t, r, "forward", "ip6tables-nft FORWARD"), OK, "virtbridge's jump (rule 1)")
	want(t, one(t, r, "docker", "ip6tables-nft DOCKER-USER"), OK, "keeps bridged frames accepted")
	if r.ExitCode() != 0 {
		t.Errorf("exit %d after the fix:\n%s", r.ExitCode(), dumpReport(r))
	}
}

// TestForwardingLegacyNotOurs: when virtbridge keeps its rules in nf_tables,
// a legacy DROP policy still drops bridged frames (a packet passes both),
// and the fix is the operator's.
func TestForwardingLegacyNotOurs(t *testing.T) {
	ours := "-P FORWARD ACCEPT\n-N VIRTBRIDGE-FWD\n-A FORWARD -m comment --comment virtbridge -j VIRTBRIDGE-FWD\n"
	s := Sources{ConfigPath: "test.yaml", Config: mustConfig(t, "bridges: {br0: {}}\n"),
		Sysctls:  fakeSysctls{ipForward: "1", nfCallIPTables: "1", nfCallIP6Tables: "0"},
		Tables:   fakeTables{table(t, "nft", "ipv4", ours), table(t, "legacy", "ipv4", "-P FORWARD DROP\n")},
		Firewall: fakeFirewall{},
	}
	r := Run(s)
	want(t, one(t, r, "forward", "iptables-nft FORWARD"), OK)
	f := one(t, r, "forward", "iptables-legacy FORWARD")
	want(t, f, Fail, "policy DROP", "iptables-legacy -I FORWARD -m physdev --physdev-is-bridged -j ACCEPT")
	if f.Fixable {
		t.Error("virtbridge does not keep rules in the legacy tables here")
	}
	if n := len(find(r, "forward", "ip6tables-nft FORWARD")); n != 0 {
		t.Error("IPv6 tables judged although bridged IPv6 frames bypass them")
	}
}

// TestForwardingNoBrNetfilter: without br_netfilter nothing bridged passes
// iptables; the tables are not judged.
func TestForwardingNoBrNetfilter(t *testing.T) {
	s := Sources{ConfigPath: "test.yaml", Config: mustConfig(t, "bridges: {br0: {}}\n"),
		Sysctls: brNetfilterMissing{fakeSysctls{ipForward: "1"}},
		Tables:  fakeTables{table(t, "nft", "ipv4", "-P FORWARD DROP\n")}, Firewall: fakeFirewall{},
	}
	r := Run(s)
	want(t, one(t, r, "bridge-nf-call", nfCallIPTables), OK, "br_netfilter is not loaded")
	if n := len(find(r, "forward", "")); n != 0 {
		t.Errorf("FORWARD judged without br_netfilter:\n%s", dumpReport(r))
	}
}

type brNetfilterMissing struct{ fakeSysctls }

func (b brNetfilterMissing) Get(name string) (string, error) {
	if name == nfCallIPTables || name == nfCallIP6Tables {
		return "", fmt.Errorf("sysctl %q: %w", name, sysctl.ErrBridgeNetfilter)
	}
	return b.fakeSysctls.Get(name)
}
