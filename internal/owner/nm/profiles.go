package nm

import (
	"crypto/rand"
	"fmt"
	"maps"

	"github.com/godbus/dbus/v5"

	"github.com/virtbridge/virtbridge/internal/desired"
)

// BridgeProfile is the name of the NetworkManager profile virtbridge makes
// for bridge: the name says whose it is.
func BridgeProfile(bridge string) string { return "virtbridge-" + bridge }

// PortProfile is the name of the profile that makes uplink a port of
// bridge.
func PortProfile(bridge, uplink string) string { return "virtbridge-" + bridge + "-port-" + uplink }

// deprecatedIP are the old forms of addresses and routes that GetSettings
// still returns: NetworkManager ignores the new forms (address-data,
// route-data) in a profile sent with them, so they are left out.
var deprecatedIP = []string{"addresses", "routes"}

// ipSettings copies the uplink profile's IPv4 and IPv6 settings (DHCP
// stays DHCP, static stays static) without their deprecated forms.
func ipSettings(up Settings, into Settings) {
	for _, fam := range []string{"ipv4", "ipv6"} {
		s, ok := up[fam]
		if !ok {
			continue
		}
		c := maps.Clone(s)
		for _, k := range deprecatedIP {
			delete(c, k)
		}
		into[fam] = c
	}
}

// bridgeSettings is the bridge profile: NetworkManager's own bridge b with
// the uplink's MAC (so the DHCP server hands back the same lease) and the
// uplink profile's IP settings; its ports come up with it.
func bridgeSettings(b desired.Bridge, mac string, up Settings) Settings {
	br := map[string]dbus.Variant{"stp": dbus.MakeVariant(b.STP)}
	// NetworkManager takes 2..30 s only; without STP the kernel does not
	// use the delay (virtbridge's default, 0, is then left to NM).
	if b.ForwardDelay >= 2 && b.ForwardDelay <= 30 {
		br["forward-delay"] = dbus.MakeVariant(uint32(b.ForwardDelay))
	}
	eth := map[string]dbus.Variant{"assigned-mac-address": dbus.MakeVariant(mac)}
	if b.MTU > 0 {
		eth["mtu"] = dbus.MakeVariant(uint32(b.MTU))
	}
	s := Settings{
		"connection": {
			"id":                 dbus.MakeVariant(BridgeProfile(b.Name)),
			"uuid":               dbus.MakeVariant(newUUID()),
			"type":               dbus.MakeVariant("bridge"),
			"interface-name":     dbus.MakeVariant(b.Name),
			"autoconnect":        dbus.MakeVariant(true),
			"autoconnect-slaves": dbus.MakeVariant(int32(1)),
		},
		"bridge":         br,
		"802-3-ethernet": eth,
		// What the uplink's own profile gets back at release, whatever
		// run does it: its autoconnect as it was before the handover.
		"user": {"data": dbus.MakeVariant(map[string]string{uplinkAutoconnectKey: yesNo(autoconnect(up))})},
	}
	ipSettings(up, s)
	return s
}

// uplinkAutoconnectKey is the bridge profile's user data recording the
// autoconnect of the uplink's own profile before the handover ("yes",
// "no").
const uplinkAutoconnectKey = "virtbridge.uplink-autoconnect"

// uplinkAutoconnect reads what bridge profile s recorded of the uplink
// profile's autoconnect; true (NetworkManager's default) when it recorded
// nothing (a bridge profile made before virtbridge recorded it).
func uplinkAutoconnect(s Settings) bool {
	data, _ := s["user"]["data"].Value().(map[string]string)
	return data[uplinkAutoconnectKey] != "no"
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// portSettings is the profile that makes the uplink a port of bridge b.
func portSettings(b desired.Bridge, uplink string) Settings {
	return Settings{
		"connection": {
			"id":             dbus.MakeVariant(PortProfile(b.Name, uplink)),
			"uuid":           dbus.MakeVariant(newUUID()),
			"type":           dbus.MakeVariant("802-3-ethernet"),
			"interface-name": dbus.MakeVariant(uplink),
			"master":         dbus.MakeVariant(b.Name),
			"slave-type":     dbus.MakeVariant("bridge"),
			"autoconnect":    dbus.MakeVariant(true),
		},
		"802-3-ethernet": {},
	}
}

// withAutoconnect is profile up with autoconnect set to on, ready for
// Update (deprecated forms left out).
func withAutoconnect(up Settings, on bool) Settings {
	s := Settings{}
	for k, v := range up {
		s[k] = maps.Clone(v)
	}
	for _, fam := range []string{"ipv4", "ipv6"} {
		for _, k := range deprecatedIP {
			delete(s[fam], k)
		}
	}
	if s["connection"] == nil {
		s["connection"] = map[string]dbus.Variant{}
	}
	s["connection"]["autoconnect"] = dbus.MakeVariant(on)
	return s
}

// autoconnect reads a profile's autoconnect (true when unset, NM's
// default).
func autoconnect(s Settings) bool {
	v, ok := s["connection"]["autoconnect"]
	if !ok {
		return true
	}
	b, _ := v.Value().(bool)
	return b
}

// method is a profile's IP method of family fam ("ipv4", "ipv6"), "" if
// unset.
func method(s Settings, fam string) string {
	m, _ := s[fam]["method"].Value().(string)
	return m
}

func newUUID() string {
	var b [16]byte
	rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}
