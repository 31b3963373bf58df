package nm

import (
	"context"
	"fmt"
	"slices"
	"strings"
)

// Link is what NetworkManager makes of one link, as doctor shows it.
type Link struct {
	// Known: NetworkManager has a device for the link.
	Known bool
	// Managed: NetworkManager manages the device (not "unmanaged").
	Managed bool
	// State is the device state by name: "activated", "disconnected",
	// "unmanaged", ...
	State string
	// Profile is the active profile's name, "" when none is active.
	Profile string
	// External: the active profile is one NetworkManager made up to show
	// a link configured by someone else ("connected (externally)").
	External bool
	// Virtbridge: the active profile is one of virtbridge's (BridgeProfile
	// or a PortProfile).
	Virtbridge bool
	// Own are the profiles bound to the link by interface name that are
	// not virtbridge's (the uplink's own profile), by name.
	Own []Profile
}

// Profile is one profile bound to a link.
type Profile struct {
	ID          string
	Autoconnect bool
	Active      bool
}

// Configures reports whether NetworkManager configures the link: it
// manages it and a profile of its own (not a made-up external one) is
// active on it.
func (l Link) Configures() bool { return l.Managed && l.Profile != "" && !l.External }

// deviceStates names NMDeviceState values.
var deviceStates = map[uint32]string{0: "unknown", 10: "unmanaged", 20: "unavailable", 30: "disconnected", 40: "prepare",
	50: "config", 60: "need-auth", 70: "ip-config", 80: "ip-check", 90: "secondaries", 100: "activated", 110: "deactivating", 120: "failed"}

// Virtbridge reports whether profile id is one of virtbridge's.
func Virtbridge(id string) bool { return strings.HasPrefix(id, "virtbridge-") }

// Inspect reads what NetworkManager makes of each link of names
// (read-only). running is false, with no error, when NetworkManager is not
// on the bus; a link it does not know has Known false. ctx bounds every
// call: a NetworkManager that does not answer ends with ctx's error.
func (c *Client) Inspect(ctx context.Context, names []string) (links map[string]Link, running bool, err error) {
	if running, err = c.running(ctx); err != nil || !running {
		return nil, running, err
	}
	conns, err := c.profiles(ctx)
	if err != nil {
		return nil, true, err
	}
	links = make(map[string]Link, len(names))
	for _, name := range names {
		d, ok, err := c.device(ctx, name)
		if err != nil {
			return nil, true, fmt.Errorf("asking NetworkManager about %q: %w", name, err)
		}
		l := Link{Known: ok}
		if ok {
			l.Managed, l.State = d.managed && d.state != stateUnmanaged, deviceStates[d.state]
			if l.State == "" {
				l.State = fmt.Sprint(d.state)
			}
			if d.conn != noObject {
				l.Profile, l.External, l.Virtbridge = d.id, d.flags&connFlagExternal != 0, Virtbridge(d.id)
			}
		}
		for p, s := range conns {
			id, _ := s["connection"]["id"].Value().(string)
			ifname, _ := s["connection"]["interface-name"].Value().(string)
			if ifname == name && !Virtbridge(id) && !(l.External && p == d.conn) {
				l.Own = append(l.Own, Profile{ID: id, Autoconnect: autoconnect(s), Active: ok && p == d.conn})
			}
		}
		slices.SortFunc(l.Own, func(a, b Profile) int { return strings.Compare(a.ID, b.ID) })
		links[name] = l
	}
	return links, true, nil
}
