package events_test

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"unicode"

	"github.com/virtbridge/virtbridge/internal/config"
	"github.com/virtbridge/virtbridge/internal/desired"
	"github.com/virtbridge/virtbridge/internal/events"
	"github.com/virtbridge/virtbridge/internal/names"
	"github.com/virtbridge/virtbridge/internal/policy"
)

// fuzzConfigs are the fixed configurations FuzzParseHook decides under: two
// managed bridges, br-a with the uplink uplink0 and br-b isolated, once
// ignoring and once refusing NICs on other bridges.
var fuzzConfigs = func() []*config.Config {
	var out []*config.Config
	for _, unmanaged := range []string{"ignore", "refuse"} {
		cfg, err := config.Parse("fuzz.yaml", []byte("bridges:\n  br-a: {uplink: uplink0}\n  br-b: {}\nunmanaged_bridges: "+unmanaged+"\n"))
		if err != nil {
			panic(err)
		}
		out = append(out, cfg)
	}
	return out
}()

// FuzzParseHook feeds the hook's whole input — its four arguments and the
// domain XML on stdin — to the parser and, when the parser accepts it, to the
// policy. Bad input must be refused with an *events.InputError, never a
// panic; what is accepted must hold only valid names and unicast MACs; and
// whatever the VM says, the desired state may only touch the configured
// bridges and uplinks. One iteration is one parse and two pure decisions.
func FuzzParseHook(f *testing.F) {
	addFixtureSeeds(f)
	for _, s := range hostileSeeds() {
		f.Add(s.args[0], s.args[1], s.args[2], s.args[3], []byte(s.xml))
	}
	f.Fuzz(func(t *testing.T, domain, op, subop, extra string, stdin []byte) {
		args := []string{domain, op, subop, extra}
		ev, err := events.ParseHook(args, bytes.NewReader(stdin))
		if err != nil {
			var ie *events.InputError
			if !errors.As(err, &ie) {
				t.Fatalf("refusal is a %T, not an *events.InputError: %v", err, err)
			}
			return
		}
		checkEvent(t, args, ev)
		for _, cfg := range fuzzConfigs {
			checkDesired(t, cfg, ev)
		}
	})
}

// checkEvent checks what ParseHook accepted.
func checkEvent(t *testing.T, args []string, ev events.Event) {
	t.Helper()
	if ev.Domain != args[0] || string(ev.Op) != args[1] || ev.SubOp != args[2] || ev.Extra != args[3] {
		t.Fatalf("accepted event %q/%q/%q/%q for argv %q", ev.Domain, ev.Op, ev.SubOp, ev.Extra, args)
	}
	if ev.Source != events.SourceHook || !slices.Contains(events.HookOps, ev.Op) {
		t.Fatalf("accepted source %q op %q", ev.Source, ev.Op)
	}
	if strings.IndexFunc(ev.Domain+ev.UUID, unicode.IsControl) >= 0 {
		t.Fatalf("accepted a control character in domain %q uuid %q", ev.Domain, ev.UUID)
	}
	for _, n := range ev.NICs {
		if n.Bridge != "" && names.Ifname(n.Bridge) != nil {
			t.Fatalf("accepted bridge %q", n.Bridge)
		}
		if n.Tap != "" && names.Ifname(n.Tap) != nil {
			t.Fatalf("accepted tap %q", n.Tap)
		}
		if n.MAC != "" {
			if _, err := names.UnicastMAC(n.MAC); err != nil {
				t.Fatalf("accepted MAC %q", n.MAC)
			}
		}
	}
}

// checkDesired decides ev under cfg and checks the security invariants of
// the result.
func checkDesired(t *testing.T, cfg *config.Config, ev events.Event) {
	t.Helper()
	d := policy.Decide(cfg, ev)
	if !reflect.DeepEqual(d, policy.Decide(cfg, ev)) {
		t.Fatalf("Decide is not deterministic for %+v", ev)
	}
	if n := len(d.Ports) + len(d.Skipped) + len(d.Errors); n != len(ev.NICs) {
		t.Fatalf("%d NICs became %d ports, skips and errors", len(ev.NICs), n)
	}
	for _, b := range d.Bridges {
		cb, ok := cfg.Bridge(b.Name)
		switch {
		case !ok:
			t.Fatalf("desired state has bridge %q, which the config does not manage", b.Name)
		case b.Uplink != cb.Uplink || (b.UplinkMAC != "") != (cb.UplinkMAC != nil):
			t.Fatalf("bridge %q gets uplink %q/%q, the config says %q", b.Name, b.Uplink, b.UplinkMAC, cb.UplinkString())
		}
	}
	for _, p := range d.Ports {
		if _, ok := cfg.Bridge(p.Bridge); !ok {
			t.Fatalf("port %+v is on bridge %q, which the config does not manage", p, p.Bridge)
		}
		if !slices.ContainsFunc(d.Bridges, func(b desired.Bridge) bool { return b.Name == p.Bridge }) {
			t.Fatalf("port %+v is on bridge %q, missing from the desired bridges", p, p.Bridge)
		}
		if names.Ifname(p.Bridge) != nil || (p.Tap != "" && names.Ifname(p.Tap) != nil) {
			t.Fatalf("port %+v has an invalid interface name", p)
		}
		if isConfigured(cfg, p.Tap) {
			t.Fatalf("port %+v: its tap is a managed bridge or an uplink", p)
		}
	}
	if len(d.Ports) == 0 && d.Action != desired.ActionNone {
		t.Fatalf("action %q without a managed port", d.Action)
	}
	if fw := d.Firewall; fw != nil && !reflect.DeepEqual(fw, policy.FirewallIntent(cfg)) {
		t.Fatalf("firewall intent %+v depends on the VM", fw)
	}
	for _, s := range d.Sysctls {
		if !strings.HasPrefix(s.Name, "net.") || (s.Value != "0" && s.Value != "1") {
			t.Fatalf("sysctl %+v", s)
		}
	}
}

// isConfigured reports whether name is a managed bridge or an uplink of one.
func isConfigured(cfg *config.Config, name string) bool {
	for _, b := range cfg.Bridges {
		if name != "" && (name == b.Name || name == b.Uplink) {
			return true
		}
	}
	return false
}

// addFixtureSeeds adds every hook call captured from a real libvirtd
// (testdata/hook, see its README): its arguments and its stdin.
func addFixtureSeeds(f *testing.F) {
	files, err := filepath.Glob(filepath.Join("..", "..", "testdata", "hook", "*", "*.args"))
	if err != nil || len(files) == 0 {
		f.Fatalf("no hook fixtures under testdata/hook: %v", err)
	}
	for _, file := range files {
		args, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		data, err := os.ReadFile(strings.TrimSuffix(file, ".args") + ".xml")
		if err != nil {
			f.Fatal(err)
		}
		a := strings.Split(strings.TrimSuffix(string(args), "\n"), "\n")
		if len(a) != 4 {
			f.Fatalf("%s: want 4 arguments, got %q", file, a)
		}
		f.Add(a[0], a[1], a[2], a[3], data)
	}
}

type hookSeed struct {
	args [4]string
	xml  string
}

// nicXML is a domain vm1 with the given <interface> elements.
func nicXML(ifaces ...string) string {
	return "<domain type='qemu'><name>vm1</name><uuid>5b0c0000-0000-4000-8000-000000000001</uuid><devices>" +
		strings.Join(ifaces, "") + "</devices></domain>"
}

func bridgeNIC(mac, bridge, tap string) string {
	s := "<interface type='bridge'><mac address='" + mac + "'/><source bridge='" + bridge + "'/>"
	if tap != "" {
		s += "<target dev='" + tap + "'/>"
	}
	return s + "</interface>"
}

// hostileSeeds are inputs a VM owner controls, aimed at the parser's and
// the policy's limits.
func hostileSeeds() []hookSeed {
	prep := [4]string{"vm1", "prepare", "begin", "-"}
	started := [4]string{"vm1", "started", "begin", "-"}
	var many []string
	for i := range 500 {
		many = append(many, fmt.Sprintf("<interface type='bridge'><mac address='52:54:00:00:%02x:%02x'/><source bridge='br-%c'/></interface>", i>>8, i&0xff, 'a'+i%3))
	}
	laughs := "<?xml version='1.0'?><!DOCTYPE domain [<!ENTITY a 'aaaaaaaaaa'><!ENTITY b '&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;'>" +
		"<!ENTITY c '&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;'>]><domain><name>vm1</name><description>&c;</description></domain>"
	return []hookSeed{
		{prep, laughs},
		{prep, "<!doctype domain SYSTEM 'file:///etc/shadow'><domain><name>vm1</name></domain>"},
		{prep, nicXML(bridgeNIC("52:54:00:00:00:01", "br-a", "")) + nicXML(bridgeNIC("52:54:00:00:00:02", "eth0", ""))},
		{prep, nicXML(bridgeNIC("52:54:00:00:00:01", "br-a", ""))[:60]},
		{prep, "<network><name>vm1</name></network>"},
		{prep, nicXML(bridgeNIC("52:54:00:00:00:01", "eth0", ""), bridgeNIC("52:54:00:00:00:02", "lo", ""), bridgeNIC("52:54:00:00:00:03", "uplink0", ""))},
		{prep, nicXML(bridgeNIC("52:54:00:00:00:01", "br-a", "uplink0"), bridgeNIC("52:54:00:00:00:02", "br-b", "br-a"))},
		{started, nicXML(bridgeNIC("52:54:00:00:00:01", "br-a", "eth0"))},
		{prep, nicXML(bridgeNIC("52:54:00:00:00:01", "br-a0123456789abc", ""), bridgeNIC("52:54:00:00:00:02", "br/a", ""))},
		{prep, nicXML(bridgeNIC("52:54:00:00:00:01", "br a", ""), bridgeNIC("52:54:00:00:00:02", "br&#10;a", ""), bridgeNIC("52:54:00:00:00:03", "..", ""))},
		{prep, nicXML(bridgeNIC("01:00:5e:00:00:01", "br-a", ""), bridgeNIC("52:54:00:00:00:01", "br-a", ""), bridgeNIC("52:54:00:00:00:01", "br-b", ""))},
		{prep, nicXML("<interface type='bridge'><source bridge='br-a'/></interface>", "<interface type='network'><source network='../../etc/x'/></interface>")},
		{prep, nicXML("<interface type='bridge'><source network='lan' bridge='br-b'/></interface>", "<interface type='direct'><source dev='uplink0' mode='bridge'/></interface>")},
		{prep, nicXML(many...)},
		{[4]string{strings.Repeat("v", 4096), "prepare", "begin", "-"}, "<domain><name>" + strings.Repeat("v", 4096) + "</name></domain>"},
		{[4]string{"vm\xff", "prepare", "begin", "-"}, "<domain><name>vm\xff</name></domain>"},
		{prep, "<domain><name>vm1\x00</name></domain>"},
		{[4]string{"vm1", "explode", "begin", "-"}, nicXML()},
		{[4]string{"vm1", "migrate", "begin", "-"}, nicXML(bridgeNIC("52:54:00:00:00:01", "br-b", "vnet0"))},
		{[4]string{"vm2", "prepare", "begin", "-"}, nicXML()},
	}
}
