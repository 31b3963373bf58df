package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func cli(t *testing.T, stdin string, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(args, strings.NewReader(stdin), &out, &errb)
	return code, out.String(), errb.String()
}

func writeConfig(t *testing.T, y string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "virtbridge.yaml")
	if err := os.WriteFile(p, []byte(y), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

const planXML = `<domain type='qemu'><name>web01</name><devices>
<interface type='bridge'><mac address='52:54:00:aa:00:01'/><source bridge='br0'/><target dev='vnet3'/></interface>
<interface type='user'><mac address='52:54:00:aa:00:02'/></interface>
</devices></domain>`

func TestPlanJSON(t *testing.T) {
	cfg := writeConfig(t, "bridges: {br0: {uplink: eth0}}\n")
	code, out, errs := cli(t, planXML, "plan", "--op", "started", "--config", cfg)
	if code != 0 || errs != "" {
		t.Fatalf("exit %d stderr %q", code, errs)
	}
	var plan struct {
		Action  string
		Bridges []struct{ Name, Uplink string }
		Ports   []struct{ Tap, MAC, Bridge string }
		Skipped []struct{ MAC, Reason string }
		Errors  []string
	}
	if err := json.Unmarshal([]byte(out), &plan); err != nil {
		t.Fatalf("%v in %s", err, out)
	}
	if plan.Action != "ports" || len(plan.Bridges) != 1 || plan.Bridges[0].Name != "br0" || plan.Bridges[0].Uplink != "eth0" ||
		len(plan.Ports) != 1 || plan.Ports[0].Tap != "vnet3" || plan.Ports[0].MAC != "52:54:00:aa:00:01" ||
		len(plan.Skipped) != 1 || !strings.Contains(plan.Skipped[0].Reason, "user-mode") || len(plan.Errors) != 0 {
		t.Fatalf("plan = %+v", plan)
	}
}

// TestPlanPrepareShowsChosenTap: at prepare the XML names a tap only when
// the VM chose it (<target dev='web0-eth0'/>, the name libvirt will give
// the tap); plan shows it, and shows none where the XML names none.
func TestPlanPrepareShowsChosenTap(t *testing.T) {
	cfg := writeConfig(t, "bridges: {br0: {uplink: eth0}}\n")
	xml := `<domain type='qemu'><name>web0</name><devices>
<interface type='bridge'><mac address='52:54:00:aa:00:01'/><source bridge='br0'/><target dev='web0-eth0'/></interface>
<interface type='bridge'><mac address='52:54:00:aa:00:02'/><source bridge='br0'/></interface>
</devices></domain>`
	code, out, errs := cli(t, xml, "plan", "--op", "prepare", "--config", cfg)
	if code != 0 || errs != "" {
		t.Fatalf("exit %d stderr %q", code, errs)
	}
	var plan struct {
		Action string
		Ports  []struct{ Tap, MAC string }
	}
	if err := json.Unmarshal([]byte(out), &plan); err != nil {
		t.Fatalf("%v in %s", err, out)
	}
	got := fmt.Sprintf("%s %+v", plan.Action, plan.Ports)
	if want := "host [{Tap:web0-eth0 MAC:52:54:00:aa:00:01} {Tap: MAC:52:54:00:aa:00:02}]"; got != want {
		t.Fatalf("plan --op prepare = %s, want %s\n%s", got, want, out)
	}
}

func TestPlanErrorsAndBadInput(t *testing.T) {
	refuse := writeConfig(t, "unmanaged_bridges: refuse\n")
	code, out, _ := cli(t, planXML, "plan", "--config", refuse)
	if code != exitFound || !strings.Contains(out, `uses bridge \"br0\", which virtbridge does not manage`) {
		t.Fatalf("refuse: exit %d out %s", code, out)
	}
	ok := writeConfig(t, "bridges: {}\n")
	for _, tc := range []struct{ stdin, op, want string }{
		{"<domain>", "prepare", "malformed domain XML"},
		{planXML, "explode", `unknown hook operation "explode"`},
		{"", "prepare", "no domain XML on stdin"},
	} {
		code, _, errs := cli(t, tc.stdin, "plan", "--op", tc.op, "--config", ok)
		if code != exitUsage || !strings.Contains(errs, tc.want) {
			t.Errorf("plan --op %s: exit %d stderr %q, want %q", tc.op, code, errs, tc.want)
		}
	}
}

func TestCheckConfig(t *testing.T) {
	code, out, _ := cli(t, "", "check-config", writeConfig(t, "bridges: {br0: {}}\n"))
	if code != 0 || !strings.Contains(out, "ok (1 managed bridges)") {
		t.Fatalf("exit %d out %q", code, out)
	}
	code, _, errs := cli(t, "", "check-config", writeConfig(t, "bridges: {br0: {mtu: 5}}\n"))
	if code != exitUsage || !strings.Contains(errs, "virtbridge.yaml:1: mtu must be") {
		t.Fatalf("exit %d stderr %q", code, errs)
	}
}

func TestUsage(t *testing.T) {
	code, _, errs := cli(t, "", "nonsense")
	if code != exitUsage || !strings.Contains(errs, `unknown command "nonsense"`) {
		t.Fatalf("exit %d stderr %q", code, errs)
	}
	code, out, _ := cli(t, "", "--help")
	if code != 0 || !strings.Contains(out, "plan") {
		t.Fatalf("--help: %d %q", code, out)
	}
}
