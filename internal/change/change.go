// Package change describes one change virtbridge made to the host, so it can
// be reported to the operator and journaled with what was there before.
package change

import "fmt"

// Kind names a type of host change.
type Kind string

// Kinds of host change.
const (
	BridgeCreated  Kind = "bridge-created"
	BridgeUpdated  Kind = "bridge-updated" // an attribute re-applied: STP, delay, MTU, MAC, up
	UplinkEnslaved Kind = "uplink-enslaved"
	AddressMoved   Kind = "address-moved"
	RouteMoved     Kind = "route-moved"
	NeighMoved     Kind = "neighbour-moved" // a permanent (static) ARP/NDP entry
	UplinkProbed   Kind = "uplink-probed"   // the gateway probed through the bridge after a handoff
	RuleMoved      Kind = "rule-moved"      // an ip rule naming the uplink (iif, oif) now names the bridge
	PortAttached   Kind = "port-attached"   // a tap put (back) into its bridge
	// UplinkReleased: `virtbridge release` took the uplink out of its
	// bridge (Before: the bridge), its addresses and routes moved back.
	UplinkReleased Kind = "uplink-released"
	// BridgeDeleted: `virtbridge release` deleted a bridge with no VM tap.
	BridgeDeleted Kind = "bridge-deleted"
	AliasSet      Kind = "alias-set"
	// ClientStopped: virtbridged stopped the DHCP client without a manager
	// bound to an uplink (Before: the process), to keep its lease itself
	// (manager: virtbridged).
	ClientStopped Kind = "dhcp-client-stopped"
	// LeaseKept: virtbridged's own DHCP client holds the bridge's lease
	// (taken over and confirmed, or newly got); LeaseRenewed: it renewed
	// it, the address's lifetime with it; LeaseLost: the lease ended (After:
	// why) and its address left the bridge.
	LeaseKept    Kind = "lease-kept"
	LeaseRenewed Kind = "lease-renewed"
	LeaseLost    Kind = "lease-lost"
	// LeaseReleased: virtbridged keeps a bridge's lease no more (the
	// configuration changed); After says what is left of it and what to
	// do. On an uplink: `virtbridge release` gave the lease back to it.
	LeaseReleased Kind = "lease-released"
	SysctlChanged Kind = "sysctl-changed"
	RuleAdded     Kind = "rule-added"
	RuleRemoved   Kind = "rule-removed"
	ChainCreated  Kind = "chain-created"
	ChainRemoved  Kind = "chain-removed"
	// FirewalldChanged: a setting changed through firewalld's D-Bus API
	// (a bridge put into or taken out of a zone, a zone's forwarding).
	FirewalldChanged Kind = "firewalld-changed"
	// ForeignBridge is no change of its own: it says that a bridge
	// virtbridge did not create was changed by this run (After: how, and
	// which of its ports are neither its uplink nor VM taps), so that the
	// operator is told, not only the journal.
	ForeignBridge Kind = "foreign-bridge-changed"
)

// Change is one change made to the host.
type Change struct {
	Kind   Kind   `json:"kind"`
	Object string `json:"object"` // the link, sysctl or rule changed
	Before string `json:"before,omitempty"`
	After  string `json:"after,omitempty"`
}

func (c Change) String() string {
	switch {
	case c.Before != "" || c.After != "":
		return fmt.Sprintf("%s %s: %q -> %q", c.Kind, c.Object, c.Before, c.After)
	}
	return fmt.Sprintf("%s %s", c.Kind, c.Object)
}
