package doctor

import (
	"fmt"
	"maps"
	"net"
	"slices"

	"github.com/virtbridge/virtbridge/internal/links"
	"github.com/virtbridge/virtbridge/internal/store"
)

// fixReconcile is the fix of what virtbridge's reconcile repairs.
const fixReconcile = "run `virtbridge doctor --fix` (virtbridged also does it at its next reconcile)"

// checkTaps compares the ports of the managed bridges, the mapping store
// and the taps of running VMs.
func checkTaps(r *Report, s Sources, h *host) {
	if s.Config == nil || h.noLinks || h.linksErr != nil || s.Store == nil {
		return
	}
	entries, err := s.Store.Entries()
	if err != nil {
		r.add(Finding{Section: SectionTaps, Check: "store", Status: Warn, Object: "mapping store", Message: err.Error(),
			Why: "`virtbridge who` cannot answer from it", Fix: fixReconcile})
		return
	}
	byTap := map[string]store.Entry{}
	for _, e := range entries {
		byTap[e.Tap] = e
	}
	running := tapsOf(h)
	for _, b := range s.Config.Bridges {
		br, ok := linkByName(h.links, b.Name)
		if !ok || br.Kind != "bridge" {
			continue
		}
		up, _, _ := findUplink(b, h.links)
		n := len(r.Findings)
		vmPorts := 0
		for _, p := range portsOf(h.links, b.Name) {
			if p.Name == up.Name {
				continue
			}
			vmPorts++
			portFinding(r, h, p, byTap, running)
		}
		if len(r.Findings) == n {
			msg := fmt.Sprintf("%d VM port(s), each recorded with its VM", vmPorts)
			if vmPorts == 0 {
				msg = "no VM ports"
			}
			r.add(Finding{Section: SectionTaps, Check: "port", Status: OK, Object: b.Name, Message: msg})
		}
	}
	runningTaps(r, s, h, running)
	for _, e := range entries {
		if _, ok := linkByName(h.links, e.Tap); !ok {
			f := Finding{Section: SectionTaps, Check: "stale-mapping", Status: Warn, Object: e.Tap,
				Message: fmt.Sprintf("the mapping store names vm %s for it, but no such link exists", e.VM),
				Why:     "`virtbridge who` answers from a stale mapping", Fix: fixReconcile}
			f.Fixable = h.vmsErr == nil
			r.add(f)
		}
	}
}

// portFinding reports a port of a managed bridge that virtbridge cannot
// name a VM for, or names the wrong one.
func portFinding(r *Report, h *host, p Link, byTap map[string]store.Entry, running map[string]tapOwner) {
	e, recorded := byTap[p.Name]
	owner, known := running[p.Name]
	f := Finding{Section: SectionTaps, Check: "port", Object: p.Name, Status: Warn}
	if known {
		if why := notVMTap(p, owner); why != "" {
			f.Message = fmt.Sprintf("%s port in %s named like the tap of %s, but %s", p.Kind, p.Master, owner, why)
			f.Why = "virtbridge records and moves only a tap it can tell is the VM's: `virtbridge who` cannot name its owner"
			f.Fix = fmt.Sprintf("see what holds it (ip -d link show %s); if nothing uses it: ip link del %s", p.Name, p.Name)
			r.add(f)
			return
		}
	}
	switch {
	case recorded && (h.vmsErr != nil || known && owner.uuid == e.UUID):
		return
	case recorded && known:
		f.Message = fmt.Sprintf("recorded for vm %s, but it is the tap of %s", e.VM, owner)
		f.Why, f.Fix, f.Fixable = "`virtbridge who` names the wrong VM", fixReconcile, true
	case recorded:
		f.Message = fmt.Sprintf("recorded for vm %s, which has no such tap running", e.VM)
		f.Why, f.Fix, f.Fixable = "`virtbridge who` names a VM that is gone", fixReconcile, true
	case known:
		f.Message = fmt.Sprintf("tap of %s, not in the mapping store", owner)
		f.Why, f.Fix, f.Fixable = "`virtbridge who` cannot name its VM", fixReconcile, true
	case h.vmsErr != nil:
		f.Message = fmt.Sprintf("%s port in %s, not in the mapping store", p.Kind, p.Master)
		f.Why = "`virtbridge who` cannot name its VM"
		f.Fix = "`virsh domiflist` of the running VMs tells whose it is; if nobody's: ip link del " + p.Name
	default:
		f.Message = fmt.Sprintf("%s port in %s that belongs to no running VM", p.Kind, p.Master)
		f.Why = "a stale tap (its VM died without libvirt noticing) or a link someone else plugged in: it gets the bridge's traffic"
		f.Fix = "if nothing uses it: ip link del " + p.Name
	}
	r.add(f)
}

// runningTaps reports taps of running VMs on managed bridges that are not
// in their bridge.
func runningTaps(r *Report, s Sources, h *host, running map[string]tapOwner) {
	for _, tap := range slices.Sorted(maps.Keys(running)) {
		o := running[tap]
		if _, managed := s.Config.Bridge(o.nic.Bridge); !managed {
			continue
		}
		l, ok := linkByName(h.links, tap)
		f := Finding{Section: SectionTaps, Check: "vm-tap", Status: Fail, Object: tap}
		switch {
		case !ok:
			f.Message = fmt.Sprintf("%s has tap %s, which does not exist", o, tap)
			f.Why = "the VM's NIC has no host end: it is offline"
			f.Fix = fmt.Sprintf("restart the VM (virsh destroy %s; virsh start %s)", o.vm, o.vm)
		case notVMTap(l, o) != "":
			f.Message = fmt.Sprintf("%s has tap %s, but %s", o, tap, notVMTap(l, o))
			f.Why = "the VM's NIC has no host end virtbridge can tell is its own: it may be offline"
			f.Fix = fmt.Sprintf("see what holds %s (ip -d link show %s); restart the VM (virsh destroy %s; virsh start %s)", tap, tap, o.vm, o.vm)
		case l.Master != o.nic.Bridge:
			master := l.Master
			if master == "" {
				master = "none"
			}
			f.Message = fmt.Sprintf("tap of %s is not in bridge %s (its master: %s)", o, o.nic.Bridge, master)
			f.Why = "the VM's NIC is cut off from its network"
			f.Fix, f.Fixable = fixReconcile, true
		default:
			continue
		}
		r.add(f)
	}
}

// notVMTap says why l cannot be the tap libvirt made for o's NIC, as the
// engine judges it (links.TapMAC): not a tun/tap device, or not the MAC
// libvirt gives that NIC's tap. "" when it can be.
func notVMTap(l Link, o tapOwner) string {
	if l.Kind != "tuntap" {
		return fmt.Sprintf("it is a %s, not a tun/tap device", links.KindText(l.Kind))
	}
	want, err := links.TapMAC(o.nic.MAC)
	if err != nil {
		return err.Error()
	}
	if hw, err := net.ParseMAC(l.MAC); err != nil || hw.String() != want {
		return fmt.Sprintf("its MAC is %s where libvirt gives that NIC's tap %s", l.MAC, want)
	}
	return ""
}
