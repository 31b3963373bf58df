package doctor

import (
	"fmt"

	"github.com/virtbridge/virtbridge/internal/config"
	"github.com/virtbridge/virtbridge/internal/owner/nm"
)

// Fixes that keep one manager off a link.
const (
	nmOffFix       = "keep NetworkManager off %[1]s: `nmcli device set %[1]s managed no`, and unmanaged-devices=interface-name:%[1]s in /etc/NetworkManager/conf.d/virtbridge.conf"
	networkdOffFix = "keep systemd-networkd off %[1]s: a .network matching %[1]s with [Link] Unmanaged=yes whose name sorts before %[2]s, then `networkctl reload`"
)

// managerConflicts reports NetworkManager and systemd-networkd fighting
// over bridge b (br, when it exists) or its uplink up (when it exists):
// both managing one link, NetworkManager holding a bridge it did not make
// as "connected (externally)", the uplink's own NetworkManager profile
// active (or set to autoconnect) on a bridge port, networkd configuring a
// port of a bridge it did not make. Each finding names the objects, says
// what will happen and the fix.
func managerConflicts(r *Report, s Sources, b config.Bridge, br Link, hasBr bool, up Link, hasUp bool) {
	if s.Managers == nil {
		return
	}
	var brm, upm LinkManagers
	var brErr, upErr error
	if hasBr {
		brm, brErr = s.Managers.Of(br)
		if brErr == nil {
			bothManagers(r, br.Name, brm)
			nmExternalBridge(r, b, brm)
		}
	}
	if !hasUp {
		return
	}
	upm, upErr = s.Managers.Of(up)
	if upErr != nil {
		return
	}
	bothManagers(r, up.Name, upm)
	if up.Master != b.Name {
		return
	}
	uplinkNMProfile(r, b, up.Name, upm.NM)
	if hasBr && brErr == nil {
		networkdForeignPort(r, b, up.Name, upm, brm)
	}
}

// bothManagers: NetworkManager and networkd both configure link.
func bothManagers(r *Report, link string, m LinkManagers) {
	if !(m.NM.Configures() || m.FromFiles && m.NM.Managed) || !m.Networkd.Configures() {
		return
	}
	nmBy := "NetworkManager"
	if m.NM.Profile != "" {
		nmBy = fmt.Sprintf("NetworkManager (profile %q, %s)", m.NM.Profile, m.NM.State)
	}
	r.add(Finding{Section: SectionBridges, Check: "managers-both", Status: Fail, Object: link,
		Message: fmt.Sprintf("%s and systemd-networkd (%s from %s) both configure %s", nmBy, m.Networkd.Admin, m.Networkd.File, link),
		Why: "each runs its own DHCP client and sets its own addresses and routes on it, and puts its own back over the other's " +
			"at each lease, renewal or reload: the host's address and default route come and go, and a bridge port may be taken out of its bridge",
		Fix: "leave " + link + " to one of them: " + fmt.Sprintf(networkdOffFix, link, m.Networkd.File) + "; or " + fmt.Sprintf(nmOffFix, link)})
}

// nmExternalBridge: NetworkManager holds bridge b, made by virtbridge's
// kernel path or by networkd, as "connected (externally)".
func nmExternalBridge(r *Report, b config.Bridge, m LinkManagers) {
	if !m.NM.Managed || !m.NM.External {
		return
	}
	maker := "virtbridge's kernel path (or someone else outside NetworkManager)"
	if m.Networkd.Configures() {
		maker = "systemd-networkd, from " + m.Networkd.File
	}
	r.add(Finding{Section: SectionBridges, Check: "bridge-nm-external", Status: Warn, Object: b.Name,
		Message: fmt.Sprintf("NetworkManager holds it as \"connected (externally)\" (%s), though %s made it", m.NM.State, maker),
		Why: "NetworkManager manages a bridge it has no profile for: any NetworkManager profile for " + b.Name +
			" that activates (autoconnect, `nmcli device connect`, a checkpoint rollback) reconfigures it and its ports behind the back of whoever made it",
		Fix: fmt.Sprintf(nmOffFix, b.Name) + "; or, when NetworkManager owns the uplink, let virtbridge hand the bridge over to it (manager: auto)"})
}

// uplinkNMProfile: the uplink's own NetworkManager profile is active on
// it, or autoconnects, while it is a port of bridge b (upNM: what
// NetworkManager makes of the uplink).
func uplinkNMProfile(r *Report, b config.Bridge, uplink string, upNM nm.Link) {
	if !upNM.Managed {
		return
	}
	if upNM.Configures() && !upNM.Virtbridge {
		r.add(Finding{Section: SectionBridges, Check: "uplink-nm-profile", Status: Fail, Object: uplink,
			Message: fmt.Sprintf("NetworkManager profile %q is active on %s (%s), a port of %s", upNM.Profile, uplink, upNM.State, b.Name),
			Why: fmt.Sprintf("its DHCP renewals never get through a bridge port: at lease end NetworkManager activates %q again, "+
				"takes %s out of %s and puts the address back on it, cutting the VMs (and the host's address on %s) off", upNM.Profile, uplink, b.Name, b.Name),
			Fix: fmt.Sprintf("`virtbridge release %s`, then let virtbridge hand %s over to NetworkManager (manager: auto, at the next VM start or by virtbridged); or ",
				b.Name, b.Name) + fmt.Sprintf(nmOffFix, uplink)})
		return
	}
	port := ""
	if upNM.Virtbridge {
		port = fmt.Sprintf(" (profile %q)", upNM.Profile)
	}
	for _, p := range upNM.Own {
		if !p.Autoconnect {
			continue
		}
		r.add(Finding{Section: SectionBridges, Check: "uplink-nm-profile", Status: Warn, Object: uplink,
			Message: fmt.Sprintf("%s's own NetworkManager profile %q has autoconnect on while %s is a port of %s%s", uplink, p.ID, uplink, b.Name, port),
			Why: fmt.Sprintf("at a NetworkManager restart, a link flap or a failed activation NetworkManager may activate %q: "+
				"it takes %s out of %s and puts the address back on it", p.ID, uplink, b.Name),
			Fix: fmt.Sprintf("`nmcli connection modify %q connection.autoconnect no` (`virtbridge release %s` gives it back as it was)", p.ID, b.Name)})
	}
}

// networkdForeignPort: networkd configures uplink, a port of bridge b,
// though it does not configure b: networkd cannot adopt a bridge it did
// not make.
func networkdForeignPort(r *Report, b config.Bridge, uplink string, upm, brm LinkManagers) {
	nd := upm.Networkd
	if !nd.Configures() || brm.Networkd.Configures() {
		return
	}
	why := "networkd cannot adopt a bridge it did not make: it keeps configuring " + uplink + " as its own link — its DHCP on a bridge port never renews, " +
		"the lease expires and it loops on DISCOVER — and its next reload or lease puts its own configuration back on " + uplink
	if nd.Admin == "configuring" {
		why = "networkd cannot adopt a bridge it did not make: " + uplink + " hangs configuring (a Bridge= port waits at \"Requested to set master\" forever), " +
			"and its next reload or lease puts its own configuration back on " + uplink
	}
	r.add(Finding{Section: SectionBridges, Check: "uplink-networkd-port", Status: Fail, Object: uplink,
		Message: fmt.Sprintf("systemd-networkd configures %s (%s from %s), a port of %s, a bridge networkd did not make", uplink, nd.Admin, nd.File, b.Name),
		Why:     why,
		Fix: fmt.Sprintf("`virtbridge release %s`, then let virtbridge hand %s over to systemd-networkd (manager: auto: a .netdev and .network files of its own); or ",
			b.Name, b.Name) + fmt.Sprintf(networkdOffFix, uplink, nd.File)})
}
