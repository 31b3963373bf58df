package nm

import (
	"context"
	"fmt"
	"maps"
	"strings"
	"time"

	"github.com/godbus/dbus/v5"

	"github.com/virtbridge/virtbridge/internal/change"
	"github.com/virtbridge/virtbridge/internal/desired"
)

// nmForwardDelay is NetworkManager's forward delay when a profile sets
// none.
const nmForwardDelay = 15

// bridgeDiff compares bridge profile cur with what b asks for (the
// settings bridgeSettings would write: stp, forward-delay when STP is on
// and 2..30 s, mtu when set): next is cur with them changed, nil when
// nothing differs; before and after say what changes.
func bridgeDiff(cur Settings, b desired.Bridge) (next Settings, before, after []string) {
	stp, ok := cur["bridge"]["stp"].Value().(bool)
	if !ok {
		stp = true // NetworkManager's default
	}
	delay, ok := cur["bridge"]["forward-delay"].Value().(uint32)
	if !ok {
		delay = nmForwardDelay
	}
	mtu, _ := cur["802-3-ethernet"]["mtu"].Value().(uint32)
	next = withoutDeprecated(cur)
	for _, k := range []string{"bridge", "802-3-ethernet"} {
		if next[k] == nil {
			next[k] = map[string]dbus.Variant{}
		}
	}
	if stp != b.STP {
		next["bridge"]["stp"] = dbus.MakeVariant(b.STP)
		before, after = append(before, "stp "+onOff(stp)), append(after, "stp "+onOff(b.STP))
	}
	if b.STP && b.ForwardDelay >= 2 && b.ForwardDelay <= 30 && delay != uint32(b.ForwardDelay) {
		next["bridge"]["forward-delay"] = dbus.MakeVariant(uint32(b.ForwardDelay))
		before, after = append(before, fmt.Sprintf("forward_delay %d", delay)), append(after, fmt.Sprintf("forward_delay %d", b.ForwardDelay))
	}
	if b.MTU > 0 && mtu != uint32(b.MTU) {
		next["802-3-ethernet"]["mtu"] = dbus.MakeVariant(uint32(b.MTU))
		before, after = append(before, fmt.Sprintf("mtu %d", mtu)), append(after, fmt.Sprintf("mtu %d", b.MTU))
	}
	if len(after) == 0 {
		return nil, nil, nil
	}
	return next, before, after
}

// withoutDeprecated is a copy of profile s without the deprecated forms
// of its addresses and routes, ready for Update.
func withoutDeprecated(s Settings) Settings {
	out := Settings{}
	for k, v := range s {
		out[k] = maps.Clone(v)
	}
	for _, fam := range []string{"ipv4", "ipv6"} {
		for _, k := range deprecatedIP {
			delete(out[fam], k)
		}
	}
	return out
}

func onOff(b bool) string {
	if b {
		return "on"
	}
	return "off"
}

// reapply brings the settings of bridge profile br (active, the bridge
// handed over earlier) in line with s.Bridge's stp, forward_delay and mtu:
// inside a checkpoint it updates the profile and reapplies it to the
// bridge device (Device.Reapply: no re-activation, the ports and the lease
// stay), waits for the bridge to be activated again, probes and commits;
// on failure it rolls the checkpoint back and puts the profile's settings
// back. Nothing differing, it changes nothing.
func (c *Client) reapply(ctx context.Context, s Spec, br device) (Result, error) {
	var r Result
	b := s.Bridge
	var cur Settings
	if err := c.call(ctx, br.conn, ifaceConn+".GetSettings", nil, &cur); err != nil {
		return r, fmt.Errorf("reading NetworkManager profile %q: %w", br.id, err)
	}
	next, before, after := bridgeDiff(cur, b)
	if next == nil {
		return r, nil
	}
	what := strings.Join(after, ", ")
	var cp dbus.ObjectPath
	rollbackAfter := uint32((s.Timeout + 60*time.Second) / time.Second)
	if err := c.call(ctx, nmPath, ifaceNM+".CheckpointCreate", []any{[]dbus.ObjectPath{}, rollbackAfter, uint32(0)}, &cp); err != nil {
		return r, fmt.Errorf("creating a NetworkManager checkpoint before setting %s on bridge %q: %w", what, b.Name, err)
	}
	actx, cancel := context.WithTimeout(ctx, s.Timeout)
	defer cancel()
	start := time.Now()
	var mtu uint32
	if err := c.prop(ctx, br.path, ifaceDevice, "Mtu", &mtu); err != nil {
		return r, err
	}
	err := c.update(actx, br, next, 0)
	r.Handoff = time.Since(start)
	if err == nil && s.Probe != nil {
		pstart := time.Now()
		err = s.Probe(actx, b.Name)
		r.Probe = time.Since(pstart)
	}
	if err == nil {
		err = c.call(ctx, nmPath, ifaceNM+".CheckpointDestroy", []any{cp})
	}
	if err != nil {
		return r, c.unreapply(ctx, cp, br, cur, mtu, fmt.Errorf("setting %s on bridge %q through NetworkManager profile %q: %w", what, b.Name, br.id, err))
	}
	r.Changes = []change.Change{{Kind: change.BridgeUpdated, Object: b.Name,
		Before: fmt.Sprintf("NetworkManager profile %q: %s", br.id, strings.Join(before, ", ")),
		After:  fmt.Sprintf("NetworkManager profile %q: %s", br.id, what)}}
	r.bridgeName, r.bridgeBefore, r.bridgeMTU = b.Name, cur, mtu
	return r, nil
}

// update writes settings into profile br and reapplies it to the bridge
// device, then waits until the device is activated with the profile.
// NetworkManager leaves the MTU as it is when the profile sets none
// ("auto"): mtu, when not 0, is then applied explicitly (the bridge's
// MTU before a reapply that set one).
func (c *Client) update(ctx context.Context, br device, settings Settings, mtu uint32) error {
	if err := c.call(ctx, br.conn, ifaceConn+".Update", []any{settings}); err != nil {
		return fmt.Errorf("updating the profile: %w", err)
	}
	// An empty connection reapplies the profile as it now is.
	applied := Settings{}
	if set, _ := settings["802-3-ethernet"]["mtu"].Value().(uint32); set == 0 && mtu > 0 {
		applied = withoutDeprecated(settings)
		if applied["802-3-ethernet"] == nil {
			applied["802-3-ethernet"] = map[string]dbus.Variant{}
		}
		applied["802-3-ethernet"]["mtu"] = dbus.MakeVariant(mtu)
	}
	if err := c.call(ctx, br.path, ifaceDevice+".Reapply", []any{applied, uint64(0), uint32(0)}); err != nil {
		return fmt.Errorf("reapplying it to the bridge: %w", err)
	}
	for {
		d, ok, err := c.device(ctx, br.name)
		if err == nil && ok && d.id == br.id && d.state == stateActivated {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for the bridge to be activated again: device state %d, profile %q", d.state, d.id)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// unreapply rolls checkpoint cp back after cause and puts profile br's
// settings (was) and the bridge's MTU (mtu) back. It is not cut short by
// ctx's end.
func (c *Client) unreapply(ctx context.Context, cp dbus.ObjectPath, br device, was Settings, mtu uint32, cause error) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), rollbackWait)
	defer cancel()
	var results map[string]uint32
	if err := c.call(ctx, nmPath, ifaceNM+".CheckpointRollback", []any{cp}, &results); err != nil {
		return fmt.Errorf("%w; rolling the NetworkManager checkpoint back failed too (%v): look at `nmcli con show %s`", cause, err, br.id)
	}
	if err := c.update(ctx, br, withoutDeprecated(was), mtu); err != nil {
		return fmt.Errorf("%w; the NetworkManager checkpoint was rolled back, but putting profile %q back failed: %v", cause, br.id, err)
	}
	return fmt.Errorf("%w; the NetworkManager checkpoint was rolled back, profile %q is as before: %w", cause, br.id, ErrRolledBack)
}

// undoReapply puts the bridge profile's settings of before reapply back
// (a later step of the same transaction failed). It is not cut short by
// ctx's end.
func (c *Client) undoReapply(ctx context.Context, r Result) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), rollbackWait)
	defer cancel()
	br, ok, err := c.device(ctx, r.bridgeName)
	if err == nil && !ok {
		err = fmt.Errorf("NetworkManager has no device %q", r.bridgeName)
	}
	if err == nil {
		err = c.update(ctx, br, withoutDeprecated(r.bridgeBefore), r.bridgeMTU)
	}
	if err != nil {
		return fmt.Errorf("putting the settings of bridge %q back in its NetworkManager profile: %w", r.bridgeName, err)
	}
	return nil
}
