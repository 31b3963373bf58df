package doctor

import (
	"context"
	"fmt"

	"github.com/virtbridge/virtbridge/internal/config"
	"github.com/virtbridge/virtbridge/internal/owner"
)

// Owners detects, read-only, NetworkManager or systemd-networkd owning a
// link over their D-Bus APIs (handoff.Owners.Owner): ok false when
// neither does.
type Owners interface {
	Owner(ctx context.Context, link string) (o owner.Owner, ok bool, err error)
}

// uplinkManagerOwner reports the network manager that owns b's uplink, as
// the handoff sees it (Sources.Owners). ok is true when a manager owns it
// (a finding was added): the older state-file check (uplink-manager) is
// then moot, the handoff going through that manager.
func uplinkManagerOwner(r *Report, s Sources, b config.Bridge, up Link) (ok bool) {
	if s.Owners == nil || !b.MoveAddresses {
		return false
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*DefaultManagersTimeout)
	defer cancel()
	o, ok, err := s.Owners.Owner(ctx, up.Name)
	if err != nil {
		r.add(Finding{Section: SectionBridges, Check: "uplink-owner", Object: up.Name, Status: Warn,
			Message: "cannot ask NetworkManager or systemd-networkd whether they own it: " + err.Error(),
			Why:     "the handoff asks them too: a VM start or the daemon's bridge creation may fail the same way"})
		return false
	}
	if !ok {
		return false
	}
	f := Finding{Section: SectionBridges, Check: "uplink-owner", Object: up.Name, Status: OK,
		Message: fmt.Sprintf("owned by %s: %s; virtbridge hands bridge %s over through it", managerName(o.Kind), o.Detail, b.Name)}
	switch want := b.Manager; {
	case want == config.ManagerKernel:
		f.Status = Warn
		f.Message = fmt.Sprintf("owned by %s (%s), and bridge %s says manager: kernel", managerName(o.Kind), o.Detail, b.Name)
		f.Why = "the kernel path moves its addresses behind the manager's back: it puts them back on the uplink (or takes the uplink out of the bridge) at its next lease or reload"
		f.Fix = fmt.Sprintf("drop manager: kernel for bridge %s in %s (auto hands it over through %s)", b.Name, s.ConfigPath, managerName(o.Kind))
	case want == config.ManagerNetworkManager && o.Kind != owner.NetworkManager, want == config.ManagerNetworkd && o.Kind != owner.Networkd:
		f.Status = Fail
		f.Message = fmt.Sprintf("owned by %s (%s), and bridge %s says manager: %s", managerName(o.Kind), o.Detail, b.Name, want)
		f.Why = "the handoff asks only the configured manager, which does not own the uplink: every VM start on the bridge is refused"
		f.Fix = fmt.Sprintf("set manager: auto for bridge %s in %s", b.Name, s.ConfigPath)
	}
	r.add(f)
	return true
}

func managerName(k owner.Kind) string {
	if k == owner.Networkd {
		return "systemd-networkd"
	}
	return "NetworkManager"
}
