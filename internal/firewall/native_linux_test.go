package firewall

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/virtbridge/virtbridge/internal/testenv/netnstest"
)

// nftLoad loads ruleset into the namespace with `nft -f`.
func nftLoad(t *testing.T, ns *netnstest.NS, ruleset string) {
	t.Helper()
	f := filepath.Join(t.TempDir(), "ruleset.nft")
	if err := os.WriteFile(f, []byte(ruleset), 0o600); err != nil {
		t.Fatal(err)
	}
	ns.Run(t, "nft", "-f", f)
}

// judged renders what ReadForward finds, one chain per line with its
// verdict for br.
func judged(t *testing.T, ns *netnstest.NS, br string) string {
	t.Helper()
	chains, err := ReadForward("/run/netns/" + ns.Name)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, c := range chains {
		v := Judge(c, br)
		s := "passes"
		if v.Drops {
			s = "drops at " + v.At
		}
		out = append(out, fmt.Sprintf("%s (%s, priority %d, policy %s): %s", c.Name(), c.Owner, c.Priority, c.Policy, s))
	}
	return strings.Join(out, "\n")
}

func TestReadForwardRealNftables(t *testing.T) {
	ns := netnstest.New(t, "vbt")
	if _, err := ns.Exec("nft", "--version"); err != nil {
		t.Skip("skipped: needs nft")
	}
	// iptables-nft's own table is read through iptables, not here.
	ns.Run(t, "iptables-nft", "-P", "FORWARD", "DROP")
	nftLoad(t, ns, `table inet filter {
	chain fwd_in {
		iifname "br0" oifname "br0" accept
	}
	chain forward {
		type filter hook forward priority filter; policy drop;
		ct state established,related accept
		ct state invalid drop
		jump fwd_in
	}
}
table ip docker-bridges {
	chain filter-FORWARD {
		type filter hook forward priority filter; policy accept;
		oifname "docker0" drop
		iifname "docker0" counter accept
	}
}
table inet admin2 {
	chain fw {
		type filter hook forward priority 10; policy accept;
		iifname "eth0" accept
		reject with icmpx admin-prohibited
	}
	chain out {
		type filter hook output priority 0; policy drop;
	}
}
table inet firewalld {
	chain filter_FORWARD {
		type filter hook forward priority filter + 10; policy accept;
		iifname "br*" oifname "br*" accept
	}
}
`)
	got := judged(t, ns, "br0")
	want := `inet filter forward (administrator, priority 0, policy drop): drops at chain forward rule handle 5: … drop
ip docker-bridges filter-FORWARD (docker, priority 0, policy accept): passes
inet admin2 fw (administrator, priority 10, policy accept): drops at chain fw rule handle 4: reject
inet firewalld filter_FORWARD (firewalld, priority 10, policy accept): passes`
	if got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
	// Without the invalid-state drop, the jump's accept decides.
	ns.Run(t, "nft", "delete", "rule", "inet", "filter", "forward", "handle", "5")
	if got := judged(t, ns, "br0"); !strings.HasPrefix(got, "inet filter forward (administrator, priority 0, policy drop): passes\n") {
		t.Errorf("after deleting the drop rule: got\n%s", got)
	}
	if got := judged(t, ns, "br1"); !strings.HasPrefix(got, "inet filter forward (administrator, priority 0, policy drop): drops at policy drop\n") {
		t.Errorf("for br1: got\n%s", got)
	}
}
