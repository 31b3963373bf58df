package nm

import (
	"context"
	"fmt"
	"strings"

	"github.com/godbus/dbus/v5"

	"github.com/virtbridge/virtbridge/internal/change"
	"github.com/virtbridge/virtbridge/internal/desired"
)

// MadeBridge reports whether NetworkManager runs and has a profile of its
// own active on bridge: id names it (virtbridge's are BridgeProfile's).
// It only reads.
func (c *Client) MadeBridge(ctx context.Context, bridge string) (id string, ok bool, err error) {
	if up, err := c.running(ctx); err != nil || !up {
		return "", false, err
	}
	d, found, err := c.device(ctx, bridge)
	if err != nil || !found || !d.managed || d.conn == noObject || d.flags&connFlagExternal != 0 {
		return "", false, err
	}
	return d.id, true, nil
}

// ReleaseBridge gives the uplink of bridge b, made by Handover in an
// earlier run, back to its own profile (`virtbridge release`): it finds
// virtbridge's bridge and port profiles and the uplink's own profile (the
// other profile bound to the uplink), and does what Release does, the
// uplink's profile getting back the autoconnect it had before the handover
// (recorded in the bridge profile's user data; on when not recorded). b.Uplink may be empty: the
// port profile names the uplink.
func (c *Client) ReleaseBridge(ctx context.Context, b desired.Bridge) ([]change.Change, error) {
	conns, err := c.profiles(ctx)
	if err != nil {
		return nil, err
	}
	var r Result
	portPrefix := PortProfile(b.Name, "")
	upAuto := true
	for p, s := range conns {
		id, _ := s["connection"]["id"].Value().(string)
		switch {
		case id == BridgeProfile(b.Name):
			r.bridgeConn, upAuto = p, uplinkAutoconnect(s)
		case strings.HasPrefix(id, portPrefix) && (b.Uplink == "" || id == PortProfile(b.Name, b.Uplink)):
			r.portConn, b.Uplink = p, strings.TrimPrefix(id, portPrefix)
		}
	}
	if r.bridgeConn == "" || r.portConn == "" {
		return nil, fmt.Errorf("releasing bridge %q: NetworkManager has no profiles %q and %q-UPLINK of virtbridge's; "+
			"it was not made by virtbridge: give its uplink back with nmcli", b.Name, BridgeProfile(b.Name), portPrefix)
	}
	for p, s := range conns {
		id, _ := s["connection"]["id"].Value().(string)
		ifname, _ := s["connection"]["interface-name"].Value().(string)
		if ifname == b.Uplink && p != r.portConn {
			if r.uplinkConn != "" {
				return nil, fmt.Errorf("releasing bridge %q: several NetworkManager profiles (%q, %q) are bound to uplink %q; "+
					"delete profiles %q and %q and activate the uplink's with nmcli", b.Name, r.uplinkID, id, b.Uplink,
					BridgeProfile(b.Name), PortProfile(b.Name, b.Uplink))
			}
			r.uplinkConn, r.uplinkID, r.uplinkSettings = p, id, withAutoconnect(s, upAuto)
		}
	}
	if r.uplinkConn == "" {
		return nil, fmt.Errorf("releasing bridge %q: NetworkManager has no profile of uplink %q to give it back to; "+
			"add one (nmcli connection add type ethernet ifname %s ...), then release again", b.Name, b.Uplink, b.Uplink)
	}
	r.Changes = []change.Change{
		{Kind: change.UplinkReleased, Object: b.Uplink, Before: fmt.Sprintf("%s (NetworkManager profile %q)", b.Name, PortProfile(b.Name, b.Uplink)),
			After: fmt.Sprintf("NetworkManager profile %q (autoconnect %s)", r.uplinkID, yesNo(upAuto))},
		{Kind: change.BridgeDeleted, Object: b.Name, Before: fmt.Sprintf("NetworkManager profile %q", BridgeProfile(b.Name))},
	}
	if err := c.Release(ctx, b, r); err != nil {
		return nil, err
	}
	return r.Changes, nil
}

// profiles reads every profile NetworkManager has, by path.
func (c *Client) profiles(ctx context.Context) (map[dbus.ObjectPath]Settings, error) {
	var paths []dbus.ObjectPath
	if err := c.call(ctx, settingsPath, ifaceSettings+".ListConnections", nil, &paths); err != nil {
		return nil, fmt.Errorf("listing NetworkManager's profiles: %w", err)
	}
	out := make(map[dbus.ObjectPath]Settings, len(paths))
	for _, p := range paths {
		var s Settings
		if err := c.call(ctx, p, ifaceConn+".GetSettings", nil, &s); err != nil {
			return nil, fmt.Errorf("reading NetworkManager profile %s: %w", p, err)
		}
		out[p] = s
	}
	return out, nil
}
