package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestUplinkByNameAndByMACRefused: a config giving uplink0 to br-a by name
// and to br-b by its MAC passes the parser alone; the hook, on the host
// where that MAC is uplink0's, refuses it at the uplink lines before
// changing anything, and advises nothing the config forbids (making a
// bridge an uplink) nor taking the NIC out of its master.
func TestUplinkByNameAndByMACRefused(t *testing.T) {
	h := newHypervisor(t, brA)
	mac := strings.TrimSpace(h.hv.Run(t, "cat", "/sys/class/net/uplink0/address"))
	cfg := "bridges:\n  br-a: {uplink: uplink0}\n  br-b:\n    stp: false\n    uplink_mac: " + mac + "\n"
	if err := os.WriteFile(filepath.Join(h.dir, "virtbridge.yaml"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	before := h.hv.Dump(t)
	for _, shape := range []string{"one-nic", "two-nics"} {
		r := h.hook(t, shape, "01-prepare-begin")
		t.Logf("%s: exit %d: %s", shape, r.code, strings.TrimSpace(r.stderr))
		want := `virtbridge.yaml:5: uplink "uplink0" of bridge "br-b" is already the uplink of bridge "br-a" (line 2)`
		if r.code != 1 || !strings.Contains(r.stderr, want) || !strings.Contains(r.stderr, "uplink_mac "+mac) {
			t.Errorf("%s: exit %d, stderr %q; want a refusal with %q", shape, r.code, r.stderr, want)
		}
		for _, bad := range []string{"nomaster", "the uplink of bridge \"br-b\" in"} {
			if strings.Contains(r.stderr, bad) {
				t.Errorf("%s: the refusal advises %q", shape, bad)
			}
		}
	}
	if after := h.hv.Dump(t); after != before {
		t.Fatalf("the refused prepare changed the host:\n--- before\n%s\n--- after\n%s", before, after)
	}
}
