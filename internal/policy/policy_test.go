package policy

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/virtbridge/virtbridge/internal/config"
	"github.com/virtbridge/virtbridge/internal/desired"
	"github.com/virtbridge/virtbridge/internal/events"
)

func mustConfig(t *testing.T, y string) *config.Config {
	t.Helper()
	cfg, err := config.Parse("test.yaml", []byte(y))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

const twoBridges = `
bridges:
  br-a: {uplink: uplink0}
  br-b: {}
sysctl: {ip_forward: 1, bridge_nf_call_iptables: 1}
`

func ev(op events.Op, nics ...events.NIC) events.Event {
	return events.Event{Source: events.SourceHook, Op: op, Domain: "vm1", UUID: "u-1", NICs: nics}
}

var (
	nicA     = events.NIC{MAC: "52:54:00:aa:00:01", Type: "bridge", Bridge: "br-a"}
	nicB     = events.NIC{MAC: "52:54:00:aa:00:02", Type: "bridge", Bridge: "br-b", Tap: "vnet7"}
	nicNet   = events.NIC{MAC: "52:54:00:aa:00:03", Type: "bridge", Bridge: "br-a", Network: "lan"}
	nicOther = events.NIC{MAC: "52:54:00:aa:00:04", Type: "bridge", Bridge: "virbr0"}
	nicTap   = events.NIC{MAC: "52:54:00:aa:00:05", Type: "direct", Dev: "eth1"}
	nicUser  = events.NIC{MAC: "52:54:00:aa:00:06", Type: "user"}
	nicNoBr  = events.NIC{MAC: "52:54:00:aa:00:07", Type: "network", Network: "default"}
)

// summary renders the parts of a desired.Desired that tests compare, as one line.
func summary(d desired.Desired) string {
	var b strings.Builder
	b.WriteString("action=" + string(d.Action))
	for _, br := range d.Bridges {
		b.WriteString(" bridge=" + br.Name + "/" + br.Uplink)
	}
	for _, p := range d.Ports {
		b.WriteString(" port=" + p.MAC + "@" + p.Bridge + "[" + p.Tap + "]")
	}
	for _, s := range d.Skipped {
		b.WriteString(" skip=" + s.MAC)
	}
	for _, s := range d.Sysctls {
		b.WriteString(" " + s.Name + "=" + s.Value)
	}
	if d.Firewall != nil {
		b.WriteString(" fw=" + strings.Join(d.Firewall.AcceptBridges, ","))
	}
	for range d.Errors {
		b.WriteString(" error")
	}
	return b.String()
}

func TestDecide(t *testing.T) {
	cfg := mustConfig(t, twoBridges)
	for name, tc := range map[string]struct {
		ev   events.Event
		want string
	}{
		"prepare one nic":       {ev(events.OpPrepare, nicA), "action=host bridge=br-a/uplink0 port=52:54:00:aa:00:01@br-a[] net.ipv4.ip_forward=1 net.bridge.bridge-nf-call-iptables=1 fw=br-a,br-b"},
		"prepare two bridges":   {ev(events.OpPrepare, nicB, nicA), "action=host bridge=br-a/uplink0 bridge=br-b/ port=52:54:00:aa:00:02@br-b[vnet7] port=52:54:00:aa:00:01@br-a[] net.ipv4.ip_forward=1 net.bridge.bridge-nf-call-iptables=1 fw=br-a,br-b"},
		"prepare chosen tap":    {ev(events.OpPrepare, nicB), "action=host bridge=br-b/ port=52:54:00:aa:00:02@br-b[vnet7] net.ipv4.ip_forward=1 net.bridge.bridge-nf-call-iptables=1 fw=br-a,br-b"},
		"same bridge twice":     {ev(events.OpReconnect, nicA, nicNet), "action=host bridge=br-a/uplink0 port=52:54:00:aa:00:01@br-a[] port=52:54:00:aa:00:03@br-a[] net.ipv4.ip_forward=1 net.bridge.bridge-nf-call-iptables=1 fw=br-a,br-b"},
		"started":               {ev(events.OpStarted, nicB), "action=ports bridge=br-b/ port=52:54:00:aa:00:02@br-b[vnet7]"},
		"start":                 {ev(events.OpStart, nicB), "action=none bridge=br-b/ port=52:54:00:aa:00:02@br-b[vnet7]"},
		"stopped":               {ev(events.OpStopped, nicA), "action=detach bridge=br-a/uplink0 port=52:54:00:aa:00:01@br-a[]"},
		"release":               {ev(events.OpRelease, nicA), "action=detach bridge=br-a/uplink0 port=52:54:00:aa:00:01@br-a[]"},
		"hot-plug":              {ev(events.OpDeviceAdded, nicB), "action=host bridge=br-b/ port=52:54:00:aa:00:02@br-b[vnet7] net.ipv4.ip_forward=1 net.bridge.bridge-nf-call-iptables=1 fw=br-a,br-b"},
		"unplug":                {ev(events.OpDeviceRemoved, nicB), "action=detach bridge=br-b/ port=52:54:00:aa:00:02@br-b[vnet7]"},
		"unmanaged ignored":     {ev(events.OpPrepare, nicOther, nicTap, nicUser, nicNoBr), "action=none skip=52:54:00:aa:00:04 skip=52:54:00:aa:00:05 skip=52:54:00:aa:00:06 skip=52:54:00:aa:00:07"},
		"no nic":                {ev(events.OpPrepare), "action=none"},
		"mixed managed/skipped": {ev(events.OpPrepare, nicUser, nicA), "action=host bridge=br-a/uplink0 port=52:54:00:aa:00:01@br-a[] skip=52:54:00:aa:00:06 net.ipv4.ip_forward=1 net.bridge.bridge-nf-call-iptables=1 fw=br-a,br-b"},
	} {
		t.Run(name, func(t *testing.T) {
			if got := summary(Decide(cfg, tc.ev)); got != tc.want {
				t.Fatalf("Decide:\n got %s\nwant %s", got, tc.want)
			}
		})
	}
}

func TestDecideRefusesUnmanagedBridge(t *testing.T) {
	cfg := mustConfig(t, twoBridges+"unmanaged_bridges: refuse\n")
	d := Decide(cfg, ev(events.OpPrepare, nicA, nicOther))
	if len(d.Errors) != 1 || !strings.Contains(d.Errors[0], `NIC 52:54:00:aa:00:04 uses bridge "virbr0", which virtbridge does not manage`) ||
		!strings.Contains(d.Errors[0], "test.yaml") {
		t.Fatalf("errors = %q", d.Errors)
	}
	// Only bridge NICs are refused; macvtap and user NICs stay skipped.
	d = Decide(cfg, ev(events.OpPrepare, nicTap, nicUser))
	if len(d.Errors) != 0 || len(d.Skipped) != 2 {
		t.Fatalf("refuse mode touched non-bridge NICs: %+v", d)
	}
}

func TestDecideFirewallAndSysctlSettings(t *testing.T) {
	cfg := mustConfig(t, "bridges: {br-a: {}}\nsysctl: {ip_forward: leave}\nfirewall: {backend: none}\n")
	d := Decide(cfg, ev(events.OpPrepare, nicA))
	if d.Firewall != nil || len(d.Sysctls) != 0 {
		t.Fatalf("backend none / all leave: firewall=%+v sysctls=%+v", d.Firewall, d.Sysctls)
	}
	cfg = mustConfig(t, "bridges: {br-a: {}}\nfirewall: {bridged_forward: leave}\n")
	if d := Decide(cfg, ev(events.OpPrepare, nicA)); d.Firewall != nil {
		t.Fatalf("bridged_forward leave: firewall=%+v", d.Firewall)
	}
}

// The JSON form is what `virtbridge plan` prints: empty lists, never null.
func TestDesiredJSONHasNoNulls(t *testing.T) {
	d := Decide(mustConfig(t, "bridges: {}\n"), ev(events.OpStopped))
	b, err := json.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{`"bridges":[]`, `"ports":[]`, `"skipped":[]`, `"errors":[]`} {
		if !strings.Contains(string(b), key) {
			t.Errorf("%s missing from %s", key, b)
		}
	}
}

// TestDecideRefusesNonBridges: a NIC naming lo or a configured uplink as
// its bridge is refused whatever unmanaged_bridges says: a VM must never
// make virtbridge treat the host's NIC as a bridge.
func TestDecideRefusesNonBridges(t *testing.T) {
	for _, mode := range []string{"ignore", "refuse"} {
		cfg := mustConfig(t, twoBridges+"unmanaged_bridges: "+mode+"\n")
		for _, tc := range []struct {
			nic  events.NIC
			want string
		}{
			{events.NIC{MAC: "52:54:00:aa:00:11", Type: "bridge", Bridge: "uplink0"},
				`NIC 52:54:00:aa:00:11 names "uplink0" as its bridge: uplink0 is the uplink of managed bridge br-a, not a bridge: point the NIC at br-a`},
			{events.NIC{MAC: "52:54:00:aa:00:12", Type: "network", Network: "lan", NetworkMode: "bridge", Bridge: "uplink0"},
				`uplink0 is the uplink of managed bridge br-a`},
			{events.NIC{MAC: "52:54:00:aa:00:13", Type: "bridge", Bridge: "lo"},
				`NIC 52:54:00:aa:00:13 names "lo" as its bridge: that is the loopback device, not a bridge`},
		} {
			d := Decide(cfg, ev(events.OpPrepare, nicA, tc.nic))
			if len(d.Errors) != 1 || !strings.Contains(d.Errors[0], tc.want) {
				t.Errorf("%s, bridge %q: errors = %q, want %q", mode, tc.nic.Bridge, d.Errors, tc.want)
			}
		}
	}
}

// TestResemblingNamesAreUnmanaged: only the exact name of a managed bridge
// is managed; a look-alike is another, unmanaged bridge, and nothing is
// planned for it.
func TestResemblingNamesAreUnmanaged(t *testing.T) {
	cfg := mustConfig(t, twoBridges)
	for _, name := range []string{"br-a0", "BR-A", "Br-a", "br-a.", "br-", "br_a", "br-å"} {
		d := Decide(cfg, ev(events.OpPrepare, events.NIC{MAC: "52:54:00:aa:00:21", Type: "bridge", Bridge: name}))
		if d.Action != desired.ActionNone || len(d.Bridges) != 0 || len(d.Ports) != 0 || d.Firewall != nil || len(d.Sysctls) != 0 ||
			len(d.Skipped) != 1 || d.Skipped[0].Unmanaged != name {
			t.Errorf("bridge %q: %s, skipped %+v; want it unmanaged and nothing planned", name, summary(d), d.Skipped)
		}
	}
}

// TestAtStart: every bridge made at start gets the desired.Desired of a prepare on
// it alone, in name order, then the host-wide settings, which cover every
// managed bridge (on_demand ones too); an on_demand bridge is not made; a
// config with no bridge made at start asks for nothing.
func TestAtStart(t *testing.T) {
	cfg := mustConfig(t, `
bridges:
  br-c: {create: on_demand}
  br-b: {}
  br-a: {uplink: uplink0, mtu: 9000}
sysctl: {ip_forward: 1, bridge_nf_call_iptables: 1}
`)
	var got []string
	for _, d := range AtStart(cfg) {
		if d.Op != OpAtStart || len(d.Errors) != 0 || d.Ports == nil || d.Skipped == nil {
			t.Errorf("AtStart gave %+v, want op %s, no errors, no nil slices", d, OpAtStart)
		}
		got = append(got, summary(d))
	}
	want := []string{
		"action=host bridge=br-a/uplink0",
		"action=host bridge=br-b/",
		"action=host net.ipv4.ip_forward=1 net.bridge.bridge-nf-call-iptables=1 fw=br-a,br-b,br-c",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("AtStart:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	// The bridge is the one a VM's prepare on it asks for, settings and all.
	at := AtStart(cfg)[0].Bridges[0]
	if prep := Decide(cfg, ev(events.OpPrepare, nicA)).Bridges[0]; prep != at {
		t.Errorf("AtStart's br-a %+v differs from prepare's %+v", at, prep)
	}
	lazy := mustConfig(t, "bridges:\n  br-a: {uplink: uplink0, create: on_demand}\n")
	if d := AtStart(lazy); len(d) != 0 {
		t.Errorf("AtStart with only on_demand bridges = %+v, want nothing", d)
	}
}
