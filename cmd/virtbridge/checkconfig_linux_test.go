package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/virtbridge/virtbridge/internal/testenv/netnstest"
)

// TestCheckConfigResolvesUplinkMAC runs the built virtbridge check-config
// in a namespace host: a config giving uplink0 to br0 by name and to br1
// by uplink0's MAC is refused at the uplink lines (exit 2); the same
// config with the MAC of another NIC, or on a host where no link has that
// MAC, is fine.
func TestCheckConfigResolvesUplinkMAC(t *testing.T) {
	netnstest.RequireRoot(t)
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("skipped: needs go to build virtbridge")
	}
	dir := t.TempDir()
	cli := filepath.Join(dir, "virtbridge")
	if msg, err := exec.Command("go", "build", "-o", cli, ".").CombinedOutput(); err != nil {
		t.Fatalf("building virtbridge: %v\n%s", err, msg)
	}
	ns := netnstest.New(t, "vblcc")
	ns.Script(t, "ip link add uplink0 type veth peer name other0")
	macOf := func(l string) string { return strings.TrimSpace(ns.Run(t, "cat", "/sys/class/net/"+l+"/address")) }
	check := func(mac string) (int, string) {
		t.Helper()
		p := filepath.Join(t.TempDir(), "virtbridge.yaml")
		cfg := "bridges:\n  br0:\n    uplink: uplink0\n  br1:\n    uplink_mac: " + mac + "\n"
		if err := os.WriteFile(p, []byte(cfg), 0o644); err != nil {
			t.Fatal(err)
		}
		out, err := ns.Exec(cli, "check-config", p)
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return code, strings.ReplaceAll(out, p, "FILE")
	}
	code, out := check(macOf("uplink0"))
	want := `FILE:5: uplink "uplink0" of bridge "br1" is already the uplink of bridge "br0" (line 3); ` +
		`a NIC can be enslaved to one bridge only: keep one of the two lines (uplink_mac ` + macOf("uplink0") + ` of bridge "br1" is "uplink0" on this host)` + "\n"
	if code != 2 || out != want {
		t.Errorf("same NIC: exit %d, output:\n%s\nwant exit 2 and:\n%s", code, out, want)
	}
	for what, mac := range map[string]string{"another NIC": macOf("other0"), "no such NIC": "52:54:00:99:99:99"} {
		if code, out := check(mac); code != 0 || !strings.Contains(out, "FILE: ok (2 managed bridges)") {
			t.Errorf("%s: exit %d, output %q; want ok", what, code, out)
		}
	}
}
