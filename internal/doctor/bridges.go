package doctor

import (
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"strings"

	"github.com/virtbridge/virtbridge/internal/config"
)

// checkConfig reports whether the configuration loads (every error with
// its file:line) and whether each managed bridge and uplink exists.
func checkConfig(r *Report, s Sources, h *host) {
	if s.Config == nil {
		configErrors(r, s)
		return
	}
	cfg := s.Config
	r.add(Finding{Section: SectionConfig, Check: "config", Status: OK, Object: s.ConfigPath,
		Message: fmt.Sprintf("valid, %d managed bridge(s)", len(cfg.Bridges))})
	if h.noLinks {
		return
	}
	if h.linksErr != nil {
		r.add(Finding{Section: SectionConfig, Check: "links", Status: Fail, Object: "network links",
			Message: h.linksErr.Error(), Why: "without them no bridge can be checked", Fix: "run the doctor as root"})
		return
	}
	for _, b := range cfg.Bridges {
		bridgeExists(r, h, b)
		if b.HasUplink() {
			uplinkExists(r, s, h, b)
		}
	}
}

func configErrors(r *Report, s Sources) {
	why := "the hook loads it at every VM operation: while it is invalid, every VM start is refused"
	fix := "correct it, then `virtbridge check-config " + s.ConfigPath + "`"
	errs := []error{s.ConfigErr}
	if j, ok := s.ConfigErr.(interface{ Unwrap() []error }); ok {
		errs = j.Unwrap()
	}
	if errors.Is(s.ConfigErr, fs.ErrNotExist) {
		r.add(Finding{Section: SectionConfig, Check: "config", Status: Fail, Object: s.ConfigPath, Message: "missing",
			Why: "the hook refuses every VM start without it",
			Fix: "create it from the commented example, packaging/virtbridge.yaml, then `virtbridge check-config " + s.ConfigPath + "`"})
		return
	}
	for _, err := range errs {
		obj, msg := s.ConfigPath, err.Error()
		var ce *config.Error
		if errors.As(err, &ce) {
			obj, msg = ce.File, ce.Msg
			if ce.Line > 0 {
				obj = fmt.Sprintf("%s:%d", ce.File, ce.Line)
			}
		}
		r.add(Finding{Section: SectionConfig, Check: "config", Status: Fail, Object: obj, Message: msg, Why: why, Fix: fix})
	}
}

func bridgeExists(r *Report, h *host, b config.Bridge) {
	f := Finding{Section: SectionConfig, Check: "bridge-exists", Object: b.Name}
	if l, ok := linkByName(h.links, b.Name); ok {
		f.Status, f.Message = OK, fmt.Sprintf("exists (%s)", l.Kind)
		r.add(f)
		return
	}
	f.Status, f.Fixable, f.Fix = Warn, true, fixByVirtbridge
	f.Message = "does not exist yet"
	f.Why = "qemu cannot start a VM on a missing bridge (\"Cannot get interface MTU\"), nor hot-plug a NIC onto it, " +
		"and tools offer only bridges that exist; virtbridged (or `virtbridge apply`) makes it, and the hook at a VM's prepare"
	if !b.AtStart() {
		// As configured: made at the first VM's prepare, never before.
		f.Status, f.Fixable, f.Fix = OK, false, ""
		f.Message = "does not exist yet (create: on_demand: the hook makes it at the prepare of the first VM on it)"
		f.Why = ""
	}
	if vms := runningOn(h, b.Name); len(vms) > 0 {
		f.Status, f.Fixable, f.Fix = Fail, true, fixByVirtbridge
		f.Message = "does not exist, yet running VMs use it: " + strings.Join(vms, ", ")
		f.Why = "the bridge was deleted under running VMs: their NICs are cut off from the network"
	}
	r.add(f)
}

func uplinkExists(r *Report, s Sources, h *host, b config.Bridge) {
	f := Finding{Section: SectionConfig, Check: "uplink-exists", Object: b.UplinkString()}
	l, ok, err := findUplink(b, h.links)
	switch {
	case err != nil:
		f.Status, f.Message = Fail, fmt.Sprintf("uplink of bridge %s: %v", b.Name, err)
		f.Why = "virtbridge will not guess which NIC to enslave: every VM start on the bridge is refused"
		f.Fix = fmt.Sprintf("name the NIC with `uplink:` instead of `uplink_mac:` for bridge %s in %s", b.Name, s.ConfigPath)
	case !ok:
		f.Status, f.Message = Fail, fmt.Sprintf("uplink of bridge %s: no such link in this network namespace", b.Name)
		f.Why = "virtbridge cannot enslave a missing NIC: every VM start on the bridge is refused"
		f.Fix = fmt.Sprintf("check `ip link` and the uplink of bridge %s at %s:%d", b.Name, s.ConfigPath, b.Line)
	default:
		f.Status, f.Message = OK, fmt.Sprintf("uplink of bridge %s, exists (%s)", b.Name, l.Kind)
		f.Object = l.Name
	}
	r.add(f)
}

// checkBridges checks each managed bridge and its uplink as the kernel has
// them.
func checkBridges(r *Report, s Sources, h *host) {
	if s.Config == nil || h.noLinks || h.linksErr != nil {
		return
	}
	for _, b := range s.Config.Bridges {
		up, hasUp, _ := findUplink(b, h.links)
		if hasUp {
			owned := uplinkManagerOwner(r, s, b, up)
			uplinkUsable(r, s, b, up, owned)
			uplinkLeases(r, s, b, up)
		}
		br, ok := linkByName(h.links, b.Name)
		managerConflicts(r, s, b, br, ok && br.Kind == "bridge", up, hasUp)
		if !ok {
			continue
		}
		bridgeLeases(r, s, b, br)
		if br.Kind != "bridge" {
			r.add(Finding{Section: SectionBridges, Check: "bridge-kind", Status: Fail, Object: b.Name,
				Message: fmt.Sprintf("is a %s link, not a bridge", br.Kind),
				Why:     "libvirt cannot add a VM's tap to it, and virtbridge will not replace a link it did not make",
				Fix:     fmt.Sprintf("remove it (ip link del %s) or manage a bridge of another name in %s", b.Name, s.ConfigPath)})
			continue
		}
		bridgeUp(r, br)
		bridgeSTP(r, s, b, br)
		if hasUp {
			owner, _ := linkByName(h.links, up.Master)
			uplinkEnslaved(r, s, b, br, up, owner.Kind)
			bridgeMTU(r, s, b, br, up)
			bridgeRA(r, s, b, br, up)
		}
	}
}

func bridgeUp(r *Report, br Link) {
	f := Finding{Section: SectionBridges, Check: "bridge-up", Object: br.Name, Status: OK, Message: "up"}
	if !br.Up {
		f.Status, f.Message, f.Fixable, f.Fix = Fail, "down", true, fixByVirtbridge
		f.Why = "a bridge that is down forwards nothing: its VMs are offline"
	}
	r.add(f)
}

func bridgeSTP(r *Report, s Sources, b config.Bridge, br Link) {
	f := Finding{Section: SectionBridges, Check: "bridge-stp", Object: br.Name, Status: OK}
	silent := fmt.Sprintf("each new VM NIC stays silent for ~%d s (listening, then learning, %d s each): DHCP in the guest times out", 2*br.ForwardDelay, br.ForwardDelay)
	switch {
	case br.STP != b.STP || b.STP && br.ForwardDelay != b.ForwardDelay:
		f.Status, f.Fixable, f.Fix = Warn, true, fixByVirtbridge
		f.Message = fmt.Sprintf("stp %s, forward delay %d s; the config says stp %s, forward delay %d s", onOff(br.STP), br.ForwardDelay, onOff(b.STP), b.ForwardDelay)
		f.Why = "settings differ from the config"
		if br.STP && br.ForwardDelay > 2 {
			f.Why = silent
		}
	case br.STP && br.ForwardDelay > 2:
		f.Status, f.Message, f.Why = Warn, fmt.Sprintf("stp on, forward delay %d s (as configured)", br.ForwardDelay), silent
		f.Fix = fmt.Sprintf("set stp: false for bridge %s in %s (a host bridge with one uplink has no loop), or forward_delay: 2", b.Name, s.ConfigPath)
	case br.STP:
		f.Message = fmt.Sprintf("stp on, forward delay %d s: new ports forward after ~%d s", br.ForwardDelay, 2*br.ForwardDelay)
	default:
		f.Message = "stp off: new ports forward at once"
	}
	r.add(f)
}

// uplinkUsable reports what keeps a NIC from being a bridge's uplink
// whether or not the bridge exists yet: 802.11, a network manager (unless
// owned: the handoff goes through the manager owning it).
func uplinkUsable(r *Report, s Sources, b config.Bridge, up Link, owned bool) {
	if up.Wireless {
		r.add(Finding{Section: SectionBridges, Check: "uplink-wireless", Status: Fail, Object: up.Name,
			Message: fmt.Sprintf("uplink of bridge %s is a wireless (802.11) interface", b.Name),
			Why:     "802.11 drops frames whose source MAC is not the station's own: VM frames never leave the host",
			Fix:     fmt.Sprintf("use a wired NIC as uplink in %s, or give the VMs a routed or NAT libvirt network instead", s.ConfigPath)})
	}
	if s.Managers == nil || owned {
		return
	}
	f := Finding{Section: SectionBridges, Check: "uplink-manager", Object: up.Name, Status: OK,
		Message: "not managed by NetworkManager or systemd-networkd"}
	lm, err := s.Managers.Of(up)
	by := lm.By()
	switch {
	case err != nil:
		f.Status, f.Message = Warn, "cannot tell whether a network manager manages it: "+err.Error()
	case by != "":
		f.Status, f.Message = Warn, "managed by "+by
		f.Why = "on a reconnect or reload it may take the NIC out of the bridge or put the host's addresses back on it, cutting the VMs (and the host) off"
		f.Fix = managerFix(by, up.Name, b.Name)
	}
	r.add(f)
}

// uplinkLeases reports a dynamic address (a DHCP lease) on an uplink that
// virtbridge is about to move: refused unless manager: kernel, which moves
// it as a static one.
func uplinkLeases(r *Report, s Sources, b config.Bridge, up Link) {
	if len(up.Leases) == 0 || !b.MoveAddresses {
		return
	}
	who := "a DHCP client (none of dhclient, dhcpcd, udhcpc names " + up.Name + ")"
	if len(up.DHCPClients) > 0 {
		who = strings.Join(up.DHCPClients, ", ")
	}
	f := Finding{Section: SectionBridges, Check: "uplink-owner", Object: up.Name,
		Message: fmt.Sprintf("dynamic address %s held by %s, about to be moved to bridge %s", strings.Join(up.Leases, ", "), who, b.Name)}
	if b.Manager == config.ManagerKernel {
		f.Status = Warn
		f.Why = "manager: kernel moves it to the bridge as a static address: the client keeps renewing it on " + up.Name +
			" (and may put it back there), and the lease may be handed to another host once it ends"
		f.Fix = fmt.Sprintf("make the bridge the DHCP client's (ifupdown: `iface %s inet dhcp` with `bridge_ports %s`), "+
			"and drop manager: kernel for bridge %s in %s", b.Name, up.Name, b.Name, s.ConfigPath)
	} else {
		f.Status = Fail
		f.Why = "moved to the bridge it would expire there (the client renews it on the uplink): virtbridge refuses to make the bridge, and VM starts on it fail"
		f.Fix = fmt.Sprintf("in /etc/network/interfaces: `iface %s inet manual`, then `auto %s` / `iface %s inet dhcp` with `bridge_ports %s`, "+
			"`bridge_stp off`, `bridge_fd 0`; or, if the address is in fact fixed, manager: kernel for bridge %s in %s",
			up.Name, b.Name, b.Name, up.Name, b.Name, s.ConfigPath)
	}
	r.add(f)
}

// bridgeLeases reports a dynamic address on the bridge that no DHCP client
// renews there: it expires, and the host loses its network.
func bridgeLeases(r *Report, s Sources, b config.Bridge, br Link) {
	if len(br.Leases) == 0 {
		return
	}
	renewers := br.DHCPClients
	if s.Managers != nil {
		if lm, err := s.Managers.Of(br); err == nil && lm.By() != "" {
			renewers = append(renewers, lm.By())
		}
	}
	f := Finding{Section: SectionBridges, Check: "bridge-lease", Object: b.Name, Status: OK,
		Message: fmt.Sprintf("dynamic address %s renewed by %s", strings.Join(br.Leases, ", "), strings.Join(renewers, ", "))}
	if len(renewers) == 0 {
		f.Status = Fail
		f.Message = fmt.Sprintf("dynamic address %s on the bridge, and no DHCP client (dhclient, dhcpcd, udhcpc) nor network manager runs on %s",
			strings.Join(br.Leases, ", "), b.Name)
		f.Why = "when its lifetime ends the kernel deletes it, with the default route: the host loses its network"
		f.Fix = fmt.Sprintf("run the DHCP client on %s (ifupdown: `iface %s inet dhcp` with `bridge_ports`), or make the address static: "+
			"`ip addr change ADDRESS dev %s valid_lft forever preferred_lft forever`", b.Name, b.Name, b.Name)
	}
	r.add(f)
}

func managerFix(by, uplink, bridge string) string {
	if strings.HasPrefix(by, "systemd-networkd") {
		return fmt.Sprintf("give %s a .network file with [Network] Bridge=%s (or [Link] Unmanaged=yes), then `networkctl reload`", uplink, bridge)
	}
	return fmt.Sprintf("`nmcli device set %s managed no`, and keep it so with unmanaged-devices=interface-name:%s in /etc/NetworkManager/conf.d/virtbridge.conf", uplink, uplink)
}

// uplinkEnslaved checks that the uplink is a port of b; ownerKind is the
// kind of the master it has instead, if any. Its advice never takes the
// NIC out of that master: it may carry the host's own network.
func uplinkEnslaved(r *Report, s Sources, b config.Bridge, br, up Link, ownerKind string) {
	f := Finding{Section: SectionBridges, Check: "uplink-enslaved", Object: up.Name}
	switch up.Master {
	case b.Name:
		f.Status, f.Message = OK, "enslaved to "+b.Name
	case "":
		f.Status, f.Message, f.Fixable, f.Fix = Fail, "not enslaved to "+b.Name, true, fixByVirtbridge
		f.Why = "the bridge has no way out: VMs on it reach each other but not the network (no DHCP lease)"
	default:
		f.Status, f.Message = Fail, fmt.Sprintf("enslaved to %s, not to %s", up.Master, b.Name)
		f.Why = "a NIC has one master: the VMs on " + b.Name + " have no way out, and virtbridge will not take the NIC from " + up.Master
		switch ownerKind {
		case "bridge":
			f.Fix = fmt.Sprintf("to put the VMs on the network of %s, manage that bridge itself: rename bridge %s to %s in %s; "+
				"or give bridge %s another NIC", up.Master, b.Name, up.Master, s.ConfigPath, b.Name)
		case "bond", "team":
			f.Fix = fmt.Sprintf("make the %s %s the uplink of bridge %s in %s; or give bridge %s another NIC",
				ownerKind, up.Master, b.Name, s.ConfigPath, b.Name)
		default:
			f.Fix = fmt.Sprintf("give bridge %s another NIC in %s", b.Name, s.ConfigPath)
		}
	}
	r.add(f)
	if up.Master != b.Name {
		return // addresses move when it is enslaved
	}
	a := Finding{Section: SectionBridges, Check: "host-addresses", Object: b.Name, Status: OK}
	switch {
	case len(up.Addresses) > 0 || len(up.Stranded) > 0:
		a.Status, a.Object = Fail, up.Name
		left := append(slices.Clone(up.Addresses), up.Stranded...)
		a.Message = fmt.Sprintf("host addresses, routes or neighbours left on the enslaved uplink: %s", strings.Join(left, ", "))
		a.Why = "a bridge port hands its frames to the bridge: addresses left on the port answer unreliably and their routes lead nowhere"
		a.Fix = fmt.Sprintf("set move_addresses: true for bridge %s in %s, then %s", b.Name, s.ConfigPath, fixByVirtbridge)
		switch {
		case len(up.Addresses) == 0 && b.MoveAddresses && allLearnt(up.Stranded):
			// The RA role and what came with it: the handoff moves them.
			a.Fixable, a.Fix = true, fixByVirtbridge
			a.Why = "a bridge port hands its frames, router advertisements included, to the bridge: nothing refreshes " +
				"what the port learnt, neighbours cannot reach its address, and the host loses IPv6 on that network"
		case len(up.Addresses) == 0:
			// Routes without the addresses that make their gateways
			// reachable cannot be moved as they are.
			a.Fix = fmt.Sprintf("re-create each on bridge %s (`ip route replace … dev %s`, `ip neigh replace … dev %s`) "+
				"once the bridge has the addresses that reach its gateway, then delete it from %s", b.Name, b.Name, b.Name, up.Name)
		case b.MoveAddresses:
			a.Fixable, a.Fix = true, fixByVirtbridge
		}
	case len(br.Addresses) > 0:
		a.Message = "host addresses on the bridge: " + strings.Join(br.Addresses, ", ")
	default:
		a.Message = "no host addresses on the bridge or its uplink (the host itself does not use this network)"
	}
	r.add(a)
}

// bridgeRA reports a bridge holding what it learnt from router
// advertisements (it took over its uplink's SLAAC) that does not act on
// them: accept_ra 0, or 1 with IPv6 forwarding on or turned on by the
// configuration. Nothing refreshes the address and default route then,
// and turning forwarding on drops the default route at once.
func bridgeRA(r *Report, s Sources, b config.Bridge, br, up Link) {
	if up.Master != b.Name || len(br.RA.Learnt) == 0 {
		return
	}
	fwdLater := s.Config.Sysctl.IPv6Forward == config.On
	f := Finding{Section: SectionBridges, Check: "router-advertisements", Object: b.Name, Status: OK,
		Message: fmt.Sprintf("accepts router advertisements (accept_ra %d) for what it learnt: %s", br.RA.AcceptRA, strings.Join(br.RA.Learnt, ", "))}
	want := 1
	if br.RA.Forwarding == 1 || fwdLater {
		want = 2
	}
	if !br.RA.Accepts() || br.RA.AcceptRA < want {
		f.Status = Fail
		later := ""
		if fwdLater {
			later = ", turned on by the configuration"
		}
		f.Message = fmt.Sprintf("accept_ra %d (IPv6 forwarding %d%s) but holds what it learnt from router advertisements: %s",
			br.RA.AcceptRA, br.RA.Forwarding, later, strings.Join(br.RA.Learnt, ", "))
		f.Why = "nothing refreshes that address and default route: the host loses IPv6 on this network when their lifetimes end " +
			"(with forwarding on, accept_ra 1 ignores advertisements and turning forwarding on drops the learnt default route)"
		f.Fix = fmt.Sprintf("sysctl -w net.ipv6.conf.%s.accept_ra=%d", b.Name, want)
		if b.MoveAddresses {
			f.Fixable, f.Fix = true, fixByVirtbridge
		}
	}
	r.add(f)
}

// raLearnt marks what a port learnt from router advertisements (or a
// DHCPv6 lease): virtbridge's handoff moves it to the bridge with its
// lifetime, and the bridge takes the advertisements over.
const raLearnt = " (learnt from router advertisements or DHCPv6)"

// allLearnt: every stranded item was learnt from router advertisements.
func allLearnt(items []string) bool {
	for _, it := range items {
		if !strings.HasSuffix(it, raLearnt) {
			return false
		}
	}
	return len(items) > 0
}

func bridgeMTU(r *Report, s Sources, b config.Bridge, br, up Link) {
	f := Finding{Section: SectionBridges, Check: "mtu", Object: b.Name, Status: OK,
		Message: fmt.Sprintf("mtu %d, uplink %s mtu %d", br.MTU, up.Name, up.MTU)}
	switch {
	case b.MTU > 0 && br.MTU != b.MTU:
		f.Status, f.Fixable, f.Fix = Warn, true, fixByVirtbridge
		f.Message = fmt.Sprintf("mtu %d; the config says %d", br.MTU, b.MTU)
		f.Why = "libvirt gives each new tap the bridge's MTU: guests get the wrong one"
	case br.MTU > up.MTU:
		f.Status = Fail
		f.Message = fmt.Sprintf("mtu %d, larger than uplink %s's %d", br.MTU, up.Name, up.MTU)
		f.Why = fmt.Sprintf("taps take the bridge's MTU: guests send frames up to %d bytes that the uplink drops, so large transfers stall", br.MTU)
		f.Fix = fmt.Sprintf("set mtu: %d for bridge %s in %s, or raise the uplink's MTU", up.MTU, b.Name, s.ConfigPath)
	case br.MTU < up.MTU && b.MTU == 0:
		f.Status = Warn
		f.Message = fmt.Sprintf("mtu %d, smaller than uplink %s's %d", br.MTU, up.Name, up.MTU)
		f.Why = "a port with a small MTU pulled the bridge down and libvirt gives new taps the bridge's MTU: guests use less than the network allows"
		f.Fix = fmt.Sprintf("set mtu: %d for bridge %s in %s (virtbridge then keeps it)", up.MTU, b.Name, s.ConfigPath)
	}
	r.add(f)
}

func onOff(b bool) string {
	if b {
		return "on"
	}
	return "off"
}
