package nm

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/godbus/dbus/v5"

	"github.com/virtbridge/virtbridge/internal/desired"
)

// Release undoes the handoff r of bridge b after it was committed (a
// later step of the same transaction failed): it deletes the bridge and
// port profiles (NetworkManager removes the bridge it made), gives the
// uplink's own profile its autoconnect back and activates it, and waits
// until it is active again. It is not cut short by ctx's end. Releasing a
// Result with no changes does nothing; releasing a reapply (Handover of a
// bridge handed over earlier) puts the bridge profile's settings back.
func (c *Client) Release(ctx context.Context, b desired.Bridge, r Result) error {
	if len(r.Changes) == 0 {
		return nil
	}
	if r.bridgeBefore != nil {
		return c.undoReapply(ctx, r)
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), rollbackWait)
	defer cancel()
	var errs []error
	for _, p := range []dbus.ObjectPath{r.portConn, r.bridgeConn} {
		if err := c.call(ctx, p, ifaceConn+".Delete", nil); err != nil {
			errs = append(errs, fmt.Errorf("deleting NetworkManager profile %s: %w", p, err))
		}
	}
	up := device{id: r.uplinkID, conn: r.uplinkConn}
	if err := c.call(ctx, r.uplinkConn, ifaceConn+".Update", []any{withAutoconnect(r.uplinkSettings, autoconnect(r.uplinkSettings))}); err != nil {
		errs = append(errs, fmt.Errorf("giving profile %q its autoconnect back: %w", r.uplinkID, err))
	}
	d, ok, err := c.device(ctx, b.Uplink)
	if err == nil && ok {
		var ac dbus.ObjectPath
		err = c.call(ctx, nmPath, ifaceNM+".ActivateConnection", []any{r.uplinkConn, d.path, noObject}, &ac)
	}
	if err != nil {
		errs = append(errs, fmt.Errorf("activating profile %q on %q: %w", r.uplinkID, b.Uplink, err))
	}
	if len(errs) == 0 {
		errs = append(errs, c.waitUplink(ctx, b, up))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("giving uplink %q of bridge %q back to its NetworkManager profile %q: %w", b.Uplink, b.Name, r.uplinkID, err)
	}
	return nil
}

// waitUplink waits until up's profile is active on the uplink again and
// the bridge gone.
func (c *Client) waitUplink(ctx context.Context, b desired.Bridge, up device) error {
	for {
		d, _, err := c.device(ctx, b.Uplink)
		_, brThere, _ := c.device(ctx, b.Name)
		if err == nil && d.id == up.id && d.state == stateActivated && !brThere {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("profile %q not active again on %q within %v (device state %d, profile %q; bridge still there: %v)",
				up.id, b.Uplink, rollbackWait, d.state, d.id, brThere)
		case <-time.After(100 * time.Millisecond):
		}
	}
}
