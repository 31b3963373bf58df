package nm

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/godbus/dbus/v5"

	"github.com/virtbridge/virtbridge/internal/change"
	"github.com/virtbridge/virtbridge/internal/desired"
)

// Checkpoint flags: a rollback deletes the profiles made since and
// disconnects (removes) the devices made since, the bridge.
const (
	cpDeleteNewConnections = 0x2
	cpDisconnectNewDevices = 0x4
)

// ErrNotOwner: NetworkManager does not own the uplink (Detect says why
// not), so there is nothing to hand over to it.
var ErrNotOwner = errors.New("NetworkManager does not own the uplink")

// ErrRolledBack: the handoff was made, the probe failed, and the
// checkpoint was rolled back: the host is as it was before.
var ErrRolledBack = errors.New("handoff rolled back")

// Spec is one handoff.
type Spec struct {
	Bridge desired.Bridge // Name, Uplink, STP, ForwardDelay, MTU
	// Timeout bounds the activation and the probe together (30 s when
	// zero). NetworkManager rolls the checkpoint back by itself if
	// virtbridge has neither committed nor rolled back 60 s after that.
	Timeout time.Duration
	// Probe checks, until ctx ends, that the host reaches its default
	// gateway through the bridge (links.Manager.Probe in the host's
	// namespace). It must not change the host.
	Probe func(ctx context.Context, bridge string) error
}

// Result is what a handoff did and how long it took.
type Result struct {
	Changes []change.Change // none when the bridge was NetworkManager's already
	Handoff time.Duration   // from the checkpoint to the bridge activated with its address
	Probe   time.Duration   // the probe, after that

	// What Release needs to give the uplink back: its own profile and
	// that profile's autoconnect before, and the profiles made.
	uplinkConn, bridgeConn, portConn dbus.ObjectPath
	uplinkID                         string
	uplinkSettings                   Settings
	// What undoing a reapply needs: the bridge profile's settings and the
	// bridge's MTU before.
	bridgeName   string
	bridgeBefore Settings
	bridgeMTU    uint32
}

// Handover makes bridge s.Bridge NetworkManager's own in place of the
// uplink's profile (which stays, deactivated, with autoconnect off), inside
// a checkpoint: it adds the bridge and port profiles, activates them,
// waits for the bridge to be activated with an address where the uplink
// profile had one, probes, and commits; if anything fails it rolls the
// checkpoint back, waits for the uplink's profile to be active again and
// returns an error wrapping ErrRolledBack that says what the probe saw.
// With the bridge profile active and the uplink its port (handed over
// earlier), it only brings the profile's stp, forward_delay and mtu in
// line with s.Bridge (reapply), changing nothing when they are.
func (c *Client) Handover(ctx context.Context, s Spec) (Result, error) {
	var r Result
	b := s.Bridge
	if s.Timeout == 0 {
		s.Timeout = 30 * time.Second
	}
	up, ok, err := c.device(ctx, b.Uplink)
	if err != nil {
		return r, err
	}
	if !ok || !up.managed || up.conn == noObject || up.flags&connFlagExternal != 0 {
		return r, fmt.Errorf("handing uplink %q of bridge %q over to NetworkManager: no profile of NetworkManager's is active on it: %w", b.Uplink, b.Name, ErrNotOwner)
	}
	if up.id == PortProfile(b.Name, b.Uplink) {
		if br, ok, err := c.device(ctx, b.Name); err == nil && ok && br.id == BridgeProfile(b.Name) && br.state == stateActivated {
			return c.reapply(ctx, s, br)
		}
		return r, fmt.Errorf("bridge %q: its NetworkManager profile %q is not active though its port %q is: "+
			"look at `nmcli con show %s`", b.Name, BridgeProfile(b.Name), b.Uplink, BridgeProfile(b.Name))
	}
	var upSettings Settings
	if err := c.call(ctx, up.conn, ifaceConn+".GetSettings", nil, &upSettings); err != nil {
		return r, fmt.Errorf("reading NetworkManager profile %q of %q: %w", up.id, b.Uplink, err)
	}
	start := time.Now()
	var cp dbus.ObjectPath
	rollbackAfter := uint32((s.Timeout + 60*time.Second) / time.Second)
	if err := c.call(ctx, nmPath, ifaceNM+".CheckpointCreate", []any{[]dbus.ObjectPath{}, rollbackAfter,
		uint32(cpDeleteNewConnections | cpDisconnectNewDevices)}, &cp); err != nil {
		return r, fmt.Errorf("creating a NetworkManager checkpoint before bridging %q: %w", b.Uplink, err)
	}
	actx, cancel := context.WithTimeout(ctx, s.Timeout)
	defer cancel()
	r.uplinkConn, r.uplinkID, r.uplinkSettings = up.conn, up.id, upSettings
	r.bridgeConn, r.portConn, err = c.activate(actx, b, up, upSettings)
	r.Handoff = time.Since(start)
	if err == nil && s.Probe != nil {
		pstart := time.Now()
		err = s.Probe(actx, b.Name)
		r.Probe = time.Since(pstart)
	}
	if err != nil {
		return r, c.rollback(ctx, cp, b, up, upSettings, err)
	}
	if err := c.call(ctx, nmPath, ifaceNM+".CheckpointDestroy", []any{cp}); err != nil {
		return r, c.rollback(ctx, cp, b, up, upSettings, fmt.Errorf("committing the NetworkManager checkpoint: %w", err))
	}
	r.Changes = []change.Change{
		{Kind: change.BridgeCreated, Object: b.Name, After: fmt.Sprintf("NetworkManager profile %q", BridgeProfile(b.Name))},
		{Kind: change.UplinkEnslaved, Object: b.Uplink, Before: fmt.Sprintf("NetworkManager profile %q (now autoconnect no)", up.id),
			After: fmt.Sprintf("%s (NetworkManager profile %q)", b.Name, PortProfile(b.Name, b.Uplink))},
	}
	return r, nil
}

// activate adds the profiles, turns the uplink profile's autoconnect off
// and activates the bridge with the uplink as its port, then waits until
// the bridge is activated with its addresses.
func (c *Client) activate(ctx context.Context, b desired.Bridge, up device, upSettings Settings) (brConn, portConn dbus.ObjectPath, err error) {
	err = c.activateInto(ctx, b, up, upSettings, &brConn, &portConn)
	return brConn, portConn, err
}

// activateInto is activate, storing the paths of the profiles it adds.
func (c *Client) activateInto(ctx context.Context, b desired.Bridge, up device, upSettings Settings, brConn, portConn *dbus.ObjectPath) error {
	var ac dbus.ObjectPath
	if err := c.call(ctx, settingsPath, ifaceSettings+".AddConnection", []any{bridgeSettings(b, up.mac, upSettings)}, brConn); err != nil {
		return fmt.Errorf("adding NetworkManager profile %q: %w", BridgeProfile(b.Name), err)
	}
	if err := c.call(ctx, settingsPath, ifaceSettings+".AddConnection", []any{portSettings(b, b.Uplink)}, portConn); err != nil {
		return fmt.Errorf("adding NetworkManager profile %q: %w", PortProfile(b.Name, b.Uplink), err)
	}
	if err := c.call(ctx, up.conn, ifaceConn+".Update", []any{withAutoconnect(upSettings, false)}); err != nil {
		return fmt.Errorf("turning autoconnect off in NetworkManager profile %q: %w", up.id, err)
	}
	if err := c.call(ctx, nmPath, ifaceNM+".ActivateConnection", []any{*brConn, noObject, noObject}, &ac); err != nil {
		return fmt.Errorf("activating NetworkManager profile %q: %w", BridgeProfile(b.Name), err)
	}
	if err := c.call(ctx, nmPath, ifaceNM+".ActivateConnection", []any{*portConn, up.path, noObject}, &ac); err != nil {
		return fmt.Errorf("activating NetworkManager profile %q on %q: %w", PortProfile(b.Name, b.Uplink), b.Uplink, err)
	}
	wantIP := method(upSettings, "ipv4") != "disabled" && method(upSettings, "ipv4") != ""
	seen := ""
	for {
		ok, what, err := c.bridged(ctx, b, wantIP)
		if err == nil && ok {
			return nil
		}
		seen = what
		if err != nil {
			seen = err.Error()
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for NetworkManager to activate bridge %q: %s", b.Name, seen)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// bridged reports whether the bridge profile is activated on b.Name with
// an IPv4 address (when wantIP) and the port profile on the uplink; what
// says what is missing.
func (c *Client) bridged(ctx context.Context, b desired.Bridge, wantIP bool) (ok bool, what string, err error) {
	br, found, err := c.device(ctx, b.Name)
	if err != nil || !found {
		return false, "the bridge is not there yet", err
	}
	if br.id != BridgeProfile(b.Name) || br.state != stateActivated {
		return false, fmt.Sprintf("bridge device state %d, profile %q", br.state, br.id), nil
	}
	up, _, err := c.device(ctx, b.Uplink)
	if err != nil {
		return false, "", err
	}
	if up.id != PortProfile(b.Name, b.Uplink) || up.state != stateActivated {
		return false, fmt.Sprintf("uplink device state %d, profile %q", up.state, up.id), nil
	}
	if !wantIP {
		return true, "", nil
	}
	var ip4 dbus.ObjectPath
	if err := c.prop(ctx, br.path, ifaceDevice, "Ip4Config", &ip4); err != nil {
		return false, "", err
	}
	var addrs []map[string]dbus.Variant
	if ip4 != noObject {
		if err := c.prop(ctx, ip4, ifaceIP4, "AddressData", &addrs); err != nil {
			return false, "", err
		}
	}
	if len(addrs) == 0 {
		return false, "the bridge has no IPv4 address yet", nil
	}
	return true, "", nil
}
