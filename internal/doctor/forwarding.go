package doctor

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/virtbridge/virtbridge/internal/config"
	"github.com/virtbridge/virtbridge/internal/desired"
	"github.com/virtbridge/virtbridge/internal/firewall"
	"github.com/virtbridge/virtbridge/internal/policy"
	"github.com/virtbridge/virtbridge/internal/sysctl"
)

// Sysctls reads kernel settings (internal/sysctl's Manager).
type Sysctls interface {
	Get(name string) (string, error)
}

// Kernel settings the forwarding checks read.
const (
	ipForward       = "net.ipv4.ip_forward"
	ipv6Forward     = "net.ipv6.conf.all.forwarding"
	nfCallIPTables  = "net.bridge.bridge-nf-call-iptables"
	nfCallIP6Tables = "net.bridge.bridge-nf-call-ip6tables"
)

// checkForwarding reports the kernel settings and firewall rules that
// decide whether frames bridged to and from VMs get through.
//
// ip_forward is only a problem when something needs routing: bridged
// frames are switched at layer 2 and never consult it. So it warns when
// the config asks for a value the kernel does not have, or when VMs use
// routed or NAT libvirt networks while it is 0, and is ok otherwise.
func checkForwarding(r *Report, s Sources, h *host) {
	if s.Sysctls == nil {
		return
	}
	cfg := s.Config
	if cfg == nil {
		cfg = config.Default() // the host settings still deserve a look
	}
	checkIPForward(r, s, cfg, h)
	if cfg.Sysctl.IPv6Forward != config.Leave {
		checkToggle(r, s, ipv6Forward, cfg.Sysctl.IPv6Forward, "routed IPv6 (not bridging) depends on it")
	}
	nfOn := map[string]bool{}
	for _, fam := range []struct {
		name, family string
		want         config.Toggle
	}{{nfCallIPTables, "ipv4", cfg.Sysctl.BridgeNFCallIPTables}, {nfCallIP6Tables, "ipv6", cfg.Sysctl.BridgeNFCallIP6Tables}} {
		nfOn[fam.family] = checkNFCall(r, s, fam.name, fam.want)
	}
	rd := readForward(s, cfg, nfOn)
	checkTables(r, s, cfg, nfOn, rd)
	checkNative(r, s, cfg, nfOn, rd)
	checkPath(r, s, cfg, nfOn, rd)
	checkBrNetfilter(r, s, cfg, rd)
}

func checkIPForward(r *Report, s Sources, cfg *config.Config, h *host) {
	v, err := s.Sysctls.Get(ipForward)
	if err != nil {
		r.add(Finding{Section: SectionForwarding, Check: "sysctl", Status: Warn, Object: ipForward, Message: err.Error()})
		return
	}
	if cfg.Sysctl.IPForward != config.Leave && v != cfg.Sysctl.IPForward.String() {
		checkToggle(r, s, ipForward, cfg.Sysctl.IPForward, "bridged VMs do not need it (frames are switched, not routed), but routed or NAT setups do")
		return
	}
	f := Finding{Section: SectionForwarding, Check: "sysctl", Object: ipForward, Status: OK,
		Message: v + ": bridged VMs do not need it (frames are switched at layer 2, not routed)"}
	if routed := routedNICs(h); v == "0" && len(routed) > 0 {
		f.Status = Warn
		f.Message = "0, but VMs use routed or NAT libvirt networks: " + strings.Join(routed, ", ")
		f.Why = "their traffic is routed by the host, which drops it with ip_forward=0 (libvirt sets it when it starts such a network)"
		f.Fix = fmt.Sprintf("set sysctl: {ip_forward: 1} in %s, then %s", s.ConfigPath, fixByVirtbridge)
	}
	r.add(f)
}

// checkToggle reports a setting the config enforces.
func checkToggle(r *Report, s Sources, name string, want config.Toggle, why string) {
	f := Finding{Section: SectionForwarding, Check: "sysctl", Object: name, Status: OK}
	v, err := s.Sysctls.Get(name)
	switch {
	case err != nil:
		f.Status, f.Message = Warn, err.Error()
	case v != want.String():
		f.Status, f.Fixable, f.Fix, f.Why = Warn, true, fixByVirtbridge, why
		f.Message = fmt.Sprintf("%s; the config says %s", v, want)
	default:
		f.Message = v + ", as configured"
	}
	r.add(f)
}

// checkNFCall reports whether bridged frames of a family pass iptables and
// returns true when they do.
func checkNFCall(r *Report, s Sources, name string, want config.Toggle) bool {
	v, err := s.Sysctls.Get(name)
	if errors.Is(err, sysctl.ErrBridgeNetfilter) {
		r.add(Finding{Section: SectionForwarding, Check: "bridge-nf-call", Status: OK, Object: name,
			Message: "br_netfilter is not loaded: bridged frames never pass iptables"})
		return false
	}
	if want != config.Leave {
		checkToggle(r, s, name, want, "the config decides whether bridged frames pass iptables")
	}
	if err != nil {
		if want == config.Leave {
			r.add(Finding{Section: SectionForwarding, Check: "bridge-nf-call", Status: Warn, Object: name, Message: err.Error()})
		}
		return true // assume the worst
	}
	if want == config.Leave {
		msg := "1: bridged frames pass the FORWARD chain (checked below)"
		if v != "1" {
			msg = v + ": bridged frames bypass iptables"
		}
		r.add(Finding{Section: SectionForwarding, Check: "bridge-nf-call", Status: OK, Object: name, Message: msg})
	}
	return v == "1"
}

// checkTables judges FORWARD of every table whose family's bridged frames
// pass iptables, Docker's chains, and virtbridge's own rules.
func checkTables(r *Report, s Sources, cfg *config.Config, nfOn map[string]bool, rd forwardRead) {
	if s.Tables == nil {
		return
	}
	tables, err := rd.tables, rd.tablesErr
	if err != nil {
		r.add(Finding{Section: SectionForwarding, Check: "forward", Status: Warn, Object: "iptables",
			Message: "cannot read the firewall: " + err.Error(), Fix: "run the doctor as root"})
		return
	}
	intent := policy.FirewallIntent(cfg)
	var bridges []string
	for _, b := range cfg.Bridges {
		bridges = append(bridges, b.Name)
	}
	docker := false
	for _, t := range tables {
		if isDocker(t) {
			docker = true
		}
	}
	for _, t := range tables {
		if len(bridges) > 0 && nfOn[t.Family] && !(t.empty() && hasNonEmpty(tables, t.Family)) {
			fc := forwardCtx{bridges: bridges, fixable: fixableIn(t, tables, cfg, intent), managed: intent != nil,
				docker: docker, cfgPath: s.ConfigPath}
			r.add(forwardFinding(t, fc))
		}
		if isDocker(t) {
			r.add(dockerFinding(t, nfOn[t.Family], intent != nil))
		}
	}
	firewallFinding(r, s, cfg, intent)
}

func hasNonEmpty(ts []Table, family string) bool {
	for _, t := range ts {
		if t.Family == family && !t.empty() {
			return true
		}
	}
	return false
}

func isDocker(t Table) bool { return t.has(firewall.DockerUser) || t.has("DOCKER") }

// fixableIn tells whether virtbridge keeps its rules in t's variant, so
// that Ensure repairs t: the variant holding its chain, or, before it made
// one, the variant the config forces (auto detection may pick either).
func fixableIn(t Table, all []Table, cfg *config.Config, intent *desired.Firewall) bool {
	if intent == nil {
		return false
	}
	ours := map[string]bool{}
	for _, x := range all {
		if x.has(firewall.Chain) {
			ours[x.Variant] = true
		}
	}
	if len(ours) > 0 {
		return ours[t.Variant]
	}
	switch cfg.Firewall.Backend {
	case firewall.BackendNFT:
		return t.Variant == "nft"
	case firewall.BackendLegacy:
		return t.Variant == "legacy"
	}
	return true
}

// forwardCtx is what judging one table needs besides the table.
type forwardCtx struct {
	bridges []string
	fixable bool // virtbridge keeps its rules in this table
	managed bool // virtbridge keeps firewall rules at all
	docker  bool
	cfgPath string
}

func forwardFinding(t Table, c forwardCtx) Finding {
	v := forwardVerdict(t, firewall.Chain, c.bridges)
	f := Finding{Section: SectionForwarding, Check: "forward", Object: t.Name() + " FORWARD", Status: OK}
	on := strings.Join(c.bridges, ", ")
	switch {
	case v.ours:
		f.Message = fmt.Sprintf("virtbridge's jump (rule %d) accepts bridged frames of %s first", v.acceptedBy, on)
	case v.acceptedBy > 0:
		f.Message = fmt.Sprintf("rule %d (%s) accepts bridged frames of %s first", v.acceptedBy, v.rule, on)
	case !v.blocked():
		f.Message = "no rule drops bridged frames and the policy is " + v.policy
	default:
		f.Status = Fail
		if v.droppedBy > 0 {
			f.Message = fmt.Sprintf("rule %d (-A FORWARD %s) drops bridged frames of %s before any rule accepts them", v.droppedBy, v.rule, on)
		} else {
			f.Message = fmt.Sprintf("policy DROP drops bridged frames of %s: no rule accepts them first", on)
		}
		f.Why = "with bridge-nf-call-iptables=1 every frame bridged between a VM and its uplink passes FORWARD: the VM gets no DHCP lease and no traffic"
		if t.Family == "ipv6" {
			f.Why = "with bridge-nf-call-ip6tables=1 bridged IPv6 frames pass ip6tables FORWARD: neighbour discovery and router advertisements to and from VMs are dropped, so guests get no IPv6 address or neighbours"
			if c.docker {
				f.Why += " (Docker sets this DROP policy for ip6tables too, since it manages IPv6 rules)"
			}
		}
		accept := fmt.Sprintf("`%s -I FORWARD -m physdev --physdev-is-bridged -j ACCEPT`", t.Name())
		switch {
		case c.fixable:
			f.Fix, f.Fixable = fixByVirtbridge+" (it puts its jump at the top of FORWARD)", true
		case c.managed:
			f.Fix = "virtbridge keeps its rules in the other iptables variant, and a packet must pass both: " +
				"drop this table's DROP policy or rule, or " + accept
		default:
			f.Fix = fmt.Sprintf("set firewall: {bridged_forward: accept} in %s, or %s", c.cfgPath, accept)
		}
	}
	return f
}

func dockerFinding(t Table, nfOn, ours bool) Finding {
	f := Finding{Section: SectionForwarding, Check: "docker", Object: t.Name() + " " + firewall.DockerUser, Status: OK}
	jumpsOurs := false
	for _, spec := range t.Rules[firewall.DockerUser] {
		if firewall.Target(spec) == firewall.Chain {
			jumpsOurs = true
		}
	}
	switch {
	case !nfOn:
		f.Message = "Docker is present; bridged frames bypass its rules (bridge-nf-call off)"
	case jumpsOurs:
		f.Message = "Docker is present; virtbridge's jump in DOCKER-USER keeps bridged frames accepted after Docker re-inserts its rules"
	default:
		f.Status = Warn
		f.Message = "Docker is present, and DOCKER-USER does not jump to virtbridge's chain"
		f.Why = "Docker puts its chains above other rules in FORWARD at every restart and sets the policy to DROP (for ip6tables too): bridged VM frames then hit that policy"
		f.Fix = "`" + t.Name() + " -I DOCKER-USER -m physdev --physdev-is-bridged -j ACCEPT`, or let virtbridge manage the firewall (firewall.bridged_forward: accept)"
		if ours && t.has(firewall.DockerUser) {
			f.Fixable, f.Fix = true, fixByVirtbridge+" (it also jumps from DOCKER-USER)"
		}
	}
	return f
}

func firewallFinding(r *Report, s Sources, cfg *config.Config, intent *desired.Firewall) {
	f := Finding{Section: SectionForwarding, Check: "firewall-rules", Object: firewall.Chain, Status: OK}
	switch {
	case intent == nil:
		f.Message = fmt.Sprintf("virtbridge leaves the firewall alone (firewall: {backend: %s, bridged_forward: %s})", cfg.Firewall.Backend, cfg.Firewall.BridgedForward)
	case len(intent.AcceptBridges) == 0 || s.Firewall == nil:
		return
	default:
		problems, err := s.Firewall.Check(context.Background(), *intent)
		switch {
		case err != nil:
			f.Status, f.Message = Warn, "cannot check virtbridge's rules: "+err.Error()
		case len(problems) > 0:
			f.Status, f.Fixable, f.Fix = Warn, true, fixByVirtbridge
			f.Message = strings.Join(problems, "; ")
			f.Why = "virtbridge's rules accept bridged frames of the managed bridges ahead of DROP policies and REJECT rules"
		default:
			f.Message = fmt.Sprintf("chain and jumps in place for %s", strings.Join(intent.AcceptBridges, ", "))
		}
	}
	r.add(f)
}
