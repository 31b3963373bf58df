package links

import (
	"fmt"
	"net"
	"strings"

	"github.com/virtbridge/virtbridge/internal/owner"
)

// Snapshot is what the planner (Plan) sees of a network namespace for one
// bridge, and who owns its uplink: plain values, read by the Manager from
// its netlink dumps (Manager.Snapshot) or made by the Fake from its state;
// the owner is filled by internal/owner/handoff from its D-Bus detection. Slices keep the order the kernel dumps them
// in; the IDs index the backend's own copy of each object, so the executor
// sends back to the kernel exactly what it read.
type Snapshot struct {
	// Bridge is the link named like the bridge, nil if there is none.
	Bridge *Link
	// Uplinks are the candidate uplinks: the link named by uplink:, or
	// every link wearing uplink_mac (macCarrier kinds included: the planner
	// leaves them out). Empty when none exists or the bridge has none.
	Uplinks []Link
	// Ports are the existing bridge's ports, read only when the bridge is
	// someone else's (its alias is not ManagedAlias), for the notice.
	Ports []Link

	// Of the uplink (exactly one candidate). Addrs are read when the
	// addresses move or must be checked (move_addresses: false on an
	// uplink that is no port yet); Routes when they move.
	Addrs  []Addr
	Routes []Route
	// Detail tells that Neighs, Rules and Nexthops were read (needDetail).
	Detail bool
	// Neighs are the uplink's neighbour entries, both families.
	Neighs []Neigh
	// Rules are the policy-routing rules naming the uplink (iif, oif).
	Rules []Rule
	// Nexthops are the ids of nexthop objects through the uplink.
	Nexthops []uint32
	// BridgeAddrs and BridgeRoutes are the existing bridge's own, read
	// with the detail: what a run stopped midway already put there.
	BridgeAddrs  []Addr
	BridgeRoutes []Route
	// Clients name the DHCP clients bound to the uplink (dhclient...),
	// read only when a dynamic address would be refused (needClients).
	Clients []string
	// KeepsLeases: the run is virtbridged's, which keeps the DHCPv4 lease
	// of a bridge with manager: virtbridged itself (internal/owner/lease;
	// Manager.KeepsLeases): only then does such a lease move.
	KeepsLeases bool
	// Owner is who manages the uplink, as internal/owner/handoff detected
	// it (NetworkManager or systemd-networkd; owner.Kernel for neither);
	// nil when nobody asked, as in the kernel path's own EnsureBridge:
	// then Plan decides for the kernel path alone.
	Owner *owner.Owner
}

// Link is one link of a Snapshot.
type Link struct {
	Index int
	Name  string
	Kind  string // netlink's kind: "bridge", "device", "veth", "tuntap"...
	MAC   string // lowercase, colon-separated
	Alias string
	// Master names the link's master, "" for none; MasterKind is its kind.
	Master, MasterKind string
	MasterIndex        int
	MTU                int
	Up                 bool
	// Wireless: an 802.11 station (asked only of an uplink that is not a
	// port of the bridge yet).
	Wireless bool
	// TunTap is "tap" or "tun" for a tun/tap device, "" otherwise.
	TunTap string
	// Bridges only: STP on, the forward delay in hundredths of a second,
	// and whether the MAC is pinned (addr_assign_type NET_ADDR_SET; known
	// false when it cannot be told).
	STP       bool
	DelayCS   uint32
	MACPinned bool
	PinKnown  bool
}

// Address flags (IFA_F_*) and route values (RTPROT_*, RTN_*, RT_TABLE_*,
// RT_SCOPE_*) the planner reads, as the kernel numbers them; defined here
// so the planner and the Fake build on every OS.
const (
	ifaTemporary     = 0x01
	ifaNodad         = 0x02
	ifaHomeAddress   = 0x10
	ifaPermanent     = 0x80
	ifaManageTemp    = 0x100
	ifaNoPrefixRoute = 0x200
	ifaMcAutoJoin    = 0x400

	protoKernel = 2
	protoBoot   = 3
	protoStatic = 4
	protoRA     = 9
	rtnUnicast  = 1
	tableMain   = 254
	tableLocal  = 255
	scopeGlobal = 0
	scopeLink   = 253
	scopeHost   = 254
)

// Addr is one address of a link.
type Addr struct {
	ID     int    // index in the backend's dump
	Prefix string // "10.77.0.2/24", "2001:db8::2/64"
	IPv6   bool
	Scope  int
	Flags  int // IFA_F_*
	// SLAAC: the kernel made it from a router advertisement (IFA_PROTO).
	SLAAC bool
	// Lifetimes in seconds; the kernel's "forever" for a permanent one.
	ValidLft, PreferredLft int
}

// movable reports whether the address moves to the bridge: every IPv4
// address, and the global IPv6 ones but the temporary (privacy) ones and
// those the kernel made from router advertisements (SLAAC): those move
// with the RA role, keeping their lifetimes (OpTakeRA, slaac_linux.go).
// Link-local addresses belong to the link.
func (a Addr) movable() bool {
	if !a.IPv6 {
		return true
	}
	ip, _, _ := net.ParseCIDR(a.Prefix)
	return a.Scope == scopeGlobal && ip != nil && !ip.IsLinkLocalUnicast() &&
		a.Flags&ifaTemporary == 0 && !a.SLAAC
}

// network is the address's prefix as a network ("10.77.0.0/24").
func (a Addr) network() string {
	_, n, err := net.ParseCIDR(a.Prefix)
	if err != nil {
		return ""
	}
	return n.String()
}

// Route is one route through the uplink (or the bridge). An IPv6 route
// with ECMP siblings comes as one Route per sibling (Leg >= 0).
type Route struct {
	ID   int // index in the backend's dump
	Leg  int // the sibling of an IPv6 multipath route, -1 for none
	IPv6 bool
	// Dst is "" for a default route, else a prefix ("10.2.0.0/24").
	Dst, Gw, Src string
	Metric       int
	Table        int
	Protocol     int
	Type         int
	Tos          int
	LinkIndex    int // 0 for a multipath route
	// Legs are the nexthops of a multipath route, as dumped.
	Legs []Leg
}

// Leg is one nexthop of a multipath route.
type Leg struct {
	LinkIndex int
	Link      string // its name, for messages
	Gw        string
}

// String renders the route the way `ip route` roughly does.
func (rt Route) String() string {
	var b strings.Builder
	if rt.Dst == "" {
		b.WriteString("default")
	} else {
		b.WriteString(rt.Dst)
	}
	if rt.Gw != "" {
		fmt.Fprintf(&b, " via %s", rt.Gw)
	}
	if rt.Src != "" {
		fmt.Fprintf(&b, " src %s", rt.Src)
	}
	if rt.Metric != 0 {
		fmt.Fprintf(&b, " metric %d", rt.Metric)
	}
	if rt.Table != tableMain && rt.Table != 0 {
		fmt.Fprintf(&b, " table %d", rt.Table)
	}
	if len(rt.Legs) > 0 {
		for _, l := range rt.Legs {
			b.WriteString(" nexthop")
			if l.Gw != "" {
				b.WriteString(" via " + l.Gw)
			}
			b.WriteString(" dev " + l.Link)
		}
	}
	return b.String()
}

// unicast: a route of type unicast (0 is what a request leaves unset).
func (rt Route) unicast() bool { return rt.Type == rtnUnicast || rt.Type == 0 }

// same compares the kernel's key of two routes and their gateway.
func (rt Route) same(o Route) bool {
	return rt.IPv6 == o.IPv6 && rt.Dst == o.Dst && sameIP(rt.Gw, o.Gw) &&
		rt.Metric == o.Metric && rt.Tos == o.Tos && rt.Table == o.Table
}

func sameIP(a, b string) bool {
	if a == "" || b == "" {
		return a == b
	}
	return net.ParseIP(a).Equal(net.ParseIP(b))
}

// Neigh is one neighbour entry of the uplink.
type Neigh struct {
	ID        int
	IP        string
	MAC       string // "" when unresolved
	IPv6      bool
	Permanent bool
	// Resolved: the host reached it (a link-layer address, neither
	// INCOMPLETE nor FAILED).
	Resolved bool
}

func (n Neigh) String() string { return fmt.Sprintf("%s lladdr %s", n.IP, n.MAC) }

// Rule is a policy-routing rule naming the uplink.
type Rule struct {
	ID       int
	Priority int
	Iif, Oif string
	Table    int
}

func (r Rule) String() string {
	s := fmt.Sprintf("pref %d", r.Priority)
	if r.Iif != "" {
		s += " iif " + r.Iif
	}
	if r.Oif != "" {
		s += " oif " + r.Oif
	}
	return s + fmt.Sprintf(" lookup %d", r.Table)
}

// on is the rule with the uplink's name replaced by the bridge's.
func (r Rule) on(from, to string) Rule {
	if r.Iif == from {
		r.Iif = to
	}
	if r.Oif == from {
		r.Oif = to
	}
	return r
}

func cp[T any](v T) *T { return &v }
