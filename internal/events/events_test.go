package events

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

const goodXML = `<domain type='qemu'>
  <name>vm1</name>
  <uuid>3f1c0a52-6c3a-4a56-9d3e-000000000001</uuid>
  <devices>
    <interface type='bridge'>
      <mac address='52:54:00:AA:00:01'/>
      <source bridge='br-a'/>
      <target dev='vnet0'/>
      <model type='e1000'/>
      <alias name='net0'/>
    </interface>
    <interface type='bridge'>
      <mac address='52:54:00:aa:00:02'/>
      <source network='lan' portid='0b5f7b0e-2f9a-4b0e-9f3b-7f0d0f0e0c01' bridge='br-b'/>
    </interface>
    <interface type='direct'>
      <mac address='52:54:00:aa:00:03'/>
      <source dev='dummy0' mode='bridge'/>
    </interface>
    <interface type='user'>
      <mac address='52:54:00:aa:00:04'/>
    </interface>
  </devices>
</domain>`

func args(op string) []string { return []string{"vm1", op, "begin", "-"} }

func TestParseHook(t *testing.T) {
	ev, err := ParseHook(args("started"), strings.NewReader(goodXML))
	if err != nil {
		t.Fatal(err)
	}
	if ev.Source != SourceHook || ev.Op != OpStarted || ev.SubOp != "begin" || ev.Extra != "-" ||
		ev.Domain != "vm1" || ev.UUID != "3f1c0a52-6c3a-4a56-9d3e-000000000001" {
		t.Fatalf("event = %+v", ev)
	}
	want := []NIC{
		{MAC: "52:54:00:aa:00:01", Type: "bridge", Bridge: "br-a", Tap: "vnet0", Model: "e1000", Alias: "net0"},
		{MAC: "52:54:00:aa:00:02", Type: "bridge", Bridge: "br-b", Network: "lan"},
		{MAC: "52:54:00:aa:00:03", Type: "direct", Dev: "dummy0"},
		{MAC: "52:54:00:aa:00:04", Type: "user"},
	}
	if len(ev.NICs) != len(want) {
		t.Fatalf("NICs = %+v", ev.NICs)
	}
	for i := range want {
		if ev.NICs[i] != want[i] {
			t.Errorf("NIC %d = %+v, want %+v", i, ev.NICs[i], want[i])
		}
	}
}

func TestParseHookRefusesBadInput(t *testing.T) {
	withNIC := func(nic string) string {
		return "<domain type='qemu'><name>vm1</name><devices>" + nic + "</devices></domain>"
	}
	for name, tc := range map[string]struct {
		args  []string
		stdin string
		want  string
	}{
		"malformed":                {args("prepare"), "<domain><name>vm1</name><devices>", "malformed domain XML"},
		"truncated":                {args("prepare"), "<?xml version='1.0'?>", "truncated"},
		"empty stdin":              {args("prepare"), "", "no domain XML on stdin"},
		"blank stdin":              {args("prepare"), " \n\t", "no domain XML on stdin"},
		"doctype":                  {args("prepare"), "<!DOCTYPE domain [<!ENTITY a 'aaaa'>]><domain><name>&a;</name></domain>", "<!DOCTYPE"},
		"entity bomb":              {args("prepare"), `<?xml version="1.0"?><!doctype lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;">]><domain><name>&lol2;</name></domain>`, "<!DOCTYPE"},
		"wrong root":               {args("prepare"), "<network><name>vm1</name></network>", "root element of the XML on stdin is <network>"},
		"unknown op":               {[]string{"vm1", "explode", "begin", "-"}, goodXML, `unknown hook operation "explode"`},
		"too few args":             {[]string{"vm1", "prepare"}, goodXML, "want 4 arguments"},
		"too many args":            {[]string{"vm1", "prepare", "begin", "-", "x"}, goodXML, "want 4 arguments"},
		"bad utf8 arg":             {[]string{"vm\xff", "prepare", "begin", "-"}, goodXML, "argument 1 is not valid UTF-8"},
		"bad utf8 xml":             {args("prepare"), "<domain><name>vm\xff</name></domain>", "not valid UTF-8"},
		"name mismatch":            {[]string{"vm2", "prepare", "begin", "-"}, goodXML, `domain name "vm2" in argv does not match`},
		"no name":                  {args("prepare"), "<domain type='qemu'></domain>", "has no <name>"},
		"control in name":          {[]string{"vm\x01", "prepare", "begin", "-"}, "<domain><name>vm&#1;</name></domain>", "malformed"},
		"long bridge":              {args("prepare"), withNIC("<interface type='bridge'><mac address='52:54:00:aa:00:09'/><source bridge='averyveryverylongbr'/></interface>"), "source bridge: interface name \"averyveryverylongbr\" is 19 bytes"},
		"slash bridge":             {args("prepare"), withNIC("<interface type='bridge'><mac address='52:54:00:aa:00:09'/><source bridge='br/0'/></interface>"), "contains '/'"},
		"space bridge":             {args("prepare"), withNIC("<interface type='bridge'><mac address='52:54:00:aa:00:09'/><source bridge='br 0'/></interface>"), "contains ' '"},
		"dot bridge":               {args("prepare"), withNIC("<interface type='bridge'><mac address='52:54:00:aa:00:09'/><source bridge='.'/></interface>"), "reserved"},
		"dotdot tap":               {args("started"), withNIC("<interface type='bridge'><mac address='52:54:00:aa:00:09'/><source bridge='br0'/><target dev='..'/></interface>"), "target dev: interface name \"..\" is reserved"},
		"long tap":                 {args("started"), withNIC("<interface type='bridge'><mac address='52:54:00:aa:00:09'/><source bridge='br0'/><target dev='vnet0123456789012'/></interface>"), "target dev"},
		"multicast mac":            {args("prepare"), withNIC("<interface type='bridge'><mac address='11:22:33:44:55:66'/><source bridge='br0'/></interface>"), "MAC 11:22:33:44:55:66 is a multicast address"},
		"bad mac":                  {args("prepare"), withNIC("<interface type='bridge'><mac address='nonsense'/><source bridge='br0'/></interface>"), `"nonsense" is not a 48-bit MAC`},
		"two roots":                {args("prepare"), "<domain><name>vm1</name></domain><domain><name>vm1</name><devices>" + nicXML(1, "br0") + "</devices></domain>", "second root element <domain> after </domain>"},
		"text after root":          {args("prepare"), "<domain><name>vm1</name></domain>\nrm -rf /", `text "rm -rf /" after </domain>`},
		"text before root":         {args("prepare"), "junk<domain><name>vm1</name></domain>", `text "junk" before <domain>`},
		"trailing junk tag":        {args("prepare"), "<domain><name>vm1</name></domain><!-- ok --><?pi ok?><x/>", "second root element <x>"},
		"no mac":                   {args("prepare"), withNIC("<interface type='bridge'><source bridge='br0'/></interface>"), "interface 1 of domain \"vm1\": no <mac address='...'/>"},
		"empty mac":                {args("prepare"), withNIC("<interface type='bridge'><mac address=''/><source bridge='br0'/></interface>"), "no <mac address='...'/>"},
		"duplicate macs":           {args("prepare"), withNIC(nicXML(1, "br0") + nicXML(2, "br1") + strings.Replace(nicXML(1, "br2"), "aa", "AA", 1)), "interfaces 1 and 3 of domain \"vm1\" have the same MAC 52:54:00:aa:00:01"},
		"too many nics":            {args("prepare"), withNIC(manyNICs(MaxNICs + 1)), "domain \"vm1\" has 257 interfaces, more than the 256"},
		"newline bridge":           {args("prepare"), withNIC(nicXML(1, "br&#10;0")), `source bridge: interface name "br\n0" contains '\n'`},
		"tab tap":                  {args("started"), withNIC("<interface type='bridge'><mac address='52:54:00:aa:00:09'/><source bridge='br0'/><target dev='vnet&#9;0'/></interface>"), `target dev: interface name "vnet\t0" contains '\t'`},
		"nul char ref":             {args("prepare"), withNIC(nicXML(1, "br&#0;0")), "malformed domain XML"},
		"raw nul":                  {args("prepare"), withNIC(nicXML(1, "br\x000")), "malformed domain XML"},
		"network slash":            {args("prepare"), withNIC("<interface type='network'><mac address='52:54:00:aa:00:09'/><source network='../../../etc/passwd'/></interface>"), `source network "../../../etc/passwd" contains '/'`},
		"network dotdot":           {args("prepare"), withNIC("<interface type='network'><mac address='52:54:00:aa:00:09'/><source network='..'/></interface>"), `source network ".." is empty or a directory name`},
		"network newline":          {args("prepare"), withNIC("<interface type='network'><mac address='52:54:00:aa:00:09'/><source network='lan&#10;x'/></interface>"), "contains a control character"},
		"network long":             {args("prepare"), withNIC("<interface type='network'><mac address='52:54:00:aa:00:09'/><source network='" + strings.Repeat("n", 252) + "'/></interface>"), "is 252 bytes long"},
		"bridge-type network attr": {args("started"), withNIC("<interface type='bridge'><mac address='52:54:00:aa:00:09'/><source network='a/b' bridge='br0'/></interface>"), `source network "a/b" contains '/'`},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := ParseHook(tc.args, strings.NewReader(tc.stdin))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("ParseHook error = %v\nwant one containing %q", err, tc.want)
			}
			var ie *InputError
			if !errors.As(err, &ie) {
				t.Fatalf("error %T is not an *InputError", err)
			}
		})
	}
}

// nicXML is a bridge NIC with MAC 52:54:00:aa:00:NN (NN = i in hex).
func nicXML(i int, bridge string) string {
	return fmt.Sprintf("<interface type='bridge'><mac address='52:54:00:aa:%02x:%02x'/><source bridge='%s'/></interface>", i>>8, i&0xff, bridge)
}

func manyNICs(n int) string {
	var b strings.Builder
	for i := 1; i <= n; i++ {
		b.WriteString(nicXML(i, "br0"))
	}
	return b.String()
}

// TestMaxNICsAccepted: a domain with exactly MaxNICs NICs is fine.
func TestMaxNICsAccepted(t *testing.T) {
	xml := "<domain><name>vm1</name><devices>" + manyNICs(MaxNICs) + "</devices></domain>"
	ev, err := ParseHook(args("prepare"), strings.NewReader(xml))
	if err != nil || len(ev.NICs) != MaxNICs {
		t.Fatalf("%d NICs: err %v, got %d", MaxNICs, err, len(ev.NICs))
	}
}

// TestResolveNetworksReadsOnlyPlainFiles: a definition is read from a
// regular file in the network dirs, never through a symlink, never from a
// FIFO (which would block) or an oversized file.
func TestResolveNetworksReadsOnlyPlainFiles(t *testing.T) {
	dir, outside := t.TempDir(), t.TempDir()
	def := "<network><name>%s</name><forward mode='bridge'/><bridge name='br-%s'/></network>"
	write := func(path, body string) {
		if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(filepath.Join(dir, "good.xml"), fmt.Sprintf(def, "good", "good"))
	write(filepath.Join(outside, "evil.xml"), fmt.Sprintf(def, "evil", "evil"))
	if err := os.Symlink(filepath.Join(outside, "evil.xml"), filepath.Join(dir, "link.xml")); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(filepath.Join(dir, "fifo.xml"), 0o644); err != nil {
		t.Fatal(err)
	}
	write(filepath.Join(dir, "big.xml"), fmt.Sprintf(def, "big", "big")+"<!--"+strings.Repeat("x", MaxXML)+"-->")
	write(filepath.Join(dir, "two.xml"), fmt.Sprintf(def, "two", "two")+fmt.Sprintf(def, "two", "evil"))
	ev := Event{NICs: []NIC{{Network: "good"}, {Network: "link"}, {Network: "fifo"}, {Network: "big"}, {Network: "two"}, {Network: "../" + filepath.Base(outside) + "/evil"}}}
	ResolveNetworks(&ev, []string{dir})
	if n := ev.NICs[0]; n.Bridge != "br-good" || n.NetworkMode != "bridge" {
		t.Errorf("regular definition not read: %+v", n)
	}
	for _, n := range ev.NICs[1:] {
		if n.Bridge != "" || n.NetworkMode != "" {
			t.Errorf("network %q resolved to %+v: it must be ignored", n.Network, n)
		}
	}
	for _, name := range []string{"link", "fifo", "big", "two"} {
		_, err := readNetwork(name, []string{dir})
		t.Logf("%s: %v", name, err)
		if err == nil {
			t.Errorf("readNetwork(%q) accepted it", name)
		}
	}
}

func TestParseHookRefusesOversizedStdin(t *testing.T) {
	big := strings.NewReader("<domain><name>vm1</name><description>" + strings.Repeat("x", MaxXML) + "</description></domain>")
	_, err := ParseHook(args("prepare"), big)
	if err == nil || !strings.Contains(err.Error(), "larger than 8 MiB") {
		t.Fatalf("err = %v", err)
	}
}

func TestOps(t *testing.T) {
	for _, op := range HookOps {
		got, err := ParseOp(string(op))
		if err != nil || got != op {
			t.Fatalf("ParseOp(%q) = %q, %v", op, got, err)
		}
	}
	mayFail := map[Op]bool{OpPrepare: true, OpStart: true, OpStarted: true, OpMigrate: true, OpRestore: true}
	for _, op := range HookOps {
		if op.MayFail() != mayFail[op] {
			t.Errorf("%s.MayFail() = %v", op, op.MayFail())
		}
	}
	if OpReconnect.MayFail() || OpStopped.MayFail() || OpRelease.MayFail() {
		t.Fatal("reconnect, stopped and release must never fail")
	}
}
