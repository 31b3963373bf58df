package doctor

import (
	"fmt"
	"net"
	"strings"

	"libvirt.org/go/libvirtxml"

	"github.com/virtbridge/virtbridge/internal/events"
	"github.com/virtbridge/virtbridge/internal/policy"
)

// Domain is a VM libvirt knows.
type Domain struct {
	Name   string
	UUID   string
	Active bool
	// XML is the live XML of a running domain, else its definition.
	XML string
}

// Domains lists the VMs libvirt knows, running or not.
type Domains interface {
	Domains() ([]Domain, error)
}

// vm is a domain as the checks use it.
type vm struct {
	Domain
	nics  []libvirtxml.DomainInterface // as written, even where the hook would refuse them
	ev    events.Event                 // as the hook sees it, networks resolved
	evErr error                        // why the hook would refuse it
}

func readVMs(s Sources) ([]vm, error) {
	if s.Domains == nil {
		return nil, nil
	}
	ds, err := s.Domains.Domains()
	if err != nil {
		return nil, err
	}
	dirs := s.NetworkDirs
	if dirs == nil {
		dirs = events.NetworkDirs
	}
	out := make([]vm, 0, len(ds))
	for _, d := range ds {
		v := vm{Domain: d}
		var dom libvirtxml.Domain
		if err := dom.Unmarshal(d.XML); err == nil && dom.Devices != nil {
			v.nics = dom.Devices.Interfaces
		}
		op := events.OpPrepare
		if d.Active {
			op = events.OpReconcile
		}
		v.ev, v.evErr = events.FromDomainXML(events.SourceCLI, op, []byte(d.XML))
		if v.evErr == nil {
			events.ResolveNetworks(&v.ev, dirs)
		}
		out = append(out, v)
	}
	return out, nil
}

// runningOn names the running VMs with a NIC on bridge.
func runningOn(h *host, bridge string) []string {
	var out []string
	for _, v := range h.vms {
		for _, n := range v.ev.NICs {
			if v.Active && n.Bridge == bridge {
				out = append(out, v.Name)
				break
			}
		}
	}
	return out
}

// routedNICs names the NICs on libvirt networks that route or NAT.
func routedNICs(h *host) []string {
	var out []string
	for _, v := range h.vms {
		for _, n := range v.ev.NICs {
			switch n.NetworkMode {
			case "nat", "route", "open":
				out = append(out, fmt.Sprintf("%s (network %s, %s)", v.Name, n.Network, n.NetworkMode))
			}
		}
	}
	return out
}

// checkVMs checks the NICs of every defined domain.
func checkVMs(r *Report, s Sources, h *host) {
	if s.Domains == nil {
		return
	}
	if h.vmsErr != nil {
		r.add(Finding{Section: SectionVMs, Check: "libvirt", Status: Warn, Object: "libvirt", Message: h.vmsErr.Error(),
			Why: "defined VMs and the taps of running ones cannot be checked",
			Fix: "start libvirtd (or virtqemud), or point --uri at it"})
		return
	}
	if len(h.vms) == 0 {
		r.add(Finding{Section: SectionVMs, Check: "vm", Status: OK, Object: "libvirt", Message: "no domains defined"})
		return
	}
	for _, v := range h.vms {
		n := len(r.Findings)
		vmFindings(r, s, h, v)
		if len(r.Findings) == n {
			r.add(Finding{Section: SectionVMs, Check: "vm", Status: OK, Object: v.Name,
				Message: fmt.Sprintf("%d NIC(s): unicast MACs, bridges managed or present", len(v.nics))})
		}
	}
}

func vmFindings(r *Report, s Sources, h *host, v vm) {
	edit := fmt.Sprintf("`virsh edit %s`: set <mac address='52:54:00:…'/> (or drop the line: libvirt picks one), then restart the VM", v.Name)
	macProblem := false
	for _, nic := range v.nics {
		if nic.MAC == nil {
			continue
		}
		mac, err := net.ParseMAC(nic.MAC.Address)
		if err != nil || len(mac) != 6 {
			continue // the hook's parse below says what is wrong
		}
		obj := fmt.Sprintf("%s NIC %s", v.Name, mac)
		switch {
		case mac[0]&1 == 1:
			macProblem = true
			r.add(Finding{Section: SectionVMs, Check: "vm-mac", Status: Fail, Object: obj, Fix: edit,
				Message: fmt.Sprintf("multicast MAC (first octet %02x is odd)", mac[0]),
				Why:     "no NIC can own a multicast address: the guest fails with \"cannot assign requested address\" (the how-to's 11:22:33:44:55:66) and virtbridge refuses to start the VM"})
		case mac[0] == 0xfe:
			macProblem = true
			r.add(Finding{Section: SectionVMs, Check: "vm-mac", Status: Fail, Object: obj, Fix: edit,
				Message: "MAC starts with fe:, the prefix libvirt reserves for the host end of taps",
				Why:     "libvirt gives each tap the guest's MAC with its first octet set to fe, so that the bridge never takes a guest MAC for its own; a guest MAC that starts with fe already is its tap's MAC too: the bridge takes the guest's frames as its own and the guest gets nothing"})
		}
	}
	if v.evErr != nil {
		if !macProblem {
			r.add(Finding{Section: SectionVMs, Check: "vm-xml", Status: Fail, Object: v.Name,
				Message: "virtbridge's hook refuses this domain: " + v.evErr.Error(),
				Why:     "the hook refuses every start of it", Fix: "`virsh edit " + v.Name + "` and correct what the message names"})
		}
		return
	}
	if s.Config != nil {
		vmBridges(r, s, h, v)
	}
}

// vmBridges reports NICs the hook would refuse, and NICs on a bridge that
// is neither managed (the hook would create it) nor present.
func vmBridges(r *Report, s Sources, h *host, v vm) {
	for _, e := range policy.Decide(s.Config, v.ev).Errors {
		r.add(Finding{Section: SectionVMs, Check: "vm-bridge", Status: Fail, Object: v.Name, Message: e,
			Why: "virtbridge's hook refuses to start the VM (unmanaged_bridges: refuse)",
			Fix: "add the bridge under bridges: in " + s.ConfigPath + ", or point the NIC at a managed bridge"})
	}
	if h.noLinks || h.linksErr != nil {
		return
	}
	for _, n := range v.ev.NICs {
		if n.Bridge == "" || n.Type == "network" && n.NetworkMode != "" && n.NetworkMode != "bridge" {
			continue // libvirt makes the bridges of its own networks
		}
		if _, managed := s.Config.Bridge(n.Bridge); managed {
			continue
		}
		if _, ok := linkByName(h.links, n.Bridge); ok {
			continue
		}
		f := Finding{Section: SectionVMs, Check: "vm-bridge", Status: Fail, Object: fmt.Sprintf("%s NIC %s", v.Name, n.MAC),
			Message: fmt.Sprintf("uses bridge %s, which does not exist and virtbridge does not manage", n.Bridge),
			Why:     fmt.Sprintf("qemu cannot start it: \"Cannot get interface MTU on '%s': No such device\"", n.Bridge),
			Fix: fmt.Sprintf("add %s under bridges: in %s (virtbridge then creates it at the VM's start), or point the NIC at an existing bridge",
				n.Bridge, s.ConfigPath)}
		if v.Active {
			f.Message = fmt.Sprintf("runs on bridge %s, which no longer exists and virtbridge does not manage", n.Bridge)
			f.Why = "the VM's NIC is cut off from the network"
		}
		r.add(f)
	}
}

// tapsOf returns the running VMs' NICs that have a tap, by tap.
func tapsOf(h *host) map[string]tapOwner {
	out := map[string]tapOwner{}
	for _, v := range h.vms {
		if !v.Active {
			continue
		}
		for _, n := range v.ev.NICs {
			if n.Tap != "" {
				out[n.Tap] = tapOwner{vm: v.Name, uuid: v.ev.UUID, nic: n}
			}
		}
	}
	return out
}

type tapOwner struct {
	vm, uuid string
	nic      events.NIC
}

func (o tapOwner) String() string {
	return fmt.Sprintf("vm %s (NIC %s)", o.vm, strings.ToLower(o.nic.MAC))
}
