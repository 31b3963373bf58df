package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestRefusalNamesTheConfigInUse: a refusal whose fix is a key of the
// configuration names the file the hook loaded ($VIRTBRIDGE_CONFIG here,
// as --config for the CLI), never the default path it did not read.
func TestRefusalNamesTheConfigInUse(t *testing.T) {
	for _, tc := range []struct{ name, setup, cfg string }{
		{"uplink missing", "", "bridges:\n  br-a: {uplink: eth9}\n"},
		{"uplink in another bridge", "ip link add br-other type bridge\nip link set uplink0 master br-other", brA},
		{"non-bridge link with the bridge's name", "ip link add br-a type veth peer name br-a-peer", brA},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHypervisorNamed(t, "bridges: {}\n", "vbxhk", "vbxup")
			h.hv.Script(t, tc.setup)
			cfgPath := filepath.Join(t.TempDir(), "vbx-elsewhere.yaml")
			if err := os.WriteFile(cfgPath, []byte(tc.cfg), 0o644); err != nil {
				t.Fatal(err)
			}
			args, stdin := fixture(t, "one-nic", "01-prepare-begin")
			r := h.run(t, h.dir, cfgPath, bytes.NewReader(stdin), args...)
			t.Logf("refusal: %s", strings.TrimSpace(r.stderr))
			if r.code != 1 || !strings.Contains(r.stderr, "in the configuration") ||
				!strings.Contains(r.stderr, "(configuration: "+cfgPath+")") {
				t.Fatalf("exit %d stderr %q, want a refusal naming %s", r.code, r.stderr, cfgPath)
			}
			if strings.Contains(r.stderr, "/etc/virtbridge/virtbridge.yaml") {
				t.Fatalf("the refusal names the default configuration, which was not read: %q", r.stderr)
			}
		})
	}
}
