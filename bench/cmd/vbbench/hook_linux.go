package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/virtbridge/virtbridge/internal/journal"
)

// hookConfig is the configuration of every hook host: br-a with the
// uplink (addresses and routes move to it), br-b isolated, ip_forward on,
// the default firewall (iptables, VIRTBRIDGE-FWD accepting both bridges).
const hookConfig = `bridges:
  br-a: {uplink: uplink0}
  br-b: {}
sysctl: {ip_forward: 1}
`

// shellBridges is the same set of bridges for bench/shell-hook.sh.
const shellBridges = "br-a:uplink0 br-b:"

// hypervisorScript builds the broken host of the classic how-to, as the
// hook's own tests do (cmd/hook/netns_linux_test.go): the uplink holds the
// host's addresses and default routes, ip_forward is 0,
// bridge-nf-call-iptables is 1, FORWARD drops by policy and ends with a
// REJECT rule. The uplink's veth peer stays in the namespace: no traffic
// is sent.
const hypervisorScript = `
ip link add uplink0 type veth peer name upstream0
ip link set upstream0 up
ip link set uplink0 up
ip addr add 10.77.0.2/24 dev uplink0
ip -6 addr add 2001:db8:77::2/64 dev uplink0 nodad
ip route add default via 10.77.0.1 dev uplink0 metric 100
ip -6 route add default via 2001:db8:77::1 dev uplink0 metric 100
sysctl -qw net.ipv4.ip_forward=0
sysctl -qw net.bridge.bridge-nf-call-iptables=1
iptables -P FORWARD DROP
iptables -A FORWARD -j REJECT --reject-with icmp-host-prohibited
ip6tables -P FORWARD DROP
ip6tables -A FORWARD -j REJECT --reject-with icmp6-adm-prohibited
`

// fixture is one captured hook call (testdata/hook/SHAPE/CALL.*).
type fixture struct {
	args  []string
	stdin []byte
}

func loadFixture(root, shape, call string) (fixture, error) {
	base := filepath.Join(root, "testdata", "hook", shape, call)
	args, err := os.ReadFile(base + ".args")
	if err != nil {
		return fixture{}, err
	}
	xml, err := os.ReadFile(base + ".xml")
	if err != nil {
		return fixture{}, err
	}
	return fixture{args: strings.Split(strings.TrimSpace(string(args)), "\n"), stdin: xml}, nil
}

// candidate is one program measured in a group, on one host.
type candidate struct {
	scenario, name string
	host           *host
	argv           []string
	env            []string
	stdin          []byte
	// before runs untimed before each run (the cold reset).
	before func() error

	wall, cpu []time.Duration
}

// unit is a sequence of candidates that must run in order (started, then
// stopped); rounds rotate units, never split them.
type unit []*candidate

// measure runs warmup unmeasured rounds and then rounds measured ones. In
// each round every unit runs once, round-robin, starting one unit later
// than the round before, so that drift of the machine hits all equally and
// no candidate always runs after the same other one. Any run that exits
// non-zero or writes anything is an error: a failing hook measures nothing.
func measure(ctx context.Context, units []unit, warmup, rounds int, progress func(string, ...any)) error {
	for i := -warmup; i < rounds; i++ {
		if err := ctx.Err(); err != nil {
			return err
		}
		off := (i + warmup) % len(units)
		for k := range units {
			for _, c := range units[(off+k)%len(units)] {
				if c.before != nil {
					if err := c.before(); err != nil {
						return fmt.Errorf("%s / %s: preparing the run: %w", c.scenario, c.name, err)
					}
				}
				r, err := c.host.exec(c.argv, c.env, c.stdin)
				if err != nil {
					return fmt.Errorf("%s / %s: %w", c.scenario, c.name, err)
				}
				if r.Code != 0 || r.Stdout != "" || r.Stderr != "" {
					return fmt.Errorf("%s / %s: exit %d, stdout %q, stderr %q", c.scenario, c.name, r.Code, r.Stdout, r.Stderr)
				}
				if i >= 0 {
					c.wall = append(c.wall, r.Wall)
					c.cpu = append(c.cpu, r.CPU)
				}
			}
		}
		if progress != nil && (i+1)%25 == 0 && i >= 0 {
			progress("round %d/%d", i+1, rounds)
		}
	}
	return nil
}

// hookHost makes a hypervisor host with the hook's config; when journald
// is set a private journald runs in it.
func (b *bencher) hookHost(ctx context.Context, prefix string, journald bool) (*host, error) {
	h, err := newHost(ctx, b.tmp, prefix)
	if err != nil {
		return nil, err
	}
	b.closers = append(b.closers, h.Close)
	if err := os.WriteFile(filepath.Join(h.dir, "virtbridge.yaml"), []byte(hookConfig), 0o644); err != nil {
		return nil, err
	}
	if _, err := h.sh(hypervisorScript); err != nil {
		return nil, err
	}
	if journald {
		if err := h.startJournald(b.journald); err != nil {
			return nil, err
		}
	} else {
		// The one-time "no journald" notice was given long ago on a host
		// that runs without journald.
		marker := filepath.Join(h.dir, "log", "journal.jsonl"+journal.NoticeSuffix)
		if err := os.WriteFile(marker, []byte("said by vbbench\n"), 0o644); err != nil {
			return nil, err
		}
	}
	// The initial rulesets, for the cold reset.
	if _, err := h.sh(fmt.Sprintf("iptables-save >%s/init.v4\nip6tables-save >%s/init.v6", h.dir, h.dir)); err != nil {
		return nil, err
	}
	return h, nil
}

// hook returns a candidate running the built virtbridge hook with a
// fixture, as libvirtd does.
func (b *bencher) hook(h *host, scenario string, f fixture) *candidate {
	return &candidate{scenario: scenario, name: "virtbridge-hook", host: h,
		argv: append([]string{b.bins.hook}, f.args...), env: h.env(), stdin: f.stdin}
}

// shell returns a candidate running bench/shell-hook.sh with a fixture.
func (b *bencher) shell(h *host, scenario string, f fixture) *candidate {
	return &candidate{scenario: scenario, name: "shell hook", host: h,
		argv: append([]string{b.bins.shell}, f.args...), env: append(h.env(), "SHELL_HOOK_BRIDGES="+shellBridges), stdin: f.stdin}
}

// floor returns a candidate running the exec floor with the same
// arguments and stdin.
func (b *bencher) floor(h *host, f fixture) *candidate {
	return &candidate{scenario: "exec floor", name: "Go binary that only exits", host: h,
		argv: append([]string{b.bins.floor}, f.args...), env: h.env(), stdin: f.stdin}
}

// snapshot renders what a host's networking looks like (links, addresses,
// routes, sysctls, both rulesets) without counters or dates, as a hash and
// the text, to prove that a steady run changed nothing.
func snapshot(h *host) (string, string, error) {
	out, err := h.sh(`ip -d link show; ip addr show; ip route show; ip -6 route show
sysctl net.ipv4.ip_forward
iptables-save; ip6tables-save`)
	if err != nil {
		return "", "", err
	}
	out = counters.ReplaceAllString(out, "")
	var keep []string
	for _, l := range strings.Split(out, "\n") {
		// iptables-save comments carry the date; valid_lft counts down.
		if !strings.HasPrefix(l, "#") && !strings.Contains(l, "valid_lft") {
			keep = append(keep, l)
		}
	}
	text := strings.Join(keep, "\n")
	sum := sha256.Sum256([]byte(text))
	return hex.EncodeToString(sum[:8]), text, nil
}

// counters match what changes by itself: rule counters, bridge timers.
var counters = regexp.MustCompile(`\[\d+:\d+\]|\w+_timer +[\d.]+`)

// foreignRules writes an iptables-restore file for family v (4 or 6) with
// n rules in FORWARD that are not virtbridge's (a busy host's: Docker,
// fail2ban, per-VM filters), before the REJECT rule of the broken host.
func foreignRules(path string, v, n int) error {
	var b strings.Builder
	b.WriteString("*filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n")
	for i := range n {
		src, dst := fmt.Sprintf("198.18.%d.%d/32", i/250, i%250+1), fmt.Sprintf("198.19.%d.%d/32", i/250, i%250+1)
		if v == 6 {
			src, dst = fmt.Sprintf("2001:db8:18::%x/128", i+1), fmt.Sprintf("2001:db8:19::%x/128", i+1)
		}
		proto := []string{"tcp", "udp"}[i%2]
		fmt.Fprintf(&b, "-A FORWARD -s %s -d %s -i vnet%d -p %s -m %s --dport %d -j ACCEPT\n", src, dst, i%500, proto, proto, 1024+i%60000)
	}
	if v == 6 {
		b.WriteString("-A FORWARD -j REJECT --reject-with icmp6-adm-prohibited\n")
	} else {
		b.WriteString("-A FORWARD -j REJECT --reject-with icmp-host-prohibited\n")
	}
	b.WriteString("COMMIT\n")
	return os.WriteFile(path, []byte(b.String()), 0o644)
}

// addTaps creates n taps named prefix0.. in the host, up, spread over
// bridges round-robin, with one `ip -batch`. Tap i carries the MAC libvirt
// gives the tap of guest MAC 52:54:00:ab:HI:LO (syntheticVMs' NIC i), so
// that the engine takes it for that NIC's tap.
func addTaps(h *host, prefix string, n int, bridges []string) error {
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, "tuntap add %s%d mode tap\nlink set %s%d address fe:54:00:ab:%02x:%02x master %s up\n",
			prefix, i, prefix, i, i>>8, i&0xff, bridges[i%len(bridges)])
	}
	p := filepath.Join(h.dir, "taps.batch")
	if err := os.WriteFile(p, []byte(b.String()), 0o644); err != nil {
		return err
	}
	_, err := h.sh("ip -batch " + p)
	return err
}

// nativeRules writes an `nft -f` file: an administrator's inet filter
// table whose forward chain drops by policy and holds n rules that are not
// virtbridge's, like foreignRules' (Debian's nftables.service, grown).
func nativeRules(path string, n int) error {
	var b strings.Builder
	b.WriteString("table inet filter {\n\tchain forward {\n\t\ttype filter hook forward priority filter; policy drop;\n")
	for i := range n {
		proto := []string{"tcp", "udp"}[i%2]
		fmt.Fprintf(&b, "\t\tip saddr 198.18.%d.%d ip daddr 198.19.%d.%d iifname \"vnet%d\" %s dport %d accept\n",
			i/250, i%250+1, i/250, i%250+1, i%500, proto, 1024+i%60000)
	}
	b.WriteString("\t}\n}\n")
	return os.WriteFile(path, []byte(b.String()), 0o644)
}
