package config

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/virtbridge/virtbridge/internal/names"
)

// FuzzParse feeds the config parser arbitrary files. Every error must be an
// *Error that starts with the file name; an accepted configuration must hold
// only what validation promises: valid, distinct bridge names, valid and
// distinct uplinks that are not bridges, and every value in its range.
func FuzzParse(f *testing.F) {
	seed, err := os.ReadFile(filepath.Join("..", "..", "packaging", "virtbridge.yaml"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(seed)
	for _, s := range configSeeds() {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := Parse("fuzz.yaml", data)
		if err != nil {
			checkErrors(t, err)
			return
		}
		checkConfig(t, cfg)
	})
}

// checkErrors checks that err is, or joins, *Errors naming the file.
func checkErrors(t *testing.T, err error) {
	t.Helper()
	errs := []error{err}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		errs = j.Unwrap()
	}
	for _, e := range errs {
		var ce *Error
		if !errors.As(e, &ce) || ce.File != "fuzz.yaml" {
			t.Fatalf("error %T is not a *config.Error of fuzz.yaml: %v", e, e)
		}
		if !strings.HasPrefix(e.Error(), "fuzz.yaml") {
			t.Fatalf("error without the file name: %v", e)
		}
	}
}

// checkConfig checks the promises of an accepted configuration.
func checkConfig(t *testing.T, cfg *Config) {
	t.Helper()
	uplinks := map[string]bool{}
	for i, b := range cfg.Bridges {
		if err := names.Ifname(b.Name); err != nil {
			t.Fatalf("accepted bridge name: %v", err)
		}
		if i > 0 && cfg.Bridges[i-1].Name >= b.Name {
			t.Fatalf("bridges not sorted and distinct: %q then %q", cfg.Bridges[i-1].Name, b.Name)
		}
		if got, ok := cfg.Bridge(b.Name); !ok || got.Line != b.Line {
			t.Fatalf("Bridge(%q) does not find it", b.Name)
		}
		checkUplink(t, cfg, b)
		if u := b.UplinkString(); b.HasUplink() {
			if uplinks[u] {
				t.Fatalf("accepted uplink %q for two bridges", u)
			}
			uplinks[u] = true
		}
		switch {
		case b.ForwardDelay < 0 || b.ForwardDelay > 30 || (b.STP && b.ForwardDelay < 2):
			t.Fatalf("bridge %q: forward_delay %d with stp %v", b.Name, b.ForwardDelay, b.STP)
		case b.MTU != 0 && (b.MTU < 68 || b.MTU > 65535):
			t.Fatalf("bridge %q: mtu %d", b.Name, b.MTU)
		case b.Line < 1:
			t.Fatalf("bridge %q: line %d", b.Name, b.Line)
		}
	}
	for _, tg := range []Toggle{cfg.Sysctl.IPForward, cfg.Sysctl.IPv6Forward, cfg.Sysctl.BridgeNFCallIPTables, cfg.Sysctl.BridgeNFCallIP6Tables} {
		if tg != Leave && tg != Off && tg != On {
			t.Fatalf("sysctl toggle %d", tg)
		}
	}
	switch {
	case cfg.Path != "fuzz.yaml":
		t.Fatalf("path %q", cfg.Path)
	case !slices.Contains([]Unmanaged{IgnoreUnmanaged, RefuseUnmanaged}, cfg.UnmanagedBridges),
		!slices.Contains([]FailureMode{RefuseOnFailure, WarnOnFailure}, cfg.OnFailure),
		!slices.Contains([]FirewallBackend{BackendIPTables, BackendIPTablesNFT, BackendIPTablesLegacy, BackendNone}, cfg.Firewall.Backend),
		!slices.Contains([]Forward{AcceptForward, LeaveForward}, cfg.Firewall.BridgedForward):
		t.Fatalf("enum out of range: %+v", cfg)
	case cfg.Daemon.FirewallRecheck < time.Second || cfg.Daemon.FirewallRecheck > 24*time.Hour:
		t.Fatalf("firewall_recheck %v", cfg.Daemon.FirewallRecheck)
	}
}

func checkUplink(t *testing.T, cfg *Config, b Bridge) {
	t.Helper()
	if b.Uplink != "" && b.UplinkMAC != nil {
		t.Fatalf("bridge %q has both uplink and uplink_mac", b.Name)
	}
	if b.Uplink != "" {
		if err := names.Ifname(b.Uplink); err != nil {
			t.Fatalf("bridge %q: accepted uplink: %v", b.Name, err)
		}
		if _, ok := cfg.Bridge(b.Uplink); ok {
			t.Fatalf("bridge %q: uplink %q is a managed bridge", b.Name, b.Uplink)
		}
	}
	if b.UplinkMAC != nil {
		if _, err := names.UnicastMAC(b.UplinkMAC.String()); err != nil {
			t.Fatalf("bridge %q: accepted uplink_mac: %v", b.Name, err)
		}
	}
}

// configSeeds are files aimed at the parser's limits: YAML features a
// config has no use for (anchors, aliases, merge keys, tags), duplicates,
// deep nesting, and values at the edges of their ranges.
func configSeeds() []string {
	bomb := "a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n"
	for i, prev := range "abcdefgh" {
		name := string(rune('b' + i))
		bomb += name + ": &" + name + " [" + strings.Repeat("*"+string(prev)+", ", 8) + "*" + string(prev) + "]\n"
	}
	return []string{
		"bridges:\n  br0:\n    uplink: eth0\n",
		"sysctl: {ip_forward: 0}\n",
		"",
		"---\n---\nbridges: {br0: {}}\n",
		bomb + "bridges: *i\n",
		bomb + "bridges:\n  br0: *i\n",
		"x: &x {uplink: eth0}\nbridges:\n  br0: *x\n  br1: *x\n",
		"bridges:\n  br0: &b {uplink: eth0, stp: true, forward_delay: 2}\n  br1:\n    <<: *b\n    uplink: eth1\n",
		"bridges: &r\n  br0: *r\n",
		"bridges:\n  br0: {}\n  br0: {uplink: eth0}\n",
		"bridges:\n  br0: {uplink: eth0, uplink: eth1}\n",
		"on_failure: warn\non_failure: refuse\n",
		"bridges:\n  br0: {uplink: eth0}\n  br1: {uplink: eth0}\n",
		"bridges:\n  br0: {uplink_mac: '52:54:00:00:00:01'}\n  br1: {uplink_mac: '52:54:00:00:00:01'}\n",
		"bridges:\n  br0: {uplink: br1}\n  br1: {uplink: br0}\n",
		"bridges:\n  eth0: {uplink: eth0}\n",
		"bridges:\n  lo: {}\n  br0123456789abcd: {}\n  'br/0': {}\n  'br 0': {}\n  '..': {}\n  \"br\\n0\": {}\n  \"br\\x000\": {}\n",
		"bridges:\n  br0: {stp: true, forward_delay: 30, mtu: 65535}\n  br1: {forward_delay: 0, mtu: 68}\n",
		"bridges:\n  br0: {mtu: 67}\n",
		"bridges:\n  br0: {mtu: 0x10000}\n",
		"bridges:\n  br0: {forward_delay: 31}\n",
		"bridges:\n  br0: {forward_delay: -1}\n",
		"bridges:\n  br0: {stp: true, forward_delay: 1}\n",
		"bridges:\n  br0: {mtu: 99999999999999999999999}\n",
		"bridges:\n  ? [a, b]\n  : {}\n  ? {x: y}\n  : {}\n",
		"bridges:\n  !!binary YnIw: {}\n  br1: !!str\n",
		"bridges: [br0]\nunmanaged_bridges: [refuse]\nsysctl: leave\n",
		"daemon: {firewall_recheck: 999999h}\n",
		"daemon: {firewall_recheck: 1ns}\n",
		"firewall: {backend: none, bridged_forward: accept}\nsysctl: {ip_forward: true, ipv6_forward: 'false', bridge_nf_call_iptables: 2}\n",
		"bridges:\n" + strings.Repeat("  [", 1000) + strings.Repeat("]", 1000) + "\n",
		strings.Repeat("a:\n ", 2000) + "b\n",
		strings.Repeat("- ", 5000) + "x\n",
		"\xff\xfe\x00b\x00r",
		"bridges:\n\tbr0: {}\n",
	}
}
