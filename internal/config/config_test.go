package config

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/virtbridge/virtbridge/internal/paths"
)

func TestExampleConfigParses(t *testing.T) {
	cfg, err := Load(filepath.Join("..", "..", "packaging", "virtbridge.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	b, ok := cfg.Bridge("br0")
	if !ok || b.Uplink != "eth0" || b.STP || b.ForwardDelay != 0 || !b.MoveAddresses || !b.AtStart() {
		t.Fatalf("br0 = %+v, want uplink eth0, stp off, delay 0, move_addresses, create: at_start", b)
	}
	if cfg.Sysctl.IPForward != On || cfg.Sysctl.BridgeNFCallIPTables != Leave {
		t.Fatalf("sysctl = %+v", cfg.Sysctl)
	}
	if cfg.Firewall.Backend != BackendIPTables || cfg.Firewall.BridgedForward != AcceptForward || cfg.OnFailure != RefuseOnFailure {
		t.Fatalf("cfg = %+v", cfg)
	}
	if cfg.Daemon.FirewallRecheck != 30*time.Second {
		t.Fatalf("firewall_recheck = %v", cfg.Daemon.FirewallRecheck)
	}
}

// TestMetricsListen: metrics are off unless daemon.metrics_listen names a
// port, and a port alone binds localhost, never every address.
func TestMetricsListen(t *testing.T) {
	for in, want := range map[string]string{
		"":                                    "",
		"daemon: {metrics_listen: \":9473\"}": "127.0.0.1:9473",
		"daemon: {metrics_listen: \"9473\"}":  "127.0.0.1:9473",
		"daemon: {metrics_listen: \"192.0.2.10:9473\"}": "192.0.2.10:9473",
		"daemon: {metrics_listen: \"[::]:9473\"}":       "[::]:9473",
	} {
		cfg, err := Parse("c.yaml", []byte("bridges: {}\n"+in+"\n"))
		if err != nil {
			t.Fatalf("%q: %v", in, err)
		}
		if cfg.Daemon.MetricsListen != want {
			t.Errorf("%q: MetricsListen = %q, want %q", in, cfg.Daemon.MetricsListen, want)
		}
	}
}

// TestEmptyConfigRefused: a config without a YAML document is a mistake
// (a truncated copy, a wrong path), not a wish for the defaults; `bridges:
// {}` says "manage nothing" explicitly.
func TestEmptyConfigRefused(t *testing.T) {
	for name, data := range map[string]string{"0 bytes": "", "blanks": " \n   \n", "comments": "# all defaults\n# really\n"} {
		_, err := Parse("empty.yaml", []byte(data))
		var ce *Error
		if err == nil || !errors.As(err, &ce) || !strings.Contains(err.Error(), "empty.yaml: the config is empty") ||
			!strings.Contains(err.Error(), "write `bridges: {}` to manage no bridge") {
			t.Errorf("%s: Parse = %v, want the empty-config refusal", name, err)
		}
	}
	cfg, err := Parse("none.yaml", []byte("bridges: {}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Bridges) != 0 || cfg.UnmanagedBridges != IgnoreUnmanaged || cfg.Sysctl.IPForward != On {
		t.Fatalf("defaults = %+v", cfg)
	}
}

// TestAliasBombRefusedFast: the billion-laughs of YAML is refused by its
// first anchor, before any alias is expanded.
func TestAliasBombRefusedFast(t *testing.T) {
	var b strings.Builder
	b.WriteString("a0: &a0 [\"lol\", \"lol\", \"lol\", \"lol\", \"lol\", \"lol\", \"lol\", \"lol\", \"lol\"]\n")
	for i := 1; i < 10; i++ {
		fmt.Fprintf(&b, "a%d: &a%d [*a%d, *a%d, *a%d, *a%d, *a%d, *a%d, *a%d, *a%d, *a%d]\n", i, i, i-1, i-1, i-1, i-1, i-1, i-1, i-1, i-1, i-1)
	}
	b.WriteString("bridges: *a9\n")
	begin := time.Now()
	_, err := Parse("bomb.yaml", []byte(b.String()))
	took := time.Since(begin)
	if err == nil || !strings.Contains(err.Error(), "bomb.yaml:1: YAML anchor &a0 (and 91 more): anchors and aliases are not allowed") {
		t.Fatalf("Parse(alias bomb) = %v", err)
	}
	t.Logf("alias bomb (9^10 nodes if expanded) refused in %v", took)
	if took > time.Second {
		t.Errorf("refusing the alias bomb took %v", took)
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
    create: on_demand
    manager: kernel
    probe_target: 192.0.2.1
    probe_timeout: 1500ms
  br0:
  br2: {create: at_start, manager: networkd, probe_timeout: 0s}
  br3: {uplink: eth3, manager: virtbridged}
unmanaged_bridges: refuse
on_failure: warn
sysctl: {ip_forward: leave, ipv6_forward: 1, bridge_nf_call_iptables: 0, bridge_nf_call_ip6tables: true}
firewall: {backend: none, bridged_forward: leave, native_tables: leave, firewalld_zone: internal}
daemon: {firewall_recheck: 5s}
`))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, b := range cfg.Bridges {
		names = append(names, b.Name)
	}
	if strings.Join(names, ",") != "br0,br1,br2,br3" {
		t.Fatalf("bridges not sorted: %v", names)
	}
	b1, _ := cfg.Bridge("br1")
	if b1.UplinkMAC.String() != "52:54:00:00:00:01" || !b1.STP || b1.ForwardDelay != 2 || b1.MTU != 9000 || b1.MoveAddresses || b1.Line != 3 ||
		b1.AtStart() || b1.Create != CreateOnDemand || b1.Manager != ManagerKernel ||
		b1.ProbeTarget.String() != "192.0.2.1" || b1.ProbeTimeout != 1500*time.Millisecond {
		t.Fatalf("br1 = %+v", b1)
	}
	if b0, _ := cfg.Bridge("br0"); b0.HasUplink() || !b0.MoveAddresses || !b0.AtStart() || b0.Create != CreateAtStart || b0.Manager != ManagerAuto {
		t.Fatalf("br0 = %+v, want no uplink, move_addresses and create: at_start (the defaults)", b0)
	}
	if b2, _ := cfg.Bridge("br2"); !b2.AtStart() || b2.Manager != ManagerNetworkd || b2.ProbeTimeout != ProbeOff {
		t.Fatalf("br2 = %+v, want create: at_start", b2)
	}
	if b3, _ := cfg.Bridge("br3"); b3.Manager != ManagerVirtbridged || b3.Manager.String() != "virtbridged" {
		t.Fatalf("br3 = %+v, want manager: virtbridged", b3)
	}
	want := Sysctl{IPForward: Leave, IPv6Forward: On, BridgeNFCallIPTables: Off, BridgeNFCallIP6Tables: On}
	if cfg.Sysctl != want || cfg.UnmanagedBridges != RefuseUnmanaged || cfg.OnFailure != WarnOnFailure ||
		cfg.Firewall != (Firewall{Backend: BackendNone, BridgedForward: LeaveForward, NativeTables: LeaveForward, FirewalldZone: "internal"}) || cfg.Daemon.FirewallRecheck != 5*time.Second {
		t.Fatalf("cfg = %+v", cfg)
	}
}

func TestBadConfigs(t *testing.T) {
	for name, tc := range map[string]struct{ yaml, want string }{
		"unknown top key":      {"bridge:\n  br0: {}\n", `c.yaml:1: unknown key "bridge" in the top level`},
		"unknown bridge key":   {"bridges:\n  br0:\n    uplnk: eth0\n", `c.yaml:3: unknown key "uplnk" in bridge "br0"`},
		"wrong type":           {"bridges:\n  br0:\n    stp: yes please\n", `c.yaml:3: stp must be true or false`},
		"mtu not a number":     {"bridges:\n  br0:\n    mtu: big\n", `c.yaml:3: mtu must be a whole number from 68 to 65535`},
		"same uplink twice":    {"bridges:\n  br0:\n    uplink: eth0\n  br1:\n    uplink: eth0\n", `c.yaml:5: uplink "eth0" of bridge "br1" is already the uplink of bridge "br0" (line 3); a NIC can be enslaved to one bridge only`},
		"both uplink and mac":  {"bridges:\n  br0:\n    uplink: eth0\n    uplink_mac: 52:54:00:00:00:01\n", `c.yaml:2: bridge "br0" sets both uplink and uplink_mac`},
		"multicast uplink":     {"bridges:\n  br0:\n    uplink_mac: 11:22:33:44:55:66\n", `c.yaml:3: uplink_mac of bridge "br0": MAC 11:22:33:44:55:66 is a multicast address`},
		"long bridge name":     {"bridges:\n  averyveryverylongbr:\n", `c.yaml:2: bridge name: interface name "averyveryverylongbr" is 19 bytes long`},
		"slash in uplink":      {"bridges:\n  br0:\n    uplink: eth/0\n", `c.yaml:3: uplink of bridge "br0": interface name "eth/0" contains '/'`},
		"stp without delay":    {"bridges:\n  br0:\n    stp: true\n", `c.yaml:2: bridge "br0": with stp: true the kernel needs forward_delay between 2 and 30`},
		"bad enum":             {"on_failure: explode\n", `c.yaml:1: on_failure must be one of refuse, warn, not "explode"`},
		"bad toggle":           {"sysctl:\n  ip_forward: maybe\n", `c.yaml:2: ip_forward must be leave, 0 or 1`},
		"bad native_tables":    {"firewall:\n  native_tables: sometimes\n", `c.yaml:2: native_tables`},
		"bad firewalld_zone":   {"firewall:\n  firewalld_zone: \"a b\"\n", `c.yaml:2: firewalld_zone: want a firewalld zone name`},
		"duplicate key":        {"on_failure: warn\non_failure: refuse\n", `c.yaml:2: key "on_failure" given twice, at lines 1 and 2`},
		"uplink is a bridge":   {"bridges:\n  br0:\n    uplink: br1\n  br1:\n", `c.yaml:3: uplink "br1" of bridge "br0" is itself a managed bridge`},
		"not yaml":             {"bridges: [\n", `c.yaml: `},
		"bridges a list":       {"bridges:\n  - br0\n", `c.yaml:2: bridges must be a mapping`},
		"bad duration":         {"daemon:\n  firewall_recheck: soon\n", `c.yaml:2: firewall_recheck: want a duration`},
		"bad metrics port":     {"daemon:\n  metrics_listen: \":99999\"\n", `c.yaml:2: metrics_listen: want [HOST]:PORT with a port from 1 to 65535`},
		"metrics no port":      {"daemon:\n  metrics_listen: \"localhost:\"\n", `c.yaml:2: metrics_listen: want [HOST]:PORT`},
		"duplicate bridge":     {"bridges:\n  br0: {}\n  br1: {}\n  br0: {uplink: eth0}\n", `c.yaml:4: key "br0" given twice, at lines 2 and 4`},
		"duplicate setting":    {"bridges:\n  br0:\n    uplink: eth0\n    uplink: eth1\n", `c.yaml:4: key "uplink" given twice, at lines 3 and 4`},
		"duplicate in flow":    {"sysctl: {ip_forward: 1, ip_forward: 0}\n", `c.yaml:1: key "ip_forward" given twice, at lines 1 and 1`},
		"anchor":               {"bridges:\n  br0: &b {uplink: eth0}\n", `c.yaml:2: YAML anchor &b: anchors and aliases are not allowed`},
		"alias":                {"bridges:\n  br0: {uplink: &u eth0}\n  br1: {uplink: *u}\n", `c.yaml:2: YAML anchor &u (and 1 more): anchors and aliases are not allowed`},
		"loopback bridge":      {"bridges:\n  lo: {}\n", `c.yaml:2: bridge name "lo" is the loopback device`},
		"loopback uplink":      {"bridges:\n  br0: {uplink: lo}\n", `c.yaml:2: uplink of bridge "br0" is "lo", the loopback device`},
		"bridge is own uplink": {"bridges:\n  br0: {uplink: br0}\n", `c.yaml:2: uplink "br0" of bridge "br0" is itself a managed bridge`},
		"bad create":           {"bridges:\n  br0:\n    create: lazily\n", `c.yaml:3: create must be one of at_start, on_demand, not "lazily"`},
		"bad probe target":     {"bridges:\n  br0:\n    probe_target: gw\n", `c.yaml:3: probe_target of bridge "br0": want an IP address, like 192.0.2.1 (got "gw")`},
		"bad probe timeout":    {"bridges:\n  br0:\n    probe_timeout: 5m\n", `c.yaml:3: probe_timeout of bridge "br0": want 0 (no probe) or a duration between 100ms and 60s, like 3s (got "5m")`},
		"bad manager":          {"bridges:\n  br0:\n    manager: ifupdown\n", `c.yaml:3: manager must be one of auto, networkmanager, networkd, kernel, virtbridged, not "ifupdown"`},
		"keeper on demand":     {"bridges:\n  br0:\n    manager: virtbridged\n    create: on_demand\n", `c.yaml:2: bridge "br0": manager: virtbridged has virtbridged keep the uplink's lease on the bridge it makes at start; it needs create: at_start and move_addresses: true`},
		"unknown nested key":   {"firewall:\n  backend: none\n  chain: MINE\n", `c.yaml:3: unknown key "chain" in firewall`},
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

// TestLoadRefusesIrregularFiles: a config that is no regular file once
// symlinks are followed is refused by name, at once: a symlink to
// /dev/zero is not read forever, a FIFO does not block.
func TestLoadRefusesIrregularFiles(t *testing.T) {
	dir := t.TempDir()
	zero := filepath.Join(dir, "zero.yaml")
	if err := os.Symlink("/dev/zero", zero); err != nil {
		t.Fatal(err)
	}
	fifo := filepath.Join(dir, "fifo.yaml")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	good := filepath.Join(dir, "good.yaml")
	if err := os.WriteFile(good, []byte("bridges: {br0: {}}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "link.yaml")
	if err := os.Symlink(good, link); err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]string{
		zero: zero + " is a character device, not a regular file",
		fifo: fifo + " is a named pipe (FIFO), not a regular file",
		dir:  dir + " is a directory, not a regular file",
	} {
		done := make(chan error, 1)
		go func() { _, err := Load(path); done <- err }()
		select {
		case err := <-done:
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("Load(%s) = %v, want %q", path, err, want)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("Load(%s) blocks", path)
		}
	}
	if cfg, err := Load(link); err != nil || len(cfg.Bridges) != 1 {
		t.Fatalf("a symlink to a regular config is fine: %v", err)
	}
	if _, err := paths.ReadRegular(link, maxSize, false); err == nil || !strings.Contains(err.Error(), "is a symlink") {
		t.Fatalf("ReadRegular(link, no follow) = %v", err)
	}
}

// TestCheckUplinks: a NIC given to one bridge by name and to another by MAC
// is refused at the uplink lines once the host says which link owns the
// MAC; nothing is asked when the config cannot hold such a pair.
func TestCheckUplinks(t *testing.T) {
	const file = "bridges:\n  br0:\n    uplink: eth0\n  br1:\n    stp: false\n    uplink_mac: 52:54:00:aa:00:01\n"
	cfg, err := Parse("c.yaml", []byte(file))
	if err != nil {
		t.Fatalf("Parse: %v (the file alone cannot tell)", err)
	}
	host := func(nic string) func(net.HardwareAddr) string {
		return func(mac net.HardwareAddr) string {
			if mac.String() == "52:54:00:aa:00:01" {
				return nic
			}
			return ""
		}
	}
	err = cfg.CheckUplinks(host("eth0"))
	want := `c.yaml:6: uplink "eth0" of bridge "br1" is already the uplink of bridge "br0" (line 3); ` +
		`a NIC can be enslaved to one bridge only: keep one of the two lines (uplink_mac 52:54:00:aa:00:01 of bridge "br1" is "eth0" on this host)`
	var ce *Error
	if err == nil || err.Error() != want || !errors.As(err, &ce) || ce.Line != 6 {
		t.Errorf("CheckUplinks = %v\nwant %s", err, want)
	}
	for _, nic := range []string{"eth1", ""} {
		if err := cfg.CheckUplinks(host(nic)); err != nil {
			t.Errorf("MAC owned by %q: CheckUplinks = %v, want nil", nic, err)
		}
	}
	// MAC first in the file: the error is at the later line, br0's uplink.
	cfg, err = Parse("c.yaml", []byte("bridges:\n  br0:\n    uplink_mac: 52:54:00:aa:00:01\n  br1:\n    uplink: eth0\n"))
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.CheckUplinks(host("eth0")); err == nil || !strings.HasPrefix(err.Error(), `c.yaml:5: uplink "eth0" of bridge "br1" is already the uplink of bridge "br0" (line 3)`) {
		t.Errorf("CheckUplinks = %v", err)
	}
	// Only names, or only MACs: the host is not asked.
	for _, f := range []string{"bridges:\n  br0: {uplink: eth0}\n  br1: {uplink: eth1}\n",
		"bridges:\n  br0: {uplink_mac: 52:54:00:aa:00:01}\n  br1: {uplink_mac: 52:54:00:aa:00:02}\n"} {
		cfg, err := Parse("c.yaml", []byte(f))
		if err != nil {
			t.Fatal(err)
		}
		if err := cfg.CheckUplinks(func(net.HardwareAddr) string { t.Error("asked the host"); return "" }); err != nil {
			t.Error(err)
		}
	}
}
