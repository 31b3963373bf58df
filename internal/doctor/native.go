package doctor

import (
	"fmt"

	"github.com/virtbridge/virtbridge/internal/config"
	"github.com/virtbridge/virtbridge/internal/firewall"
	"github.com/virtbridge/virtbridge/internal/policy"
)

// NativeChains reads the base chains on the forward hook of the native
// nftables tables (not iptables-nft's), in hook priority order.
type NativeChains interface {
	ForwardChains() ([]firewall.NativeChain, error)
}

// whyNative says why a native drop matters even where iptables accepts.
const whyNative = "with bridge-nf-call-iptables/ip6tables=1 every frame bridged between a VM and its uplink " +
	"crosses every forward base chain, and in nftables an accept ends only its own chain while a drop anywhere is final " +
	"(virtbridge's iptables rules cannot outvote it): the VM gets no DHCP lease and no traffic"

// checkNative judges, for each managed bridge, every native forward base
// chain its bridged frames cross, and names the first rule or policy that
// may drop them, with the fix that fits the chain's owner.
func checkNative(r *Report, s Sources, cfg *config.Config, nfOn map[string]bool, rd forwardRead) {
	if !rd.readNative {
		return
	}
	chains, err := rd.chains, rd.chainsErr
	if err != nil {
		r.add(Finding{Section: SectionForwarding, Check: "nft-forward", Status: Warn, Object: "nftables",
			Message: "cannot read the nftables forward chains: " + err.Error(), Fix: "run the doctor as root"})
		return
	}
	for _, c := range chains {
		if !crosses(c.Family, nfOn) {
			continue
		}
		for _, b := range cfg.Bridges {
			r.add(nativeFinding(firewall.Judge(c, b.Name), b.Name, cfg, s.ConfigPath))
		}
		if c.Owner == firewall.OwnerDocker {
			r.add(dockerNftFinding(c))
		}
	}
}

// crosses tells whether bridged frames reach chains of family fam.
func crosses(fam string, nfOn map[string]bool) bool {
	switch fam {
	case "ip":
		return nfOn["ipv4"]
	case "ip6":
		return nfOn["ipv6"]
	}
	return nfOn["ipv4"] || nfOn["ipv6"]
}

func nativeFinding(v firewall.Verdict, br string, cfg *config.Config, cfgPath string) Finding {
	c := v.Chain
	f := Finding{Section: SectionForwarding, Check: "nft-forward", Status: OK,
		Object: fmt.Sprintf("nft %s (%s, priority %d) for %s", c.Name(), c.Owner, c.Priority, br)}
	if !v.Drops {
		f.Message = fmt.Sprintf("bridged frames of %s pass (policy %s)", br, c.Policy)
		return f
	}
	f.Status, f.Why = Fail, whyNative
	f.Message = fmt.Sprintf("%s may drop bridged frames of %s before any rule accepts them (%s's table)", c.Name(), br, c.Owner)
	if v.At != "" {
		f.Message += ": " + v.At
	}
	f.Fix = nativeFix(c, br)
	if c.Owner == firewall.OwnerFirewalld && policy.FirewallIntent(cfg) != nil {
		f.Fixable = true
		f.Fix = fixByVirtbridge + " (through firewalld's D-Bus API it puts " + br + " into its uplink's zone, or firewall.firewalld_zone, and lets that zone forward, runtime and permanent)"
		return f
	}
	if c.Owner != firewall.OwnerAdmin {
		return f
	}
	switch {
	case policy.FirewallIntent(cfg) == nil:
		f.Fix = fmt.Sprintf("set firewall: {bridged_forward: accept} in %s (virtbridge then inserts that accept rule itself), or %s", cfgPath, f.Fix)
	case cfg.Firewall.NativeTables == config.LeaveForward:
		f.Fix = fmt.Sprintf("virtbridge refuses to start VMs on %s while firewall.native_tables is leave: set firewall: {native_tables: accept} in %s, or %s", br, cfgPath, f.Fix)
	default:
		f.Fixable = true
		f.Fix = fixByVirtbridge + " (it inserts an accept rule for " + br + ", tagged with a comment, at the top of that chain)"
	}
	return f
}

// nfCallOff is the fix that works whoever owns the chain, when nothing on
// the host needs bridged frames filtered by IP rules.
const nfCallOff = "or, if nothing on this host filters bridged frames by IP rules (Kubernetes nodes and Docker's inter-container isolation do), " +
	"set sysctl: {bridge_nf_call_iptables: 0, bridge_nf_call_ip6tables: 0} in the config: bridged frames then skip every IP forward chain"

// nativeFix says, by owner, what lets the frames through.
func nativeFix(c firewall.NativeChain, br string) string {
	switch c.Owner {
	case firewall.OwnerFirewalld:
		return fmt.Sprintf("put %s in the zone its uplink is in and let that zone forward within itself: "+
			"`firewall-cmd --permanent --zone=ZONE --add-interface=%s && firewall-cmd --permanent --zone=ZONE --add-forward && firewall-cmd --reload` "+
			"(ZONE: `firewall-cmd --get-zone-of-interface=UPLINK`; not `trusted`, which opens the host to the whole segment); never edit firewalld's table, a reload wipes it; %s", br, br, nfCallOff)
	case firewall.OwnerDocker:
		return "Docker's table is Docker's (and its nftables backend has no DOCKER-USER chain, so no rule of yours can come first): " +
			"attach the VMs to a bridge Docker does not filter, " + nfCallOff
	case firewall.OwnerLibvirt, firewall.OwnerIncus:
		return fmt.Sprintf("%s's table is %s's, and it rewrites it: change that network's configuration so it does not filter %s, %s", c.Owner, c.Owner, br, nfCallOff)
	}
	return fmt.Sprintf("`nft insert rule %s %s %s iifname %q oifname %q accept`, %s", c.Family, c.Table, c.Chain, br, br, nfCallOff)
}

// dockerNftFinding says that Docker keeps its rules in nftables, where
// virtbridge's DOCKER-USER jump has nowhere to go.
func dockerNftFinding(c firewall.NativeChain) Finding {
	return Finding{Section: SectionForwarding, Check: "docker", Status: OK, Object: "nft " + c.Family + " " + c.Table,
		Message: "Docker keeps its rules in nftables (its nftables backend, Docker 29): there is no DOCKER-USER chain, " +
			"so virtbridge has no jump there; whether Docker's chain " + c.Chain + " drops bridged frames is judged above"}
}
