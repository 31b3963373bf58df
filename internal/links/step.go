package links

import (
	"fmt"
	"strings"

	"github.com/virtbridge/virtbridge/internal/change"
)

// Op is the kind of a Step.
type Op string

// The steps Plan returns. Their hook names (Op.Hook) are what the
// Manager's test hook and Fake.FailOn see.
const (
	OpCreate    Op = "create"    // create the bridge (MAC "" for a random one), up, marked ManagedAlias
	OpSetOpts   Op = "set-opts"  // STP and forward delay
	OpPinMAC    Op = "pin-mac"   // set the bridge's MAC, NET_ADDR_SET
	OpUp        Op = "up"        // set Link up
	OpEnslave   Op = "enslave"   // put the uplink into the bridge
	OpMTU       Op = "mtu"       // set the bridge's MTU (Keep: through another value, so the kernel keeps it)
	OpAddAddr   Op = "add-addr"  // add Addr on the bridge
	OpAddRoute  Op = "add-route" // append Route on the bridge
	OpAddNeigh  Op = "add-neigh" // add a permanent neighbour on the bridge
	OpMultipath Op = "multipath" // replace a multipath route, its uplink legs through the bridge
	OpMoveRule  Op = "move-rule" // make a rule name the bridge instead of the uplink
	OpDelRoute  Op = "del-route" // delete Route from the uplink
	OpDelNeigh  Op = "del-neigh" // delete a permanent neighbour from the uplink
	OpDelAddr   Op = "del-addr"  // delete Addr from the uplink
	OpVerify    Op = "verify"    // read the uplink back: nothing movable may be left
	OpTakeRA    Op = "take-ra"   // the bridge takes over the uplink's router advertisements (SLAAC)
	OpProbe     Op = "probe"     // resolve the gateways (Probe) on the bridge
	OpAlias     Op = "alias"     // mark a bridge someone else made with ManagedAlias
	OpNotice    Op = "notice"    // the ForeignBridge notice of this run's changes
	OpAttach    Op = "attach"    // put a VM's tap into its bridge (PlanPort)
	OpTapAlias  Op = "tap-alias" // give a VM's tap its alias (PlanPort)
	OpHandover  Op = "handover"  // hand the bridge over to the uplink's manager (Handover; internal/owner/handoff executes it)
)

// Hook is the name under which the step is announced to the Manager's
// test hook and Fake.FailOn ("" for a step that changes nothing).
func (o Op) Hook() string {
	switch o {
	case OpCreate:
		return "bridge-create"
	case OpSetOpts, OpPinMAC, OpMTU:
		return "bridge-update"
	case OpUp:
		return "link-up"
	case OpEnslave:
		return "enslave"
	case OpAddAddr:
		return "address-add"
	case OpAddRoute:
		return "route-add"
	case OpAddNeigh:
		return "neigh-add"
	case OpMultipath:
		return "route-replace"
	case OpMoveRule:
		return "rule-move"
	case OpDelRoute:
		return "route-del"
	case OpDelNeigh:
		return "neigh-del"
	case OpDelAddr:
		return "address-del"
	case OpAlias, OpTapAlias:
		return "alias-set"
	case OpAttach:
		return "port-attach"
	}
	return ""
}

// Step is one change Plan decided, as plain data. Change, when set, is
// recorded once the step succeeded.
type Step struct {
	Op     Op
	Object string // what the step acts on, as messages name it
	Link   string // the link changed: the bridge or the uplink

	STP, FromSTP         bool   // OpCreate, OpSetOpts
	DelayCS, FromDelayCS uint32 // hundredths of a second
	MAC, FromMAC         string // OpCreate, OpPinMAC
	MTU                  int    // OpMTU
	Keep                 bool   // OpMTU
	Addr                 Addr   // OpAddAddr, OpDelAddr
	Route                Route  // OpAddRoute, OpDelRoute, OpMultipath
	Neigh                Neigh  // OpAddNeigh, OpDelNeigh
	Rule                 Rule   // OpMoveRule
	Probe                []string
	Others               []string // OpNotice: the bridge's ports that are neither uplink nor taps
	Alias, FromAlias     string   // OpTapAlias
	FromMaster           int      // OpAttach: the tap's master before (ifindex; 0 for none)
	Handover             *Handover

	Change *change.Change
}

// String renders the step for tests and logs, e.g. "enslave eth0" or
// "add-route br0: default via 10.77.0.1 metric 100".
func (s Step) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s", s.Op, s.Link)
	switch s.Op {
	case OpCreate:
		mac := s.MAC
		if mac == "" {
			mac = "random"
		}
		fmt.Fprintf(&b, ": stp %s, forward_delay %d, mac %s", onOffText(s.STP), delaySeconds(s.DelayCS), mac)
	case OpSetOpts, OpPinMAC:
		fmt.Fprintf(&b, ": %s -> %s", s.Change.Before, s.Change.After)
	case OpMTU:
		fmt.Fprintf(&b, ": %d", s.MTU)
		if s.Keep {
			b.WriteString(" (keep)")
		}
	case OpProbe:
		b.WriteString(": " + strings.Join(s.Probe, ", "))
	case OpNotice:
		if len(s.Others) > 0 {
			b.WriteString(": others " + strings.Join(s.Others, ", "))
		}
	case OpTapAlias:
		fmt.Fprintf(&b, ": %q -> %q", s.FromAlias, s.Alias)
	case OpAttach:
		fmt.Fprintf(&b, ": %q -> %q", s.Change.Before, s.Change.After)
	case OpHandover:
		b.WriteString(": " + s.Handover.String())
	case OpUp, OpEnslave, OpVerify, OpAlias, OpTakeRA:
	default:
		b.WriteString(": " + s.Object)
	}
	return b.String()
}

// createdChange is the change of creating bridge with mac.
func createdChange(s Step, mac string) change.Change {
	return change.Change{Kind: change.BridgeCreated, Object: s.Link,
		After: fmt.Sprintf("stp %s, forward_delay %d, mac %s, up", onOffText(s.STP), delaySeconds(s.DelayCS), mac)}
}

// mtuChange is the change of the bridge's MTU from old to the step's.
func mtuChange(s Step, old int) change.Change {
	return change.Change{Kind: change.BridgeUpdated, Object: s.Link, Before: fmt.Sprintf("mtu %d", old), After: fmt.Sprintf("mtu %d", s.MTU)}
}

func onOffText(b bool) string {
	if b {
		return "on"
	}
	return "off"
}

func upDownText(b bool) string {
	if b {
		return "up"
	}
	return "down"
}
