package doctor

import (
	"fmt"
	"slices"
	"strings"

	"github.com/virtbridge/virtbridge/internal/config"
	"github.com/virtbridge/virtbridge/internal/firewall"
)

// NFUsers finds, cheaply and read-only, what on the host relies on bridged
// frames passing IP filtering (bridge-nf-call-iptables/ip6tables = 1):
// Kubernetes (its configuration, kube-proxy or kubelet running, a CNI
// configuration). Docker and Incus are found by their tables.
type NFUsers interface {
	// NFUsers returns one "who (evidence): what breaks with 0" line each.
	NFUsers() ([]string, error)
}

// Why each user needs bridged frames to pass IP filtering: what setting
// bridge-nf-call-iptables/ip6tables to 0 would break.
const (
	breaksKubernetes = "kube-proxy's Service rules and the network policies would no longer see traffic between pods on a node's bridge (kubeadm requires the setting at 1)"
	breaksDocker     = "Docker's rules for containers on one of its bridges (inter-container isolation with icc=false, published ports reached from the same bridge) would no longer apply"
	breaksIncus      = "Incus's firewall rules for instances on its bridges would no longer see their bridged traffic"
)

// checkBrNetfilter recommends bridge-nf-call-iptables/ip6tables=0 — the
// cleanest fix, since bridged frames then skip every IP forward chain —
// when nothing on the host relies on bridged frames passing IP filtering,
// and says what would break when something does, or when the config sets
// 0 though something does.
func checkBrNetfilter(r *Report, s Sources, cfg *config.Config, rd forwardRead) {
	if len(cfg.Bridges) == 0 {
		return
	}
	v4, err4 := s.Sysctls.Get(nfCallIPTables)
	v6, _ := s.Sysctls.Get(nfCallIP6Tables)
	if err4 != nil {
		return // br_netfilter not loaded, or unreadable: said by bridge-nf-call
	}
	users := tableNFUsers(rd)
	var usersErr error
	if s.NFUsers != nil {
		more, err := s.NFUsers.NFUsers()
		users, usersErr = append(more, users...), err
	}
	f := Finding{Section: SectionForwarding, Check: "br-netfilter", Object: "net.bridge.bridge-nf-call-iptables/ip6tables", Status: OK}
	forcedOff := cfg.Sysctl.BridgeNFCallIPTables == config.Off || cfg.Sysctl.BridgeNFCallIP6Tables == config.Off
	on := v4 == "1" || v6 == "1"
	switch {
	case len(users) > 0 && forcedOff:
		f.Status = Warn
		f.Message = fmt.Sprintf("the config sets bridge_nf_call_iptables/ip6tables to 0, but this host relies on bridged frames passing IP filtering: %s", strings.Join(users, "; "))
		f.Why = "with 0, bridged frames skip every IP forward chain, for every bridge of the network namespace, not only virtbridge's"
		f.Fix = fmt.Sprintf("leave them alone (remove bridge_nf_call_iptables/ip6tables from sysctl: in %s) and let virtbridge accept bridged frames in each forward chain instead (firewall: {bridged_forward: accept})", s.ConfigPath)
	case len(users) > 0:
		f.Message = fmt.Sprintf("keep %s/%s: this host relies on bridged frames passing IP filtering, and 0 would break it: %s", v4, v6, strings.Join(users, "; "))
	case !on:
		f.Message = fmt.Sprintf("%s/%s: bridged frames skip every IP forward chain, and nothing found on this host relies on them passing it", v4, v6)
	case usersErr != nil:
		f.Status = Warn
		f.Message = "cannot tell whether setting it to 0 is safe: " + usersErr.Error()
		f.Fix = "run the doctor as root"
	default:
		f.Message = fmt.Sprintf("%s/%s, and nothing found on this host relies on bridged frames passing IP filtering (no Kubernetes, kube-proxy, kubelet or CNI configuration, no Docker or Incus tables): 0 is the cleanest fix", v4, v6)
		f.Fix = fmt.Sprintf("set sysctl: {bridge_nf_call_iptables: 0, bridge_nf_call_ip6tables: 0} in %s: bridged frames then skip every IP forward chain whoever owns it, "+
			"and virtbridge keeps them at 0 (the daemon re-checks them on its firewall timer, also after br_netfilter is loaded late)", s.ConfigPath)
	}
	r.add(f)
}

// tableNFUsers are the users of bridged IP filtering found by their
// tables: Docker (iptables chains or its nftables tables) and Incus.
func tableNFUsers(rd forwardRead) []string {
	var out []string
	if slices.ContainsFunc(rd.tables, isDocker) || slices.ContainsFunc(rd.allChains, func(c firewall.NativeChain) bool { return c.Owner == firewall.OwnerDocker }) {
		out = append(out, "Docker (its chains or tables): "+breaksDocker)
	}
	if slices.ContainsFunc(rd.allChains, func(c firewall.NativeChain) bool { return c.Owner == firewall.OwnerIncus }) {
		out = append(out, "Incus (table inet incus): "+breaksIncus)
	}
	return out
}
