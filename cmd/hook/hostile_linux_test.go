package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/virtbridge/virtbridge/internal/journal"
)

// run executes the built hook inside the hypervisor namespace, the way
// libvirtd does: argv, the domain XML on stdin, a scrubbed environment. dir
// holds the hook's run, state and log files; cfgPath is its config.
func (h *hypervisor) run(t *testing.T, dir, cfgPath string, stdin io.Reader, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute) // a hung hook fails the test
	defer cancel()
	cmd, out, errb := h.command(ctx, dir, cfgPath, stdin, args...)
	err := cmd.Run()
	r := result{stdout: out.String(), stderr: errb.String()}
	if ee, ok := err.(*exec.ExitError); ok {
		r.code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return r
}

// newHostileHost is the broken host of newHypervisor (br-a over uplink0
// configured, not yet made) with, besides, a NIC eth0 that holds the
// host's preferred default route and a policy-routing rule, so that "the
// host's default-route NIC" is a real link. Any accepted prepare of br-a
// would change it visibly: a bridge, an enslaved uplink, moved addresses.
func newHostileHost(t *testing.T) *hypervisor {
	t.Helper()
	h := newHypervisor(t, brA)
	h.hv.Script(t, `
		ip link add eth0 type veth peer name eth0p
		ip link set eth0p up
		ip link set eth0 up
		ip addr add 10.88.0.2/24 dev eth0
		ip route add default via 10.88.0.1 dev eth0 metric 50
		ip route add default via 10.88.0.1 dev eth0 table 100
		ip rule add from 10.88.0.2 table 100 priority 1000`)
	if r := h.hv.Run(t, "ip", "route", "get", "192.0.2.1"); !strings.Contains(r, "dev eth0") {
		t.Fatalf("eth0 does not hold the default route: %s", r)
	}
	h.settle(t)
	return h
}

// settle waits until no IPv6 address of the hypervisor is tentative: new
// links' link-local addresses are, for a while (DAD), and dumps taken
// meanwhile differ by themselves.
func (h *hypervisor) settle(t *testing.T) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if out := h.hv.Run(t, "ip", "-6", "addr", "show", "tentative"); strings.TrimSpace(out) == "" {
			return
		} else if time.Now().After(deadline) {
			t.Fatalf("IPv6 addresses still tentative after 10s:\n%s", out)
		}
	}
}

// oneNIC is the captured prepare XML of a VM with one NIC on br-a.
func oneNIC(t *testing.T) string {
	t.Helper()
	_, data := fixture(t, "one-nic", "01-prepare-begin")
	return string(data)
}

// withNICs adds interfaces to the VM, after its NIC on br-a: a hostile NIC
// that were let through would let br-a be made too.
func withNICs(good, nics string) string {
	return strings.Replace(good, "    <input type='mouse'", nics+"\n    <input type='mouse'", 1)
}

func bridgeNIC(mac, bridge string) string {
	return fmt.Sprintf("<interface type='bridge'><mac address='%s'/><source bridge='%s'/><model type='e1000'/></interface>", mac, bridge)
}

// billionLaughs is the XML entity bomb: 10^9 "lol" if expanded.
func billionLaughs() string {
	var b strings.Builder
	b.WriteString("<?xml version=\"1.0\"?>\n<!DOCTYPE domain [\n  <!ENTITY lol \"lol\">\n")
	prev := "lol"
	for i := 1; i <= 9; i++ {
		fmt.Fprintf(&b, "  <!ENTITY lol%d \"%s\">\n", i, strings.Repeat("&"+prev+";", 10))
		prev = fmt.Sprintf("lol%d", i)
	}
	b.WriteString("]>\n<domain><name>one-nic</name><description>&lol9;</description></domain>\n")
	return b.String()
}

// yamlAliasBomb is the YAML billion laughs: 9^9 nodes if expanded.
func yamlAliasBomb() string {
	var b strings.Builder
	b.WriteString("bridges:\n  br-a: {uplink: uplink0}\nx0: &x0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n")
	for i := 1; i < 9; i++ {
		p := fmt.Sprintf("*x%d", i-1)
		fmt.Fprintf(&b, "x%d: &x%d [%s]\n", i, i, strings.Repeat(p+", ", 8)+p)
	}
	return b.String()
}

// hostileCase is one hostile input: argv, stdin and config (a file body,
// or a setup that makes the config path something else), the refusal
// expected on stderr.
type hostileCase struct {
	name  string
	args  []string // nil: one-nic prepare begin -
	stdin string   // "": the good XML
	cfg   string   // "": the good config
	// cfgPath, when set, makes the config path in dir and returns it.
	cfgPath func(t *testing.T, dir string) string
	want    string
}

func hostileCases(t *testing.T) []hostileCase {
	good := oneNIC(t)
	bridge := func(name string) string { return withNICs(good, bridgeNIC("52:54:00:aa:01:02", name)) }
	many := func(n int) string {
		var b strings.Builder
		for i := 2; i <= n; i++ {
			b.WriteString(bridgeNIC(fmt.Sprintf("52:54:00:ab:%02x:%02x", i>>8, i&0xff), "br-a") + "\n")
		}
		return withNICs(good, b.String())
	}
	return []hostileCase{
		// Names: bridges a VM may not use, names the kernel refuses.
		{name: "bridge eth0, the default-route NIC", stdin: bridge("eth0"), want: `names "eth0" as its bridge, but eth0 is a veth link on this host, not a bridge`},
		{name: "bridge lo", stdin: bridge("lo"), want: `names "lo" as its bridge: that is the loopback device, not a bridge`},
		{name: "bridge an existing non-bridge link", stdin: bridge("eth0p"), want: `names "eth0p" as its bridge, but eth0p is a veth link`},
		{name: "bridge the configured uplink", stdin: bridge("uplink0"), want: `uplink0 is the uplink of managed bridge br-a, not a bridge: point the NIC at br-a`},
		{name: "bridge name of 16 bytes", stdin: bridge("br-a-0123456789a"), want: `source bridge: interface name "br-a-0123456789a" is 16 bytes long`},
		{name: "bridge name with /", stdin: bridge("br/a"), want: `interface name "br/a" contains '/'`},
		{name: "bridge name with a space", stdin: bridge("br a"), want: `interface name "br a" contains ' '`},
		{name: "bridge name with a newline (&#10;)", stdin: bridge("br&#10;a"), want: `interface name "br\na" contains '\n'`},
		{name: "bridge name with NUL (&#0;)", stdin: bridge("br&#0;a"), want: `malformed domain XML: XML syntax error on line 33: illegal character code U+0000`},
		{name: "bridge name with a raw NUL", stdin: bridge("br\x00a"), want: `malformed domain XML: XML syntax error on line 33: illegal character code U+0000`},
		{name: "bridge name ..", stdin: bridge(".."), want: `source bridge: interface name ".." is reserved`},
		{name: "bridge name not UTF-8", stdin: bridge("br\xffa"), want: `domain XML on stdin is not valid UTF-8`},
		{name: "tap name ..", stdin: withNICs(good, "<interface type='bridge'><mac address='52:54:00:aa:01:02'/><source bridge='br-a'/><target dev='..'/></interface>"), want: `target dev: interface name ".." is reserved`},
		{name: "network name ../../etc/passwd", stdin: withNICs(good, "<interface type='network'><mac address='52:54:00:aa:01:02'/><source network='../../etc/passwd'/></interface>"), want: `source network "../../etc/passwd" contains '/'`},
		{name: "domain name not UTF-8", args: []string{"one-nic\xff", "prepare", "begin", "-"}, want: `argument 1 is not valid UTF-8`},
		// Size and shape of the XML.
		{name: "10 MB of stdin", stdin: strings.Replace(good, "</name>", "</name>\n  <description>"+strings.Repeat("x", 10<<20)+"</description>", 1), want: `domain XML on stdin is larger than 8 MiB`},
		{name: "billion laughs DOCTYPE", stdin: billionLaughs(), want: `domain XML contains a <!DOCTYPE declaration`},
		{name: "empty stdin", stdin: " ", want: `no domain XML on stdin`},
		{name: "truncated XML", stdin: good[:len(good)/2], want: `malformed domain XML: XML syntax error on line 23: unexpected EOF`},
		{name: "wrong root", stdin: "<network><name>one-nic</name><bridge name='eth0'/></network>", want: `root element of the XML on stdin is <network>, want <domain>`},
		{name: "two domain roots", stdin: good + strings.Replace(good, "br-a", "eth0", 1), want: `second root element <domain> after </domain>`},
		{name: "NIC without MAC", stdin: withNICs(good, "<interface type='bridge'><source bridge='br-a'/></interface>"), want: `interface 2 of domain "one-nic": no <mac address='...'/>`},
		{name: "multicast MAC", stdin: withNICs(good, bridgeNIC("01:00:5e:00:00:01", "br-a")), want: `MAC 01:00:5e:00:00:01 is a multicast address`},
		{name: "duplicate MACs", stdin: withNICs(good, bridgeNIC("52:54:00:AA:01:01", "br-a")), want: `interfaces 1 and 2 of domain "one-nic" have the same MAC 52:54:00:aa:01:01`},
		{name: "500 NICs in one VM", stdin: many(500), want: `domain "one-nic" has 500 interfaces, more than the 256 virtbridge handles`},
		// argv.
		{name: "unknown op", args: []string{"one-nic", "explode", "begin", "-"}, want: `unknown hook operation "explode"`},
		{name: "3 arguments", args: []string{"one-nic", "prepare", "begin"}, want: `want 4 arguments from libvirtd (domain op subop extra), got 3`},
		{name: "5 arguments", args: []string{"one-nic", "prepare", "begin", "-", "eth0"}, want: `want 4 arguments from libvirtd (domain op subop extra), got 5`},
		{name: "domain name mismatch", args: []string{"other", "prepare", "begin", "-"}, want: `domain name "other" in argv does not match <name>one-nic</name>`},
		// Configs: the good XML would make br-a; a broken config makes nothing.
		{name: "empty config", cfg: " \n", want: `the config is empty (no YAML document, only blanks or comments); write ` + "`bridges: {}`"},
		{name: "config of comments only", cfg: "# bridges:\n#   br-a: {uplink: uplink0}\n", want: `the config is empty`},
		{name: "config with an unknown key", cfg: "bridges:\n  br-a: {uplink: uplink0, uplnk: eth0}\n", want: `virtbridge.yaml:2: unknown key "uplnk" in bridge "br-a"`},
		{name: "config with duplicate bridges", cfg: "bridges:\n  br-a: {uplink: uplink0}\n  br-a: {uplink: eth0}\n", want: `virtbridge.yaml:3: key "br-a" given twice, at lines 2 and 3`},
		{name: "config with one uplink for two bridges", cfg: "bridges:\n  br-a: {uplink: uplink0}\n  br-b: {uplink: uplink0}\n", want: `virtbridge.yaml:3: uplink "uplink0" of bridge "br-b" is already the uplink of bridge "br-a" (line 2)`},
		{name: "config with a YAML alias bomb", cfg: yamlAliasBomb(), want: `virtbridge.yaml:3: YAML anchor &x0 (and 80 more): anchors and aliases are not allowed`},
		{name: "config bridge named lo", cfg: "bridges:\n  br-a: {uplink: uplink0}\n  lo: {}\n", want: `virtbridge.yaml:3: bridge name "lo" is the loopback device`},
		{name: "config bridge named like an uplink", cfg: "bridges:\n  br-a: {uplink: uplink0}\n  uplink0: {}\n", want: `uplink "uplink0" of bridge "br-a" is itself a managed bridge`},
		{name: "config a symlink to /dev/zero", cfgPath: func(t *testing.T, dir string) string {
			p := filepath.Join(dir, "virtbridge.yaml")
			if err := os.Symlink("/dev/zero", p); err != nil {
				t.Fatal(err)
			}
			return p
		}, want: `virtbridge.yaml is a character device, not a regular file`},
		{name: "config a FIFO", cfgPath: func(t *testing.T, dir string) string {
			p := filepath.Join(dir, "virtbridge.yaml")
			if err := syscall.Mkfifo(p, 0o644); err != nil {
				t.Fatal(err)
			}
			return p
		}, want: `virtbridge.yaml is a named pipe (FIFO), not a regular file`},
		{name: "config a directory", cfgPath: func(t *testing.T, dir string) string {
			p := filepath.Join(dir, "virtbridge.yaml")
			if err := os.Mkdir(p, 0o755); err != nil {
				t.Fatal(err)
			}
			return p
		}, want: `virtbridge.yaml is a directory, not a regular file`},
	}
}

// TestHostileInputChangesNothing runs the built hook at prepare on each
// hostile input of the catalogue (issue 10) in one namespace host that a
// good prepare would change: each is refused with exit 1 and a message
// naming the object, the namespace's links, addresses, routes, rules and
// firewall stay byte for byte as they were, no store is written, and the
// journal gains at most the refusal.
func TestHostileInputChangesNothing(t *testing.T) {
	h := newHostileHost(t)
	// The host has been told once already that records go to the file.
	if err := os.WriteFile(filepath.Join(h.dir, "journal.jsonl"+journal.NoticeSuffix), []byte("told\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	goodCfg := filepath.Join(h.dir, "virtbridge.yaml")
	good := oneNIC(t)
	before := h.hv.Dump(t)
	cases := hostileCases(t)
	if len(cases) < 25 {
		t.Fatalf("only %d hostile cases", len(cases))
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			args, stdin, cfgPath := tc.args, tc.stdin, goodCfg
			if args == nil {
				args = []string{"one-nic", "prepare", "begin", "-"}
			}
			if stdin == "" {
				stdin = good
			}
			switch {
			case tc.cfgPath != nil:
				cfgPath = tc.cfgPath(t, t.TempDir())
			case tc.cfg != "":
				cfgPath = filepath.Join(t.TempDir(), "virtbridge.yaml")
				if err := os.WriteFile(cfgPath, []byte(tc.cfg), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			files := snapshot(t, h.dir)
			begin := time.Now()
			r := h.run(t, h.dir, cfgPath, strings.NewReader(stdin), args...)
			took := time.Since(begin)
			msg := strings.TrimSpace(r.stderr)
			t.Logf("%v: %s", took.Round(time.Millisecond), truncate(msg, 300))
			if r.code != 1 || r.stdout != "" || !strings.HasPrefix(msg, "virtbridge") || !strings.Contains(msg, "refused: ") {
				t.Fatalf("exit %d stdout %q stderr %q, want exit 1 and a refusal", r.code, r.stdout, truncate(msg, 300))
			}
			if !strings.Contains(msg, tc.want) {
				t.Errorf("stderr %q does not say %q", truncate(msg, 300), tc.want)
			}
			if lines := strings.Count(msg, "\n") + 1; lines > 2 {
				t.Errorf("stderr has %d lines, want one refusal (and for a config, the hint):\n%s", lines, truncate(msg, 600))
			}
			if took > 5*time.Second {
				t.Errorf("the refusal took %v", took)
			}
			onlyRefusalsAdded(t, files, snapshot(t, h.dir))
			if after := h.hv.Dump(t); after != before {
				t.Errorf("the refused call changed the host:\n--- before\n%s\n--- after\n%s", before, after)
				before = after // so that the next cases are judged on their own
			}
		})
	}
}

// snapshot maps each file in dir to its contents.
func snapshot(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil || fi.IsDir() {
			return err
		}
		data, err := os.ReadFile(p)
		out[p] = string(data)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// onlyRefusalsAdded fails unless after is before plus, at most, refusal
// records appended to the journal file: no store, no lock, no other record.
func onlyRefusalsAdded(t *testing.T, before, after map[string]string) {
	t.Helper()
	var changed []string
	for p, data := range after {
		if old, ok := before[p]; ok && old == data {
			continue
		}
		if filepath.Base(p) == "journal.jsonl" && strings.HasPrefix(data, before[p]) && allRefused(t, data[len(before[p]):]) {
			continue
		}
		changed = append(changed, filepath.Base(p))
	}
	for p := range before {
		if _, ok := after[p]; !ok {
			changed = append(changed, filepath.Base(p)+" (deleted)")
		}
	}
	sort.Strings(changed)
	if len(changed) > 0 {
		t.Errorf("the refused call wrote %s", strings.Join(changed, ", "))
	}
}

// allRefused reports whether every JSON line of s is a refusal record.
func allRefused(t *testing.T, s string) bool {
	t.Helper()
	sc := bufio.NewScanner(bytes.NewReader([]byte(s)))
	for sc.Scan() {
		var rec map[string]string
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil || rec["MESSAGE_ID"] != journal.IDRefused {
			t.Logf("journal record that is no refusal: %s", sc.Text())
			return false
		}
	}
	return true
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
