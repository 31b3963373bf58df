package config

import (
	"fmt"
	"net"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Unmanaged is what the hook does with a VM NIC on a bridge the
// configuration does not manage (unmanaged_bridges).
type Unmanaged int8

// Unmanaged values.
const (
	IgnoreUnmanaged Unmanaged = iota // leave the NIC alone
	RefuseUnmanaged                  // refuse the VM's start
)

func (u Unmanaged) String() string {
	if u == RefuseUnmanaged {
		return "refuse"
	}
	return "ignore"
}

// FailureMode is what the hook does when the host cannot be made right
// (on_failure).
type FailureMode int8

// FailureMode values.
const (
	RefuseOnFailure FailureMode = iota // refuse the VM's start
	WarnOnFailure                      // report it and let the VM start
)

func (m FailureMode) String() string {
	if m == WarnOnFailure {
		return "warn"
	}
	return "refuse"
}

// FirewallBackend is firewall.backend: which iptables variant virtbridge
// keeps its chain in, or none. Its text is what the firewall backend is
// given.
type FirewallBackend string

// FirewallBackend values.
const (
	BackendIPTables       FirewallBackend = "iptables" // detect the nf_tables or legacy variant
	BackendIPTablesNFT    FirewallBackend = "iptables-nft"
	BackendIPTablesLegacy FirewallBackend = "iptables-legacy"
	BackendNone           FirewallBackend = "none" // leave the firewall alone
)

func (b FirewallBackend) String() string { return string(b) }

// Forward is firewall.bridged_forward: whether virtbridge accepts the
// bridged traffic of managed bridges in FORWARD.
type Forward int8

// Forward values.
const (
	AcceptForward Forward = iota // accept it in virtbridge's own chain
	LeaveForward                 // leave FORWARD to the host's firewall
)

func (f Forward) String() string {
	if f == LeaveForward {
		return "leave"
	}
	return "accept"
}

// Create is a bridge's create: when virtbridge makes it.
type Create int8

// Create values.
const (
	CreateAtStart  Create = iota // at the daemon's start, on drift, by apply, and at any VM's prepare
	CreateOnDemand               // only at the prepare of a VM on it
)

func (c Create) String() string {
	if c == CreateOnDemand {
		return "on_demand"
	}
	return "at_start"
}

// Manager is a bridge's manager: who hands the uplink over to the bridge.
type Manager int8

// Manager values.
const (
	// ManagerAuto detects the uplink's owner: static addresses take the
	// kernel path; a dynamic address held by a DHCP client without a
	// manager is refused (see README, "The uplink's owner").
	ManagerAuto           Manager = iota
	ManagerNetworkManager         // NetworkManager owns the uplink
	ManagerNetworkd               // systemd-networkd owns the uplink
	// ManagerKernel forces the kernel path: every address moves over
	// netlink as a static one (without lifetime), dynamic ones included.
	ManagerKernel
	// ManagerVirtbridged is the opt-in for an uplink whose lease a DHCP
	// client without a manager holds: virtbridged moves the address over
	// the kernel path, stops that client and keeps the lease on the bridge
	// with a DHCP client of its own (internal/owner/lease). The hook
	// refuses such a bridge it would have to make itself.
	ManagerVirtbridged
)

func (m Manager) String() string {
	switch m {
	case ManagerNetworkManager:
		return "networkmanager"
	case ManagerNetworkd:
		return "networkd"
	case ManagerKernel:
		return "kernel"
	case ManagerVirtbridged:
		return "virtbridged"
	}
	return "auto"
}

// choose returns the one of choices whose text v holds; otherwise it
// records an error naming key and the choices, and returns the first.
func choose[T fmt.Stringer](p *parser, v *yaml.Node, key string, choices ...T) T {
	s := p.str(v, key)
	names := make([]string, len(choices))
	for i, c := range choices {
		if c.String() == s {
			return c
		}
		names[i] = c.String()
	}
	p.errorf(v, "%s must be one of %s, not %q", key, strings.Join(names, ", "), s)
	return choices[0]
}

// metricsAddr checks daemon.metrics_listen and returns the address to
// bind: a port alone (":9473" or "9473") means localhost only.
func metricsAddr(s string) (string, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return "", nil
	}
	if !strings.Contains(s, ":") {
		s = ":" + s
	}
	host, port, err := net.SplitHostPort(s)
	n, perr := strconv.Atoi(port)
	if err != nil || perr != nil || n < 1 || n > 65535 {
		return "", fmt.Errorf("want [HOST]:PORT with a port from 1 to 65535, like :%d (localhost) or 192.0.2.10:%d (got %q)",
			DefaultMetricsPort, DefaultMetricsPort, s)
	}
	if host == "" {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port), nil
}
