package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/virtbridge/virtbridge/internal/testenv/netnstest"
)

// TestOwnerShown: plan and status, run in a namespace whose uplink holds a
// DHCP lease of a client without a manager, name the owner: the address,
// its lifetime and the client process; a static uplink shows "kernel".
func TestOwnerShown(t *testing.T) {
	ns := netnstest.New(t, "vbkc")
	ns.Script(t, `
		ip link add uplink0 type veth peer name up0p
		ip addr add 10.77.0.2/24 dev uplink0 valid_lft 300 preferred_lft 300
		ip link add uplink1 type veth peer name up1p
		ip addr add 10.78.0.2/24 dev uplink1
		ip link set uplink0 up
		ip link set uplink1 up`)
	client := exec.Command("ip", "netns", "exec", ns.Name, "bash", "-c",
		`exec -a dhclient /usr/bin/python3 -c "import time; time.sleep(600)" -d -4 uplink0`)
	if err := client.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Process.Kill(); client.Wait() })
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", client.Process.Pid)); strings.HasPrefix(string(b), "dhclient\x00") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the stand-in dhclient did not start")
		}
	}
	dir := t.TempDir()
	cli := filepath.Join(dir, "virtbridge")
	if out, err := exec.Command("go", "build", "-o", cli, ".").CombinedOutput(); err != nil {
		t.Fatalf("building the CLI: %v\n%s", err, out)
	}
	cfg := filepath.Join(dir, "virtbridge.yaml")
	if err := os.WriteFile(cfg, []byte("bridges:\n  br-d: {uplink: uplink0}\n  br-s: {uplink: uplink1}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	run := func(stdin string, args ...string) string {
		t.Helper()
		cmd := exec.Command("ip", append([]string{"netns", "exec", ns.Name, cli}, args...)...)
		cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL=C", "VIRTBRIDGE_STATE_DIR=" + dir, "VIRTBRIDGE_RUN_DIR=" + dir}
		cmd.Stdin = strings.NewReader(stdin)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("virtbridge %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	xml := `<domain type='qemu'><name>vm</name><devices>
<interface type='bridge'><mac address='52:54:00:aa:00:01'/><source bridge='br-d'/></interface>
<interface type='bridge'><mac address='52:54:00:aa:00:02'/><source bridge='br-s'/></interface>
</devices></domain>`
	client1 := fmt.Sprintf("dhclient (pid %d)", client.Process.Pid)
	plan := run(xml, "plan", "--op", "prepare", "--config", cfg)
	status := run("", "status", "--config", cfg)
	for what, out := range map[string]string{"plan": plan, "status": status} {
		for _, w := range []string{"dhcp-client: dynamic address 10.77.0.2/24 (valid for ", client1, "kernel: static addresses"} {
			if !strings.Contains(out, w) {
				t.Errorf("%s lacks %q:\n%s", what, w, out)
			}
		}
	}
	t.Logf("plan:\n%s\nstatus:\n%s", plan, status)
}
