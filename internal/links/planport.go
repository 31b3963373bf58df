package links

import (
	"github.com/virtbridge/virtbridge/internal/change"
	"github.com/virtbridge/virtbridge/internal/desired"
)

// PlanPort makes every decision of EnsurePort for port p and the tap's
// alias: tap is the link p.Tap names and br the one p.Bridge names, nil
// when absent. It refuses, before any change, a missing tap, a link that
// cannot be the VM's tap (checkTap), a missing bridge or a link of its
// name that is no bridge; otherwise it returns the steps that put the tap
// into the bridge and give it alias, none when they are done. It is pure.
func PlanPort(p desired.Port, alias string, tap, br *Link) ([]Step, error) {
	if p.Tap == "" || tap == nil {
		return nil, tapMissingError(p)
	}
	if err := checkTap(p, tapWhat(tap.Kind, tap.TunTap == "tap"), tap.MAC); err != nil {
		return nil, err
	}
	if br == nil {
		return nil, bridgeMissingError(p)
	}
	if br.Kind != "bridge" {
		return nil, notBridgeError(p.Bridge, br.Kind)
	}
	var steps []Step
	if tap.Master != p.Bridge {
		steps = append(steps, Step{Op: OpAttach, Object: p.Tap, Link: p.Tap, FromMaster: tap.MasterIndex,
			Change: &change.Change{Kind: change.PortAttached, Object: p.Tap, Before: tap.Master, After: p.Bridge}})
	}
	if tap.Alias != alias {
		steps = append(steps, Step{Op: OpTapAlias, Object: p.Tap, Link: p.Tap, Alias: alias, FromAlias: tap.Alias,
			Change: &change.Change{Kind: change.AliasSet, Object: p.Tap, Before: tap.Alias, After: alias}})
	}
	return steps, nil
}
