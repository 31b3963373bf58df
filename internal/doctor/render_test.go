package doctor

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/virtbridge/virtbridge/internal/change"
	"github.com/virtbridge/virtbridge/internal/config"
)

func sample() *Report {
	return &Report{Findings: []Finding{
		{Section: SectionBridges, Check: "uplink-enslaved", Status: Fail, Object: "eth0", Message: "not enslaved to br0",
			Why: "the bridge has no way out", Fix: fixByVirtbridge, Fixable: true},
		{Section: SectionInstall, Check: "hook", Status: OK, Object: "/etc/libvirt/hooks/qemu", Message: "virtbridge's hook, executable"},
		{Section: SectionForwarding, Check: "sysctl", Status: Warn, Object: "net.ipv4.ip_forward", Message: "0; the config says 1"},
	}}
}

// TestWriteText groups by section in a fixed order, whatever the order of
// the findings, and colours only when asked.
func TestWriteText(t *testing.T) {
	var b strings.Builder
	fix := &FixResult{Changes: []change.Change{{Kind: change.BridgeCreated, Object: "br0"}}, Errors: []string{"bridge br1: uplink missing"},
		NotFixed: []NotFixed{{Object: "bridge br1", Reason: "uplink eth9 of bridge br1 does not exist", Fix: "make eth9 exist, then run it again"}}}
	if err := WriteText(&b, sample(), fix, false); err != nil {
		t.Fatal(err)
	}
	want := `Fixed (1 change(s)):
  bridge-created br0
Not fixed (1):
  bridge br1: uplink eth9 of bridge br1 does not exist
        fix: make eth9 exist, then run it again

Install
  ok   /etc/libvirt/hooks/qemu: virtbridge's hook, executable
Bridges
  FAIL eth0: not enslaved to br0
        why: the bridge has no way out
        fix: run ` + "`virtbridge doctor --fix`" + `, or start a VM on the bridge: the hook fixes it
Forwarding
  warn net.ipv4.ip_forward: 0; the config says 1

bridged VMs are broken here: 1 failure(s), 1 warning(s), 1 ok
`
	if b.String() != want {
		t.Errorf("got:\n%s\nwant:\n%s", b.String(), want)
	}
	b.Reset()
	WriteText(&b, sample(), nil, true)
	if !strings.Contains(b.String(), colorRed+"FAIL"+colorReset) || !strings.Contains(b.String(), colorGreen+"ok  "+colorReset) {
		t.Errorf("no colours:\n%q", b.String())
	}
}

// TestWriteFixHeader: a --fix that changed nothing never says "Fixed": it
// says it fixed nothing and what it could not fix, or that nothing needed
// a change.
func TestWriteFixHeader(t *testing.T) {
	for _, tc := range []struct {
		fix  FixResult
		want string
	}{
		{FixResult{NotFixed: []NotFixed{{Object: "bridge br-a", Reason: "uplink eth9 of bridge br-a does not exist in this network namespace", Fix: "make eth9 exist"}},
			Warnings: []string{"bridge br-b: br-b has a port that is neither its uplink nor a VM tap"}},
			"Fixed nothing.\nNot fixed (1):\n  bridge br-a: uplink eth9 of bridge br-a does not exist in this network namespace\n        fix: make eth9 exist\n" +
				"  warning: bridge br-b: br-b has a port that is neither its uplink nor a VM tap\n\n"},
		{FixResult{}, "No change needed: what virtbridge fixes was already right.\n\n"},
	} {
		var b strings.Builder
		if err := WriteText(&b, &Report{}, &tc.fix, false); err != nil {
			t.Fatal(err)
		}
		got, _, _ := strings.Cut(b.String(), "\nall ok")
		if got != tc.want {
			t.Errorf("got:\n%s\nwant:\n%s", got, tc.want)
		}
	}
}

// TestWriteJSON: the document scripts read.
func TestWriteJSON(t *testing.T) {
	var b strings.Builder
	if err := WriteJSON(&b, sample(), nil); err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Status   string         `json:"status"`
		Counts   map[string]int `json:"counts"`
		Findings []map[string]any
		Fix      *json.RawMessage `json:"fix"`
	}
	if err := json.Unmarshal([]byte(b.String()), &doc); err != nil {
		t.Fatal(err)
	}
	if doc.Status != "fail" || doc.Counts["fail"] != 1 || doc.Counts["warn"] != 1 || doc.Counts["ok"] != 1 || doc.Fix != nil {
		t.Errorf("document: %s", b.String())
	}
	f := doc.Findings[0]
	for _, k := range []string{"section", "check", "status", "object", "message", "why", "fix", "fixable"} {
		if _, ok := f[k]; !ok {
			t.Errorf("finding has no %q: %v", k, f)
		}
	}
	if (&Report{}).ExitCode() != 0 || sample().ExitCode() != 2 {
		t.Error("exit codes")
	}
}

// TestConfigErrors: each error of an invalid config is a failure at its
// file:line.
func TestConfigErrors(t *testing.T) {
	_, err := config.Parse("/etc/virtbridge/virtbridge.yaml", []byte("bridges:\n  br0: {uplink: eth0, stp: maybe}\nfirewal: {}\n"))
	if err == nil {
		t.Fatal("config parsed")
	}
	r := Run(Sources{ConfigPath: "/etc/virtbridge/virtbridge.yaml", ConfigErr: err})
	want(t, one(t, r, "config", "/etc/virtbridge/virtbridge.yaml:2"), Fail, "stp must be true or false", "every VM start is refused", "check-config")
	want(t, one(t, r, "config", "/etc/virtbridge/virtbridge.yaml:3"), Fail, `unknown key "firewal"`)

	missing := filepath.Join(t.TempDir(), "virtbridge.yaml")
	_, err = config.Load(missing)
	r = Run(Sources{ConfigPath: missing, ConfigErr: err})
	want(t, one(t, r, "config", missing), Fail, "missing", "refuses every VM start", "packaging/virtbridge.yaml")
}

// TestUplinkByMAC: an uplink chosen by MAC is found the way the links
// backend finds it, bridges carrying the MAC do not count, and a tie is
// a failure.
func TestUplinkByMAC(t *testing.T) {
	cfg := "bridges: {br0: {uplink_mac: \"52:54:00:00:00:01\"}}\n"
	links := fakeLinks{
		{Name: "enp1s0", Index: 2, Kind: "device", MAC: "52:54:00:00:00:01", Master: "br0", MTU: 1500},
		{Name: "br0", Index: 3, Kind: "bridge", MAC: "52:54:00:00:00:01", Up: true, MTU: 1500},
	}
	r := Run(Sources{ConfigPath: "t.yaml", Config: mustConfig(t, cfg), Links: links})
	want(t, one(t, r, "uplink-exists", "enp1s0"), OK)
	want(t, one(t, r, "uplink-enslaved", "enp1s0"), OK)

	links = append(links, Link{Name: "enp2s0", Index: 4, Kind: "device", MAC: "52:54:00:00:00:01", MTU: 1500})
	r = Run(Sources{ConfigPath: "t.yaml", Config: mustConfig(t, cfg), Links: links})
	want(t, one(t, r, "uplink-exists", "52:54:00:00:00:01"), Fail, "carried by enp1s0, enp2s0", "uplink:")
}
