package doctor

import (
	"fmt"
	"strings"

	"github.com/virtbridge/virtbridge/internal/config"
)

// blocker is what keeps `virtbridge doctor --fix` (and the hook) from
// making a managed bridge. The engine then refuses the bridge's whole
// transaction: none of the bridge's own fixes happen, nor, for a bridge
// made on demand, the host settings (sysctls, firewall) applied with it. A finding that says
// --fix fixes it must not say so while its bridge is blocked.
type blocker struct {
	object string // what is in the way: the uplink, the link holding the name
	reason string // why --fix cannot make the bridge
	step   string // what the operator does first
}

// blockers returns the blocker of each managed bridge that has one, as
// read from the links; nil when the links were not read.
func blockers(s Sources, h *host) map[string]blocker {
	if s.Config == nil || h.noLinks || h.linksErr != nil {
		return nil
	}
	out := map[string]blocker{}
	for _, b := range s.Config.Bridges {
		if bl, ok := blockerOf(s, h, b); ok {
			out[b.Name] = bl
		}
	}
	return out
}

func blockerOf(s Sources, h *host, b config.Bridge) (blocker, bool) {
	if l, ok := linkByName(h.links, b.Name); ok && l.Kind != "bridge" {
		return blocker{object: b.Name,
			reason: fmt.Sprintf("%s is a %s link, not a bridge, and virtbridge will not replace a link it did not make", b.Name, l.Kind),
			step:   fmt.Sprintf("remove it (ip link del %s) or manage a bridge of another name in %s", b.Name, s.ConfigPath)}, true
	}
	if !b.HasUplink() {
		return blocker{}, false
	}
	up, ok, err := findUplink(b, h.links)
	switch {
	case err != nil:
		return blocker{object: b.UplinkString(),
			reason: fmt.Sprintf("uplink of bridge %s: %v", b.Name, err),
			step:   fmt.Sprintf("name the NIC with `uplink:` instead of `uplink_mac:` for bridge %s in %s", b.Name, s.ConfigPath)}, true
	case !ok:
		return blocker{object: b.UplinkString(),
			reason: fmt.Sprintf("uplink %s of bridge %s does not exist in this network namespace", b.UplinkString(), b.Name),
			step:   fmt.Sprintf("make %s exist, or correct the uplink of bridge %s at %s:%d (see `ip link`)", b.UplinkString(), b.Name, s.ConfigPath, b.Line)}, true
	case up.Master != "" && up.Master != b.Name:
		return blocker{object: up.Name,
			reason: fmt.Sprintf("uplink %s of bridge %s is enslaved to %s, and virtbridge will not take it from there", up.Name, b.Name, up.Master),
			step:   fmt.Sprintf("give bridge %s an uplink no other link holds, in %s", b.Name, s.ConfigPath)}, true
	}
	return blocker{}, false
}

// settleAdvice makes the advice of fixable findings true: a finding of a
// blocked bridge, or a host-wide one (sysctls, firewall) when --fix would
// make no bridge that carries them (hostFixable), is fixed by --fix only after the operator's
// step, and says so.
func settleAdvice(r *Report, s Sources, h *host) {
	if s.Config == nil || r.blocked == nil {
		return
	}
	hostStep := ""
	if !hostFixable(r, s, h) {
		var steps []string
		for _, b := range s.Config.Bridges {
			if bl, ok := r.blocked[b.Name]; ok {
				steps = append(steps, bl.step)
			} else {
				steps = append(steps, fmt.Sprintf("start a VM on bridge %s or set `create: at_start` for it in %s", b.Name, s.ConfigPath))
			}
		}
		hostStep = strings.Join(steps, "; or ")
		if len(steps) == 0 {
			hostStep = "add a bridge under `bridges:` in " + s.ConfigPath + " (virtbridge applies the host settings with a managed bridge)"
		}
	}
	for i := range r.Findings {
		f := &r.Findings[i]
		if !f.Fixable {
			continue
		}
		step := hostStep
		if f.Section != SectionForwarding {
			bl, ok := r.blocked[bridgeOfFinding(*f, s.Config, h)]
			if !ok {
				continue
			}
			step = bl.step
		}
		if step != "" {
			f.Fixable = false
			f.Fix = "first " + step + ", then run `virtbridge doctor --fix`"
		}
	}
}

// hostFixable reports whether --fix applies the host-wide settings
// (sysctls, firewall): with the bridges made at start (engine.EnsureHost
// applies them even when a bridge cannot be made), or with an existing
// create: on_demand bridge that is not blocked.
func hostFixable(r *Report, s Sources, h *host) bool {
	for _, b := range s.Config.Bridges {
		if b.AtStart() {
			return true
		}
		if _, ok := linkByName(h.links, b.Name); ok && r.blocked[b.Name] == (blocker{}) {
			return true
		}
	}
	return false
}

// bridgeOfFinding names the managed bridge a bridge or tap finding is
// about, "" when none.
func bridgeOfFinding(f Finding, cfg *config.Config, h *host) string {
	if f.Section == SectionTaps {
		if o, ok := tapsOf(h)[f.Object]; ok {
			return o.nic.Bridge
		}
		l, _ := linkByName(h.links, f.Object)
		return l.Master
	}
	for _, b := range cfg.Bridges {
		if f.Object == b.Name {
			return b.Name
		}
		if up, ok, _ := findUplink(b, h.links); ok && f.Object == up.Name {
			return b.Name
		}
	}
	return ""
}
