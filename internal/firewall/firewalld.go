package firewall

import "fmt"

// firewalld: when it runs, bridged frames cross its table (inet
// firewalld), which drops the forwarded frames of an interface in no zone
// and of a zone without forwarding. virtbridge never edits that table (a
// reload wipes foreign rules): through firewalld's D-Bus API it puts each
// managed bridge into a zone and lets that zone forward within itself,
// runtime and permanent, and records what it changed so that
// firewall-remove undoes exactly that.

// trustedZone opens the host to the whole segment: never chosen unless
// configured (or already the bridge's).
const trustedZone = "trusted"

// chooseZone picks the zone for a bridge: the configured one; else the
// zone virtbridge put it in before (recorded: a bridge moved out of it
// behind virtbridge's back goes back, as a deleted rule comes back; name
// another zone in firewall.firewalld_zone to move it); else the zone the
// bridge is already in (runtime, then permanent: the operator's choice);
// else the zone of its ports (the uplink:
// the host's address moved from it to the bridge, so its INPUT rules stay
// what they were); else firewalld's default zone. It refuses to pick
// `trusted` by itself. It is pure.
func chooseZone(br, configured, recorded, runtime, permanent string, portZones []string, def string) (string, error) {
	switch {
	case configured != "":
		return configured, nil
	case recorded != "":
		return recorded, nil
	case runtime != "":
		return runtime, nil
	case permanent != "":
		return permanent, nil
	}
	z := def
	for _, p := range portZones {
		if p != "" {
			z = p
			break
		}
	}
	if z == trustedZone {
		return "", fmt.Errorf("firewalld zone for bridge %s: its uplink's zone (or the default zone) is %s, which opens the host to the whole segment: "+
			"put the uplink in another zone, or set firewall: {firewalld_zone: %s} to allow it", br, trustedZone, trustedZone)
	}
	if z == "" {
		return "", fmt.Errorf("firewalld zone for bridge %s: firewalld names no default zone", br)
	}
	return z, nil
}

// firewalldRecord is what virtbridge changed in firewalld, kept across
// reboots (the permanent settings outlive them) so that firewall-remove
// undoes exactly that.
type firewalldRecord struct {
	// Interfaces: bridge -> zone virtbridge put it in.
	Interfaces map[string]string `json:"interfaces,omitempty"`
	// Forward: the zones whose forwarding virtbridge turned on.
	Forward []string `json:"forward,omitempty"`
}
