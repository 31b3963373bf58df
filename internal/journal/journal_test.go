package journal

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	"github.com/virtbridge/virtbridge/internal/change"
	"github.com/virtbridge/virtbridge/internal/testenv/journaltest"
)

func TestMain(m *testing.M) { os.Exit(journaltest.Main(m)) }

// renderRecord prints a record as sorted NAME=value lines.
func renderRecord(r Record) string {
	lines := []string{fmt.Sprintf("MESSAGE=%s", r.Message), fmt.Sprintf("PRIORITY=%d", r.Priority)}
	for k, v := range r.Fields {
		lines = append(lines, fmt.Sprintf("%s=%q", k, v))
	}
	slices.Sort(lines)
	return strings.Join(lines, "\n") + "\n"
}

var web01 = VM{Name: "web01", UUID: "6f1c7c52-3b7a-4a8e-9d0a-111111111111", Op: "started", Source: "hook"}

func TestRecords(t *testing.T) {
	att, err := AttachedRecord(Port{VM: web01, Tap: "vnet3", MAC: "52:54:00:aa:00:01", Bridge: "br0"})
	if err != nil {
		t.Fatal(err)
	}
	stopped := web01
	stopped.Op = "stopped"
	det, err := DetachedRecord(Port{VM: stopped, Tap: "vnet3", MAC: "52:54:00:aa:00:01", Bridge: "br0"})
	if err != nil {
		t.Fatal(err)
	}
	prepare := VM{Name: "bad\"vm", UUID: "u-1", Op: "prepare", Source: "hook"}
	got := renderRecord(att) + "--\n" + renderRecord(det) + "--\n" +
		renderRecord(RefusedRecord(prepare, "NIC 52:54:00:aa:00:09 uses bridge \"br9\"\nwhich is not managed")) + "--\n" +
		renderRecord(HostChangeRecord(VM{Name: "web01", Op: "prepare", Source: "hook"}, change.Change{Kind: change.UplinkEnslaved, Object: "eth1", Before: "master none", After: "master br0"})) + "--\n" +
		renderRecord(HostChangeRecord(VM{Source: "cli"}, change.Change{Kind: change.SysctlChanged, Object: "net.ipv4.ip_forward", Before: "0", After: "1"})) + "--\n" +
		renderRecord(StoreRecoveredRecord("/s/ports.json", "/s/ports.json.corrupt-X", errors.New("corrupt mapping store: EOF")))
	want := `MESSAGE=vnet3 attached: vm "web01" (uuid 6f1c7c52-3b7a-4a8e-9d0a-111111111111) mac 52:54:00:aa:00:01 on bridge br0
MESSAGE_ID="5ff2a649b70307c98b6ebf8e9ad17c24"
PRIORITY=6
SYSLOG_IDENTIFIER="virtbridge"
VIRTBRIDGE_BRIDGE="br0"
VIRTBRIDGE_MAC="52:54:00:aa:00:01"
VIRTBRIDGE_OP="started"
VIRTBRIDGE_SOURCE="hook"
VIRTBRIDGE_TAP="vnet3"
VIRTBRIDGE_UUID="6f1c7c52-3b7a-4a8e-9d0a-111111111111"
VIRTBRIDGE_VM="web01"
--
MESSAGE=vnet3 detached: vm "web01" (uuid 6f1c7c52-3b7a-4a8e-9d0a-111111111111) mac 52:54:00:aa:00:01 from bridge br0
MESSAGE_ID="7dd95ce535cdf1d7f5f62d97a00794d9"
PRIORITY=6
SYSLOG_IDENTIFIER="virtbridge"
VIRTBRIDGE_BRIDGE="br0"
VIRTBRIDGE_MAC="52:54:00:aa:00:01"
VIRTBRIDGE_OP="stopped"
VIRTBRIDGE_SOURCE="hook"
VIRTBRIDGE_TAP="vnet3"
VIRTBRIDGE_UUID="6f1c7c52-3b7a-4a8e-9d0a-111111111111"
VIRTBRIDGE_VM="web01"
--
MESSAGE=refused prepare of vm "bad\"vm" (uuid u-1): NIC 52:54:00:aa:00:09 uses bridge "br9"; which is not managed
MESSAGE_ID="d44e759f66037fe25809f1672d887a84"
PRIORITY=3
SYSLOG_IDENTIFIER="virtbridge"
VIRTBRIDGE_OP="prepare"
VIRTBRIDGE_REASON="NIC 52:54:00:aa:00:09 uses bridge \"br9\"\nwhich is not managed"
VIRTBRIDGE_SOURCE="hook"
VIRTBRIDGE_UUID="u-1"
VIRTBRIDGE_VM="bad\"vm"
--
MESSAGE=uplink-enslaved eth1: "master none" -> "master br0" (for vm "web01" at prepare)
MESSAGE_ID="f73d11caf56a42611cb2c1d64ea660a8"
PRIORITY=5
SYSLOG_IDENTIFIER="virtbridge"
VIRTBRIDGE_AFTER="master br0"
VIRTBRIDGE_BEFORE="master none"
VIRTBRIDGE_CHANGE="uplink-enslaved"
VIRTBRIDGE_OBJECT="eth1"
VIRTBRIDGE_OP="prepare"
VIRTBRIDGE_SOURCE="hook"
VIRTBRIDGE_VM="web01"
--
MESSAGE=sysctl-changed net.ipv4.ip_forward: "0" -> "1"
MESSAGE_ID="f73d11caf56a42611cb2c1d64ea660a8"
PRIORITY=5
SYSLOG_IDENTIFIER="virtbridge"
VIRTBRIDGE_AFTER="1"
VIRTBRIDGE_BEFORE="0"
VIRTBRIDGE_CHANGE="sysctl-changed"
VIRTBRIDGE_OBJECT="net.ipv4.ip_forward"
VIRTBRIDGE_SOURCE="cli"
--
MESSAGE=mapping store /s/ports.json was unusable (corrupt mapping store: EOF); moved it to /s/ports.json.corrupt-X and started with an empty mapping: ` + "`virtbridge who`" + ` knows only taps attached from now on until the VMs restart
PRIORITY=4
SYSLOG_IDENTIFIER="virtbridge"
VIRTBRIDGE_MOVED_TO="/s/ports.json.corrupt-X"
VIRTBRIDGE_REASON="corrupt mapping store: EOF"
VIRTBRIDGE_STORE="/s/ports.json"
`
	if got != want {
		t.Fatalf("records:\n%s\nwant:\n%s", got, want)
	}
	for _, p := range []Port{
		{VM: web01, MAC: "52:54:00:aa:00:01", Bridge: "br0"},
		{VM: web01, Tap: "vnet3", Bridge: "br0"},
		{VM: web01, Tap: "vnet3", MAC: "52:54:00:aa:00:01"},
		{VM: VM{Name: "x"}, Tap: "vnet3", MAC: "52:54:00:aa:00:01", Bridge: "br0"},
	} {
		if _, err := AttachedRecord(p); err == nil {
			t.Errorf("AttachedRecord(%+v) accepted a port record with a field missing", p)
		}
	}
}

func TestAlias(t *testing.T) {
	uuid := "6f1c7c52-3b7a-4a8e-9d0a-111111111111"
	for _, c := range []struct{ name, uuid, want string }{
		{"web01", uuid, "vm:web01 uuid:" + uuid},
		{"web01", "", "vm:web01"},
		{"we\nb\x1b[31m", uuid, "vm:we?b?[31m uuid:" + uuid},
		{"bad\xffutf8", uuid, "vm:bad?utf8 uuid:" + uuid},
		{strings.Repeat("é", 100), uuid, "vm:" + strings.Repeat("é", 41) + " uuid:" + uuid},
		{"x", strings.Repeat("u", 200), "vm:x " + "uuid:" + strings.Repeat("u", 58)},
	} {
		got := Alias(c.name, c.uuid)
		if got != c.want {
			t.Errorf("Alias(%q, %q) = %q, want %q", c.name, c.uuid, got, c.want)
		}
		checkAlias(t, got)
	}
}

func checkAlias(t *testing.T, a string) {
	t.Helper()
	if len(a) > MaxAlias || !utf8.ValidString(a) || strings.IndexFunc(a, unicode.IsControl) >= 0 || !strings.HasPrefix(a, "vm:") {
		t.Fatalf("unsafe alias %q (%d bytes)", a, len(a))
	}
}

func FuzzAlias(f *testing.F) {
	f.Add("web01", "6f1c7c52-3b7a-4a8e-9d0a-111111111111")
	f.Add("\x00\xff\n", "")
	f.Fuzz(func(t *testing.T, name, uuid string) { checkAlias(t, Alias(name, uuid)) })
}

func TestNativeEncode(t *testing.T) {
	got := nativeEncode(Record{Message: "one", Priority: 3, Fields: map[string]string{"VIRTBRIDGE_REASON": "a\nb"}})
	var want bytes.Buffer
	want.WriteString("PRIORITY=3\nMESSAGE=one\nVIRTBRIDGE_REASON\n")
	binary.Write(&want, binary.LittleEndian, uint64(3))
	want.WriteString("a\nb\n")
	if !bytes.Equal(got, want.Bytes()) {
		t.Fatalf("nativeEncode = %q, want %q", got, want.Bytes())
	}
}

func TestParseFields(t *testing.T) {
	line := `{"A":"x","B":[104,105,10],"C":["first",[98]],"D":null,"E":[],"F":3}`
	got, ok := ParseFields([]byte(line))
	if !ok {
		t.Fatal("not parsed")
	}
	want := map[string]string{"A": "x", "B": "hi\n", "C": "first", "E": ""}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("ParseFields = %q, want %q", got, want)
	}
	if _, ok := ParseFields([]byte(`{"A":`)); ok {
		t.Fatal("a cut line parsed")
	}
}

func TestCapValue(t *testing.T) {
	long := strings.Repeat("é", maxValue)
	got := capValue(long)
	if len(got) > maxValue || !utf8.ValidString(got) || !strings.HasSuffix(got, "…(truncated)") {
		t.Fatalf("capValue: %d bytes, valid %v", len(got), utf8.ValidString(got))
	}
	if capValue("short") != "short" {
		t.Fatal("short value changed")
	}
}

// TestCatalog checks that the catalog names exactly the four MESSAGE_IDs and,
// when journalctl is installed, that journalctl compiles it — in a temporary
// root, never the system's catalog.
func TestCatalog(t *testing.T) {
	data, err := os.ReadFile("../../packaging/virtbridge.catalog")
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, m := range regexp.MustCompile(`(?m)^-- ([0-9a-f]{32})$`).FindAllSubmatch(data, -1) {
		ids = append(ids, string(m[1]))
	}
	want := []string{IDAttached, IDDetached, IDRefused, IDHostChange}
	if !slices.Equal(ids, want) {
		t.Fatalf("catalog IDs %v, want %v", ids, want)
	}
	if distinct := slices.Compact(slices.Sorted(slices.Values(want))); len(distinct) != len(want) {
		t.Fatalf("MESSAGE_IDs not distinct: %v", want)
	}
	journalctl, err := lookJournalctl()
	if err != nil {
		t.Skipf("skipped the syntax check: %v", err)
	}
	root := t.TempDir()
	dir := root + "/usr/lib/systemd/catalog"
	os.MkdirAll(dir, 0o755)
	os.WriteFile(dir+"/virtbridge.catalog", data, 0o644)
	if out, err := runCmd(journalctl, "--root="+root, "--update-catalog"); err != nil {
		t.Fatalf("journalctl --update-catalog refused the catalog: %v\n%s", err, out)
	}
	out, err := runCmd(journalctl, "--root="+root, "--list-catalog")
	if err != nil {
		t.Fatalf("journalctl --list-catalog: %v\n%s", err, out)
	}
	for _, id := range want {
		if !strings.Contains(out, id+" virtbridge: ") {
			t.Errorf("compiled catalog lacks %s:\n%s", id, out)
		}
	}
}

// FuzzParseFields: a line of the fallback file or of journalctl, whatever
// it holds, must not panic the reader, and what it reads is what the line
// holds (package who fuzzes the record it makes of it).
func FuzzParseFields(f *testing.F) {
	f.Add([]byte(`{"SYSLOG_IDENTIFIER":"virtbridge","MESSAGE_ID":"5ff2a649b70307c98b6ebf8e9ad17c24","VIRTBRIDGE_TAP":"vnet3","__REALTIME_TIMESTAMP":"1741096801000000"}`))
	f.Add([]byte(`{"A":[1,2,[3]],"B":null,"C":{}}`))
	f.Fuzz(func(t *testing.T, line []byte) {
		if fields, ok := ParseFields(line); ok && fields == nil {
			t.Fatalf("ParseFields accepted %q without fields", line)
		}
	})
}
