package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestExampleConfigParses(t *testing.T) {
	cfg, err := Load(filepath.Join("..", "..", "packaging", "virtbridge.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	b, ok := cfg.Bridge("br0")
	if !ok || b.Uplink != "eth0" || b.STP || b.ForwardDelay != 0 || !b.MoveAddresses {
		t.Fatalf("br0 = %+v, want uplink eth0, stp off, delay 0, move_addresses", b)
	}
	if cfg.Sysctl.IPForward != On || cfg.Sysctl.BridgeNFCallIPTables != Leave {
		t.Fatalf("sysctl = %+v", cfg.Sysctl)
	}
	if cfg.Firewall.Backend != "iptables" || cfg.Firewall.BridgedForward != "accept" || cfg.OnFailure != "refuse" {
		t.Fatalf("cfg = %+v", cfg)
	}
	if cfg.Daemon.FirewallRecheck != 30*time.Second {
		t.Fatalf("firewall_recheck = %v", cfg.Daemon.FirewallRecheck)
	}
}

func TestEmptyFileIsDefaults(t *testing.T) {
	cfg, err := Parse("empty.yaml", nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Bridges) != 0 || cfg.UnmanagedBridges != "ignore" || cfg.Sysctl.IPForward != On {
		t.Fatalf("defaults = %+v", cfg)
	}
}

func TestFullConfig(t *testing.T) {
	cfg, err := Parse("c.yaml", []byte(`
bridges:
  br1:
    uplink_mac: "52:54:00:00:00:01"
    stp: true
    forward_delay: 2
    mtu: 9000
    move_addresses: false
  br0:
  br2: {}
unmanaged_bridges: refuse
on_failure: warn
sysctl: {ip_forward: leave, ipv6_forward: 1, bridge_nf_call_iptables: 0, bridge_nf_call_ip6tables: true}
firewall: {backend: none, bridged_forward: leave}
daemon: {firewall_recheck: 5s}
`))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, b := range cfg.Bridges {
		names = append(names, b.Name)
	}
	if strings.Join(names, ",") != "br0,br1,br2" {
		t.Fatalf("bridges not sorted: %v", names)
	}
	b1, _ := cfg.Bridge("br1")
	if b1.UplinkMAC.String() != "52:54:00:00:00:01" || !b1.STP || b1.ForwardDelay != 2 || b1.MTU != 9000 || b1.MoveAddresses || b1.Line != 3 {
		t.Fatalf("br1 = %+v", b1)
	}
	if b0, _ := cfg.Bridge("br0"); b0.HasUplink() || !b0.MoveAddresses {
		t.Fatalf("br0 = %+v", b0)
	}
	want := Sysctl{IPForward: Leave, IPv6Forward: On, BridgeNFCallIPTables: Off, BridgeNFCallIP6Tables: On}
	if cfg.Sysctl != want || cfg.UnmanagedBridges != "refuse" || cfg.OnFailure != "warn" ||
		cfg.Firewall != (Firewall{Backend: "none", BridgedForward: "leave"}) || cfg.Daemon.FirewallRecheck != 5*time.Second {
		t.Fatalf("cfg = %+v", cfg)
	}
}

func TestBadConfigs(t *testing.T) {
	for name, tc := range map[string]struct{ yaml, want string }{
		"unknown top key":     {"bridge:\n  br0: {}\n", `c.yaml:1: unknown key "bridge" in the top level`},
		"unknown bridge key":  {"bridges:\n  br0:\n    uplnk: eth0\n", `c.yaml:3: unknown key "uplnk" in bridge "br0"`},
		"wrong type":          {"bridges:\n  br0:\n    stp: yes please\n", `c.yaml:3: stp must be true or false`},
		"mtu not a number":    {"bridges:\n  br0:\n    mtu: big\n", `c.yaml:3: mtu must be a whole number from 68 to 65535`},
		"same uplink twice":   {"bridges:\n  br0:\n    uplink: eth0\n  br1:\n    uplink: eth0\n", `c.yaml:4: uplink "eth0" is given to bridges "br0" (line 2) and "br1"`},
		"both uplink and mac": {"bridges:\n  br0:\n    uplink: eth0\n    uplink_mac: 52:54:00:00:00:01\n", `c.yaml:2: bridge "br0" sets both uplink and uplink_mac`},
		"multicast uplink":    {"bridges:\n  br0:\n    uplink_mac: 11:22:33:44:55:66\n", `c.yaml:3: uplink_mac of bridge "br0": MAC 11:22:33:44:55:66 is a multicast address`},
		"long bridge name":    {"bridges:\n  averyveryverylongbr:\n", `c.yaml:2: bridge name: interface name "averyveryverylongbr" is 19 bytes long`},
		"slash in uplink":     {"bridges:\n  br0:\n    uplink: eth/0\n", `c.yaml:3: uplink of bridge "br0": interface name "eth/0" contains '/'`},
		"stp without delay":   {"bridges:\n  br0:\n    stp: true\n", `c.yaml:2: bridge "br0": with stp: true the kernel needs forward_delay between 2 and 30`},
		"bad enum":            {"on_failure: explode\n", `c.yaml:1: on_failure must be one of refuse, warn, not "explode"`},
		"bad toggle":          {"sysctl:\n  ip_forward: maybe\n", `c.yaml:2: ip_forward must be leave, 0 or 1`},
		"duplicate key":       {"on_failure: warn\non_failure: refuse\n", `c.yaml:2: key "on_failure" given twice`},
		"uplink is a bridge":  {"bridges:\n  br0:\n    uplink: br1\n  br1:\n", `c.yaml:2: uplink "br1" of bridge "br0" is itself a managed bridge`},
		"not yaml":            {"bridges: [\n", `c.yaml: `},
		"bridges a list":      {"bridges:\n  - br0\n", `c.yaml:2: bridges must be a mapping`},
		"bad duration":        {"daemon:\n  firewall_recheck: soon\n", `c.yaml:2: firewall_recheck: want a duration`},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := Parse("c.yaml", []byte(tc.yaml))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Parse error = %v\nwant it to contain %q", err, tc.want)
			}
			var ce *Error
			if !errors.As(err, &ce) {
				t.Fatalf("error %T is not a *config.Error", err)
			}
		})
	}
}

func TestLoadErrors(t *testing.T) {
	if _, err := Load(filepath.Join(t.TempDir(), "missing.yaml")); err == nil || !strings.Contains(err.Error(), "missing.yaml") {
		t.Fatalf("Load(missing) = %v", err)
	}
	big := filepath.Join(t.TempDir(), "big.yaml")
	if err := os.WriteFile(big, make([]byte, maxSize+10), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(big); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Fatalf("Load(big) = %v", err)
	}
}
