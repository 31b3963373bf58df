package main

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// TestVMCannotNameWhatTheConfigDoesNot: a VM whose NIC names the host's
// default-route NIC, a configured uplink, lo, another non-bridge link or a
// name that merely resembles the managed bridge gets nothing created,
// enslaved, re-addressed or opened in the firewall: at prepare (which may
// refuse) and at reconnect (which must not fail), the namespace stays byte
// for byte as it was.
func TestVMCannotNameWhatTheConfigDoesNot(t *testing.T) {
	h := newHostileHost(t)
	h.hv.Script(t, "ip link add br-a0 type bridge") // an unmanaged bridge that resembles br-a
	good := oneNIC(t)
	before := h.hv.Dump(t)
	for _, tc := range []struct {
		bridge string
		want   string // the refusal at prepare; "" when the NIC is merely unmanaged
	}{
		{"eth0", `names "eth0" as its bridge, but eth0 is a veth link on this host, not a bridge`},
		{"uplink0", `uplink0 is the uplink of managed bridge br-a, not a bridge: point the NIC at br-a`},
		{"lo", `names "lo" as its bridge: that is the loopback device`},
		{"eth0p", `names "eth0p" as its bridge, but eth0p is a veth link`},
		{"br-a0", ""},
		{"BR-A", ""},
		{"br-a.", ""},
		{"br_a", ""},
	} {
		t.Run(tc.bridge, func(t *testing.T) {
			xml := strings.Replace(good, "<source bridge='br-a'/>", "<source bridge='"+tc.bridge+"'/>", 1)
			r := h.run(t, h.dir, filepath.Join(h.dir, "virtbridge.yaml"), strings.NewReader(xml), "one-nic", "prepare", "begin", "-")
			switch {
			case tc.want == "" && (r.code != 0 || r.stderr != ""):
				t.Errorf("prepare: exit %d stderr %q, want a silent 0 (an unmanaged bridge is left alone)", r.code, r.stderr)
			case tc.want != "" && (r.code != 1 || !strings.Contains(r.stderr, tc.want)):
				t.Errorf("prepare: exit %d stderr %q, want a refusal saying %q", r.code, r.stderr, tc.want)
			}
			r = h.run(t, h.dir, filepath.Join(h.dir, "virtbridge.yaml"), strings.NewReader(xml), "one-nic", "reconnect", "begin", "-")
			if r.code != 0 || (tc.want != "" && !strings.Contains(r.stderr, tc.want)) {
				t.Errorf("reconnect: exit %d stderr %q, want 0 (reconnect never fails) saying %q", r.code, r.stderr, tc.want)
			}
			if after := h.hv.Dump(t); after != before {
				t.Fatalf("a VM on %q changed the host:\n--- before\n%s\n--- after\n%s", tc.bridge, before, after)
			}
		})
	}
	if _, err := os.Stat(filepath.Join(h.dir, "ports.json")); err == nil {
		t.Error("a VM with no managed NIC was recorded in the store")
	}
}

// ifaceArg matches an interface named in an iptables rule.
var ifaceArg = regexp.MustCompile(`(?:^|\s)(?:-i|-o|--physdev-in|--physdev-out)\s+(\S+)`)

// TestChangesNameOnlyManagedThings: a VM with NICs on the managed br-a and
// on the look-alike unmanaged bridge br-a0 is prepared; every firewall rule
// added names only managed bridges, only the configured uplink joins br-a,
// and the default-route NIC eth0, br-a0 and the policy rules are untouched.
func TestChangesNameOnlyManagedThings(t *testing.T) {
	h := newHostileHost(t)
	if err := os.WriteFile(filepath.Join(h.dir, "virtbridge.yaml"), []byte("bridges:\n  br-a: {uplink: uplink0}\n  br-b: {}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	h.hv.Script(t, `
		ip link add br-a0 type bridge
		ip link add veth-x type veth peer name veth-y
		ip link set veth-x master br-a0`)
	untouched := func() string {
		var b strings.Builder
		for _, cmd := range [][]string{
			{"ip", "link", "show", "dev", "eth0"}, {"ip", "link", "show", "dev", "eth0p"}, {"ip", "link", "show", "dev", "br-a0"},
			{"ip", "link", "show", "master", "br-a0"}, {"ip", "addr", "show", "dev", "eth0"},
			{"ip", "route", "show", "table", "all", "dev", "eth0"}, {"ip", "rule", "show"}, {"ip", "-6", "rule", "show"},
		} {
			b.WriteString("$ " + strings.Join(cmd, " ") + "\n" + h.hv.Run(t, cmd...))
		}
		return b.String()
	}
	rules := func() []string {
		return append(strings.Split(h.hv.Run(t, "iptables-nft", "-S"), "\n"), strings.Split(h.hv.Run(t, "ip6tables-nft", "-S"), "\n")...)
	}
	beforeLinks, beforeRules := untouched(), rules()

	xml := withNICs(oneNIC(t), bridgeNIC("52:54:00:aa:01:02", "br-a0"))
	if r := h.run(t, h.dir, filepath.Join(h.dir, "virtbridge.yaml"), strings.NewReader(xml), "one-nic", "prepare", "begin", "-"); r.code != 0 {
		t.Fatalf("prepare: %+v", r)
	}
	if after := untouched(); after != beforeLinks {
		t.Errorf("prepare touched links it does not manage:\n--- before\n%s\n--- after\n%s", beforeLinks, after)
	}
	ports := h.hv.Run(t, "ip", "-o", "link", "show", "master", "br-a")
	if n := strings.Count(strings.TrimSpace(ports), "\n") + 1; n != 1 || !strings.Contains(ports, ": uplink0@") {
		t.Errorf("ports of br-a, want uplink0 alone:\n%s", ports)
	}
	var added, named []string
	for _, rule := range rules() {
		if rule == "" || slices.Contains(beforeRules, rule) {
			continue
		}
		added = append(added, rule)
		for _, m := range ifaceArg.FindAllStringSubmatch(rule, -1) {
			named = append(named, m[1])
			if m[1] != "br-a" && m[1] != "br-b" {
				t.Errorf("added rule names %q, which is no managed bridge: %s", m[1], rule)
			}
		}
	}
	t.Logf("rules added:\n%s", strings.Join(added, "\n"))
	if !slices.Contains(named, "br-a") || !slices.Contains(named, "br-b") {
		t.Errorf("the rules added name %q, want both managed bridges", named)
	}
	for _, rule := range beforeRules {
		if rule != "" && !slices.Contains(rules(), rule) {
			t.Errorf("prepare removed a rule it does not own: %s", rule)
		}
	}
}

// TestVMCannotEnslaveAHostLinkAsItsTap: a VM whose NIC on the managed br-a
// names, as its <target dev>, a link that is not its tap (the host's
// default-route NIC, a container's veth in another bridge, the VXLAN port
// of an unmanaged bridge, that bridge itself, a VPN's tap, another VM's
// tap, a tun device) gets nothing enslaved or renamed: at prepare (the
// taps do not exist yet: an existing link of that name is refused, exit
// 1), at started (checked and left alone with a warning, exit 0) and at
// reconnect (refused, exit 0), the namespace stays byte for byte as it
// was. br-a exists beforehand, so an accepted tap would visibly join it.
func TestVMCannotEnslaveAHostLinkAsItsTap(t *testing.T) {
	h := newHostileHost(t)
	good := oneNIC(t)
	cfg := filepath.Join(h.dir, "virtbridge.yaml")
	if r := h.run(t, h.dir, cfg, strings.NewReader(good), "one-nic", "prepare", "begin", "-"); r.code != 0 {
		t.Fatalf("good prepare: %+v", r)
	}
	h.hv.Script(t, `
		ip link add docker0 type bridge
		ip link add ctr0 type veth peer name ctr0p
		ip link set ctr0 master docker0
		ip link add br-x type bridge
		ip link add vx0 type vxlan id 5 dstport 4789
		ip link set vx0 master br-x
		ip tuntap add dev tap0 mode tap
		ip link set tap0 address 02:00:00:00:00:99 up
		ip tuntap add dev vnet7 mode tap
		ip link set vnet7 address fe:54:00:bb:00:07 master br-x alias vm:other
		ip tuntap add dev tun0 mode tun`)
	h.settle(t)
	before := h.hv.Dump(t)
	for _, tc := range []struct {
		tap, started string // started: what the check at started says
	}{
		{"eth0", "eth0 is a veth link, not a tun/tap device in tap mode"},
		{"ctr0", "ctr0 is a veth link, not a tun/tap device in tap mode"},
		{"vx0", "vx0 is a vxlan link, not a tun/tap device in tap mode"},
		{"br-x", "br-x is a bridge link, not a tun/tap device in tap mode"},
		{"tap0", "has MAC 02:00:00:00:00:99, but libvirt gives this NIC's tap the MAC fe:54:00:aa:01:01"},
		{"vnet7", "has MAC fe:54:00:bb:00:07, but libvirt gives this NIC's tap the MAC fe:54:00:aa:01:01"},
		{"tun0", "tun0 is a tun/tap device in tun mode, not a tun/tap device in tap mode"},
	} {
		t.Run(tc.tap, func(t *testing.T) {
			xml := strings.Replace(good, "<source bridge='br-a'/>", "<source bridge='br-a'/>\n      <target dev='"+tc.tap+"'/>", 1)
			if xml == good {
				t.Fatal("no <source bridge='br-a'/> in the fixture")
			}
			r := h.run(t, h.dir, cfg, strings.NewReader(xml), "one-nic", "prepare", "begin", "-")
			if want := "names <target dev='" + tc.tap + "'/>, but " + tc.tap + " already exists on this host"; r.code != 1 || !strings.Contains(r.stderr, want) {
				t.Errorf("prepare: exit %d stderr %q, want 1 and %q", r.code, r.stderr, want)
			}
			t.Logf("prepare: %s", strings.TrimSpace(r.stderr))
			for _, op := range []string{"started", "reconnect"} {
				r := h.run(t, h.dir, cfg, strings.NewReader(xml), "one-nic", op, "begin", "-")
				if r.code != 0 || !strings.Contains(r.stderr, tc.started) || !strings.Contains(r.stderr, "remove <target dev='"+tc.tap+"'/>") {
					t.Errorf("%s: exit %d stderr %q, want 0 and %q", op, r.code, r.stderr, tc.started)
				}
				t.Logf("%s: %s", op, strings.TrimSpace(r.stderr))
			}
			if after := h.hv.Dump(t); after != before {
				t.Fatalf("a VM naming %s as its tap changed the host:\n--- before\n%s\n--- after\n%s", tc.tap, before, after)
			}
		})
	}
}
