// Package config loads and validates virtbridge's YAML configuration. Every
// error names the file and line, and unknown keys are errors: a typo must not
// silently fall back to a default on a hypervisor.
package config

import (
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/virtbridge/virtbridge/internal/names"
	"github.com/virtbridge/virtbridge/internal/paths"
)

// DefaultPath is where the hook and the daemon look for their configuration.
const DefaultPath = "/etc/virtbridge/virtbridge.yaml"

// EnvPath names the environment variable that overrides DefaultPath (libvirtd
// passes the hook no flags).
const EnvPath = "VIRTBRIDGE_CONFIG"

// maxSize bounds the configuration file; a larger one is refused.
const maxSize = 1 << 20

// loopback is the one link that can be neither a bridge nor an uplink.
const loopback = "lo"

// Toggle is a host setting virtbridge may force on, force off, or leave alone.
type Toggle int8

// Toggle values.
const (
	Leave Toggle = iota
	Off
	On
)

func (t Toggle) String() string {
	switch t {
	case Off:
		return "0"
	case On:
		return "1"
	}
	return "leave"
}

// Bridge is one managed bridge.
type Bridge struct {
	Name string
	// Uplink is the NIC to enslave, by name; UplinkMAC selects it by MAC
	// instead. Both empty: an isolated bridge.
	Uplink        string
	UplinkMAC     net.HardwareAddr
	STP           bool
	ForwardDelay  int // seconds
	MTU           int // 0: leave the MTU alone
	MoveAddresses bool
	// Create says when virtbridge makes the bridge: CreateAtStart (the
	// daemon at start-up and on drift, `virtbridge apply`, `doctor --fix`,
	// and any VM's prepare) or CreateOnDemand (only at the prepare of a VM
	// on it, as before).
	Create Create
	// Manager says who hands the uplink over (manager:); ManagerAuto
	// detects it.
	Manager Manager
	// ProbeTarget is the address probed through the bridge after the
	// uplink's addresses moved (nil: the gateways of the default routes);
	// ProbeTimeout how long to wait for it (0: 3 s; ProbeOff: no probe).
	ProbeTarget  net.IP
	ProbeTimeout time.Duration
	Line         int // where the bridge is defined, for messages
	// UplinkLine is the line of its uplink: or uplink_mac: key (0: none).
	UplinkLine int
}

// ProbeOff is the ProbeTimeout of a bridge whose handoff is not probed
// (probe_timeout: 0).
const ProbeOff time.Duration = -1

// AtStart reports whether the bridge is made whether or not a VM uses it.
func (b Bridge) AtStart() bool { return b.Create != CreateOnDemand }

// HasUplink reports whether the bridge enslaves a NIC.
func (b Bridge) HasUplink() bool { return b.Uplink != "" || b.UplinkMAC != nil }

// UplinkString names the uplink for people: its name or its MAC.
func (b Bridge) UplinkString() string {
	if b.Uplink != "" {
		return b.Uplink
	}
	if b.UplinkMAC != nil {
		return b.UplinkMAC.String()
	}
	return ""
}

// Sysctl holds the kernel settings virtbridge enforces.
type Sysctl struct {
	IPForward             Toggle
	IPv6Forward           Toggle
	BridgeNFCallIPTables  Toggle
	BridgeNFCallIP6Tables Toggle
}

// Firewall holds the firewall settings.
type Firewall struct {
	Backend        FirewallBackend
	BridgedForward Forward
	// NativeTables is firewall.native_tables: whether virtbridge may
	// insert its accept rules into the administrator's native nftables
	// forward chains (accept), or must refuse instead (leave).
	NativeTables Forward
	// FirewalldZone is firewall.firewalld_zone: the zone managed bridges
	// go into when firewalld runs; "" means each bridge's uplink's zone.
	FirewalldZone string
}

// Daemon holds settings of virtbridged.
type Daemon struct {
	// FirewallRecheck is how often the daemon re-verifies the firewall.
	FirewallRecheck time.Duration
	// MetricsListen is the address virtbridged serves Prometheus metrics
	// on (/metrics), from daemon.metrics_listen: "" (the default) serves
	// none; a port alone (":9473") binds localhost only (127.0.0.1); a
	// named address ("192.0.2.10:9473", "[::]:9473") binds that.
	MetricsListen string
}

// DefaultMetricsPort is the port the documentation suggests for
// daemon.metrics_listen: not among the well-known exporters' ports (the
// libvirt exporters use 9177, node_exporter 9100).
const DefaultMetricsPort = 9473

// Config is a validated configuration.
type Config struct {
	Path             string
	Bridges          []Bridge // sorted by name
	UnmanagedBridges Unmanaged
	OnFailure        FailureMode
	Sysctl           Sysctl
	Firewall         Firewall
	Daemon           Daemon
	// HookTimeout is the hook's overall deadline, from its start: past it
	// the hook gives up rather than keep libvirtd waiting.
	HookTimeout time.Duration
}

// Bridge returns the managed bridge called name.
func (c *Config) Bridge(name string) (Bridge, bool) {
	i, ok := slices.BinarySearchFunc(c.Bridges, name, func(b Bridge, n string) int { return strings.Compare(b.Name, n) })
	if !ok {
		return Bridge{}, false
	}
	return c.Bridges[i], true
}

// Default returns the configuration used for keys a file leaves out.
func Default() *Config {
	return &Config{
		UnmanagedBridges: IgnoreUnmanaged,
		OnFailure:        RefuseOnFailure,
		Sysctl:           Sysctl{IPForward: On},
		Firewall:         Firewall{Backend: BackendIPTables, BridgedForward: AcceptForward},
		Daemon:           Daemon{FirewallRecheck: 30 * time.Second},
		HookTimeout:      DefaultHookTimeout,
	}
}

// PathFromEnv returns the configuration path: $VIRTBRIDGE_CONFIG if set,
// DefaultPath otherwise.
func PathFromEnv() string {
	if p := os.Getenv(EnvPath); p != "" {
		return p
	}
	return DefaultPath
}

// Load reads and validates the file at path. A missing file is an error,
// and so is one that is no regular file once symlinks are followed (a
// directory, a FIFO, a symlink to /dev/zero).
func Load(path string) (*Config, error) {
	data, err := paths.ReadRegular(path, maxSize, true)
	if err != nil {
		return nil, fmt.Errorf("reading config: %w", err)
	}
	return Parse(path, data)
}

// Error is a configuration error at a line of a file.
type Error struct {
	File string
	Line int
	Msg  string
}

func (e *Error) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg)
	}
	return fmt.Sprintf("%s: %s", e.File, e.Msg)
}

// Parse validates data, the contents of the file called file. It returns
// every error found, joined, each an *Error.
func Parse(file string, data []byte) (*Config, error) {
	p := &parser{file: file, cfg: Default()}
	p.cfg.Path = file
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, &Error{File: file, Msg: strings.TrimPrefix(err.Error(), "yaml: ")}
	}
	if doc.Kind == 0 || len(doc.Content) == 0 {
		return nil, &Error{File: file, Msg: "the config is empty (no YAML document, only blanks or comments); " +
			"write `bridges: {}` to manage no bridge, or start from packaging/virtbridge.yaml"}
	}
	// Refuse anchors, aliases and duplicate keys on the raw node tree,
	// before anything reads a value: an alias is never expanded.
	var anchors []*yaml.Node
	p.structure(doc.Content[0], map[*yaml.Node]bool{}, &anchors)
	if len(anchors) > 0 {
		n, what := anchors[0], "anchor &"+anchors[0].Anchor
		if n.Kind == yaml.AliasNode {
			what = "alias *" + n.Value
		}
		more := ""
		if len(anchors) > 1 {
			more = fmt.Sprintf(" (and %d more)", len(anchors)-1)
		}
		p.errorf(n, "YAML %s%s: anchors and aliases are not allowed in the config; write the values out", what, more)
	}
	if len(p.errs) > 0 {
		return nil, errors.Join(p.errs...)
	}
	p.top(doc.Content[0])
	p.validate()
	if len(p.errs) > 0 {
		return nil, errors.Join(p.errs...)
	}
	return p.cfg, nil
}

type parser struct {
	file string
	cfg  *Config
	errs []error
}

func (p *parser) errorf(n *yaml.Node, format string, args ...any) {
	line := 0
	if n != nil {
		line = n.Line
	}
	p.errs = append(p.errs, &Error{File: p.file, Line: line, Msg: fmt.Sprintf(format, args...)})
}

// mapping walks a YAML mapping, calling the handler of each key and
// reporting keys without one.
func (p *parser) mapping(n *yaml.Node, where string, handlers map[string]func(v *yaml.Node)) {
	if n.Kind != yaml.MappingNode {
		p.errorf(n, "%s must be a mapping", where)
		return
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		h, ok := handlers[k.Value]
		if !ok {
			known := make([]string, 0, len(handlers))
			for key := range handlers {
				known = append(known, key)
			}
			slices.Sort(known)
			p.errorf(k, "unknown key %q in %s (known keys: %s)", k.Value, where, strings.Join(known, ", "))
			continue
		}
		h(v) // keys are unique: structure refused duplicates
	}
}

// structure refuses what a virtbridge config never needs and a hostile or
// careless one could abuse: YAML anchors and aliases, collected in anchors
// (an alias bomb expands exponentially; nothing here follows an alias),
// and a key given twice in one mapping (which of the two would win?). seen
// guards against a node reached twice.
func (p *parser) structure(n *yaml.Node, seen map[*yaml.Node]bool, anchors *[]*yaml.Node) {
	if seen[n] {
		return
	}
	seen[n] = true
	if n.Kind == yaml.AliasNode || n.Anchor != "" {
		*anchors = append(*anchors, n)
		if n.Kind == yaml.AliasNode {
			return
		}
	}
	if n.Kind == yaml.MappingNode {
		first := map[string]int{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := n.Content[i]
			if line, dup := first[k.Value]; dup && k.Kind == yaml.ScalarNode {
				p.errorf(k, "key %q given twice, at lines %d and %d; keep one", k.Value, line, k.Line)
				continue
			}
			first[k.Value] = k.Line
		}
	}
	for _, c := range n.Content {
		p.structure(c, seen, anchors)
	}
}

func (p *parser) top(n *yaml.Node) {
	p.mapping(n, "the top level", map[string]func(*yaml.Node){
		"bridges": p.bridges,
		"unmanaged_bridges": func(v *yaml.Node) {
			p.cfg.UnmanagedBridges = choose(p, v, "unmanaged_bridges", IgnoreUnmanaged, RefuseUnmanaged)
		},
		"on_failure":   func(v *yaml.Node) { p.cfg.OnFailure = choose(p, v, "on_failure", RefuseOnFailure, WarnOnFailure) },
		"sysctl":       p.sysctl,
		"firewall":     p.firewall,
		"daemon":       p.daemon,
		"hook_timeout": p.hookTimeout,
	})
}

func (p *parser) bridges(n *yaml.Node) {
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return
	}
	if n.Kind != yaml.MappingNode {
		p.errorf(n, "bridges must be a mapping of bridge name to settings")
		return
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		b := Bridge{Name: k.Value, MoveAddresses: true, Create: CreateAtStart, Line: k.Line}
		if err := names.Ifname(k.Value); err != nil {
			p.errorf(k, "bridge name: %v", err)
		} else if k.Value == loopback {
			p.errorf(k, "bridge name %q is the loopback device, never a bridge; choose another name", k.Value)
		}
		if !(v.Kind == yaml.ScalarNode && v.Tag == "!!null") {
			where := fmt.Sprintf("bridge %q", b.Name)
			p.mapping(v, where, map[string]func(*yaml.Node){
				"uplink": func(v *yaml.Node) {
					b.Uplink, b.UplinkLine = p.str(v, "uplink"), v.Line
					if err := names.Ifname(b.Uplink); err != nil {
						p.errorf(v, "uplink of bridge %q: %v", b.Name, err)
					} else if b.Uplink == loopback {
						p.errorf(v, "uplink of bridge %q is %q, the loopback device, which cannot be enslaved; name the host's NIC", b.Name, loopback)
					}
				},
				"uplink_mac": func(v *yaml.Node) {
					mac, err := names.UnicastMAC(p.str(v, "uplink_mac"))
					b.UplinkLine = v.Line
					if err != nil {
						p.errorf(v, "uplink_mac of bridge %q: %v", b.Name, err)
					}
					b.UplinkMAC = mac
				},
				"stp":            func(v *yaml.Node) { b.STP = p.boolean(v, "stp") },
				"forward_delay":  func(v *yaml.Node) { b.ForwardDelay = p.integer(v, "forward_delay", 0, 30) },
				"mtu":            func(v *yaml.Node) { b.MTU = p.integer(v, "mtu", 68, 65535) },
				"move_addresses": func(v *yaml.Node) { b.MoveAddresses = p.boolean(v, "move_addresses") },
				"create":         func(v *yaml.Node) { b.Create = choose(p, v, "create", CreateAtStart, CreateOnDemand) },
				"probe_target": func(v *yaml.Node) {
					if b.ProbeTarget = net.ParseIP(p.str(v, "probe_target")); b.ProbeTarget == nil {
						p.errorf(v, "probe_target of bridge %q: want an IP address, like 192.0.2.1 (got %q)", b.Name, v.Value)
					}
				},
				"probe_timeout": func(v *yaml.Node) {
					dur, err := time.ParseDuration(p.str(v, "probe_timeout"))
					switch {
					case err != nil || dur < 0 || dur > 60*time.Second || dur > 0 && dur < 100*time.Millisecond:
						p.errorf(v, "probe_timeout of bridge %q: want 0 (no probe) or a duration between 100ms and 60s, like 3s (got %q)", b.Name, v.Value)
					case dur == 0:
						b.ProbeTimeout = ProbeOff
					default:
						b.ProbeTimeout = dur
					}
				},
				"manager": func(v *yaml.Node) {
					b.Manager = choose(p, v, "manager", ManagerAuto, ManagerNetworkManager, ManagerNetworkd, ManagerKernel, ManagerVirtbridged)
				},
			})
			if b.Uplink != "" && b.UplinkMAC != nil {
				p.errorf(k, "bridge %q sets both uplink and uplink_mac; keep one", b.Name)
			}
			if b.STP && b.ForwardDelay < 2 {
				p.errorf(k, "bridge %q: with stp: true the kernel needs forward_delay between 2 and 30 seconds", b.Name)
			}
			if b.Manager == ManagerVirtbridged && (b.Create == CreateOnDemand || !b.MoveAddresses) {
				p.errorf(k, "bridge %q: manager: virtbridged has virtbridged keep the uplink's lease on the bridge it makes at start; "+
					"it needs create: at_start and move_addresses: true", b.Name)
			}
		}
		p.cfg.Bridges = append(p.cfg.Bridges, b)
	}
	slices.SortFunc(p.cfg.Bridges, func(a, b Bridge) int { return strings.Compare(a.Name, b.Name) })
}

func (p *parser) sysctl(n *yaml.Node) {
	s := &p.cfg.Sysctl
	p.mapping(n, "sysctl", map[string]func(*yaml.Node){
		"ip_forward":               func(v *yaml.Node) { s.IPForward = p.toggle(v, "ip_forward") },
		"ipv6_forward":             func(v *yaml.Node) { s.IPv6Forward = p.toggle(v, "ipv6_forward") },
		"bridge_nf_call_iptables":  func(v *yaml.Node) { s.BridgeNFCallIPTables = p.toggle(v, "bridge_nf_call_iptables") },
		"bridge_nf_call_ip6tables": func(v *yaml.Node) { s.BridgeNFCallIP6Tables = p.toggle(v, "bridge_nf_call_ip6tables") },
	})
}

func (p *parser) firewall(n *yaml.Node) {
	f := &p.cfg.Firewall
	p.mapping(n, "firewall", map[string]func(*yaml.Node){
		"backend": func(v *yaml.Node) {
			f.Backend = choose(p, v, "backend", BackendIPTables, BackendIPTablesNFT, BackendIPTablesLegacy, BackendNone)
		},
		"bridged_forward": func(v *yaml.Node) { f.BridgedForward = choose(p, v, "bridged_forward", AcceptForward, LeaveForward) },
		"native_tables":   func(v *yaml.Node) { f.NativeTables = choose(p, v, "native_tables", AcceptForward, LeaveForward) },
		"firewalld_zone": func(v *yaml.Node) {
			z := p.str(v, "firewalld_zone")
			if z == "" || strings.IndexFunc(z, func(r rune) bool {
				return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_", r))
			}) >= 0 || len(z) > 17 {
				p.errorf(v, "firewalld_zone: want a firewalld zone name (letters, digits, - and _, at most 17 characters), got %q", v.Value)
				return
			}
			f.FirewalldZone = z
		},
	})
}

func (p *parser) daemon(n *yaml.Node) {
	d := &p.cfg.Daemon
	p.mapping(n, "daemon", map[string]func(*yaml.Node){
		"firewall_recheck": func(v *yaml.Node) {
			dur, err := time.ParseDuration(p.str(v, "firewall_recheck"))
			if err != nil || dur < time.Second || dur > 24*time.Hour {
				p.errorf(v, "firewall_recheck: want a duration between 1s and 24h, like 30s (got %q)", v.Value)
				return
			}
			d.FirewallRecheck = dur
		},
		"metrics_listen": func(v *yaml.Node) {
			addr, err := metricsAddr(p.str(v, "metrics_listen"))
			if err != nil {
				p.errorf(v, "metrics_listen: %v", err)
				return
			}
			d.MetricsListen = addr
		},
	})
}

func (p *parser) validate() {
	owner := map[string]Bridge{}
	for _, b := range p.cfg.Bridges {
		if !b.HasUplink() {
			continue
		}
		key := b.UplinkString()
		if o, ok := owner[key]; ok {
			p.errs = append(p.errs, sameUplinkError(p.file, key, o, b))
			continue
		}
		owner[key] = b
		if _, isBridge := p.cfg.Bridge(b.Uplink); isBridge {
			p.errs = append(p.errs, &Error{File: p.file, Line: b.UplinkLine,
				Msg: fmt.Sprintf("uplink %q of bridge %q is itself a managed bridge", b.Uplink, b.Name)})
		}
	}
}

// sameUplinkError refuses the NIC nic given to bridge b after bridge o,
// at b's uplink line, naming o's.
func sameUplinkError(file, nic string, o, b Bridge) *Error {
	return &Error{File: file, Line: b.UplinkLine,
		Msg: fmt.Sprintf("uplink %q of bridge %q is already the uplink of bridge %q (line %d); "+
			"a NIC can be enslaved to one bridge only: keep one of the two lines", nic, b.Name, o.Name, o.UplinkLine)}
}

func (p *parser) scalar(v *yaml.Node, key string) bool {
	if v.Kind != yaml.ScalarNode {
		p.errorf(v, "%s must be a single value", key)
		return false
	}
	return true
}

func (p *parser) str(v *yaml.Node, key string) string {
	if !p.scalar(v, key) {
		return ""
	}
	return v.Value
}

func (p *parser) boolean(v *yaml.Node, key string) bool {
	if !p.scalar(v, key) {
		return false
	}
	switch v.Value {
	case "true":
		return true
	case "false":
		return false
	}
	p.errorf(v, "%s must be true or false, not %q", key, v.Value)
	return false
}

func (p *parser) integer(v *yaml.Node, key string, lo, hi int) int {
	if !p.scalar(v, key) {
		return 0
	}
	i, err := strconv.Atoi(v.Value)
	if err != nil || i < lo || i > hi {
		p.errorf(v, "%s must be a whole number from %d to %d, not %q", key, lo, hi, v.Value)
		return 0
	}
	return i
}

func (p *parser) toggle(v *yaml.Node, key string) Toggle {
	switch p.str(v, key) {
	case "leave":
		return Leave
	case "0", "false":
		return Off
	case "1", "true":
		return On
	}
	p.errorf(v, "%s must be leave, 0 or 1 (or false/true), not %q", key, v.Value)
	return Leave
}

// Bounds and default of hook_timeout. libvirtd waits for the hook without
// a limit of its own, holding the VM's job meanwhile; 20 s leaves room for
// iptables on a big ruleset and a busy host lock, and is still short
// enough that a stuck hook shows as an error, not a hung `virsh start`.
const (
	DefaultHookTimeout = 20 * time.Second
	MinHookTimeout     = time.Second
	MaxHookTimeout     = 5 * time.Minute
)

func (p *parser) hookTimeout(v *yaml.Node) {
	dur, err := time.ParseDuration(p.str(v, "hook_timeout"))
	if err != nil || dur < MinHookTimeout || dur > MaxHookTimeout {
		p.errorf(v, "hook_timeout: want a duration between %v and %v, like 20s (got %q)", MinHookTimeout, MaxHookTimeout, v.Value)
		return
	}
	p.cfg.HookTimeout = dur
}
