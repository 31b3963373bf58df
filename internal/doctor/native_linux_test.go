package doctor

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/virtbridge/virtbridge/internal/testenv/netnstest"
)

// TestNativeForwardRealNftables: the doctor reads a real native ruleset
// (nft -f in a test namespace) and names the administrator's chain whose
// policy drops bridged frames; iptables-nft's table is not judged here.
func TestNativeForwardRealNftables(t *testing.T) {
	ns := netnstest.New(t, "vbt")
	f := filepath.Join(t.TempDir(), "ruleset.nft")
	rules := "table inet filter {\n\tchain forward {\n\t\ttype filter hook forward priority filter; policy drop;\n\t\tct state established,related accept\n\t}\n}\n"
	if err := os.WriteFile(f, []byte(rules), 0o600); err != nil {
		t.Fatal(err)
	}
	ns.Run(t, "nft", "-f", f)
	ns.Run(t, "iptables-nft", "-P", "FORWARD", "DROP")
	s := Sources{ConfigPath: "test.yaml", Config: mustConfig(t, "bridges: {br0: {}}\n"),
		Sysctls: fakeSysctls{ipForward: "1", nfCallIPTables: "1", nfCallIP6Tables: "1"},
		Native:  HostNative{NetNS: "/run/netns/" + ns.Name},
	}
	r := Run(s)
	want(t, one(t, r, "nft-forward", "nft inet filter forward (administrator, priority 0) for br0"), Fail, "policy drop")
	if fs := find(r, "nft-forward", ""); len(fs) != 1 {
		t.Errorf("want only the inet filter chain judged, got:\n%s", dumpReport(r))
	}
}
