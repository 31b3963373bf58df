package nm

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/godbus/dbus/v5"

	"github.com/virtbridge/virtbridge/internal/desired"
)

// rollbackWait bounds the wait for the uplink's profile to be active again
// after a rollback.
const rollbackWait = 30 * time.Second

// rollback rolls checkpoint cp back after cause, puts the uplink profile's
// settings back if the rollback did not, and waits until the uplink's
// profile is active again and the bridge gone. It is not cut short by
// ctx's end: a half-rolled-back host is worse than a late answer.
func (c *Client) rollback(ctx context.Context, cp dbus.ObjectPath, b desired.Bridge, up device, upSettings Settings, cause error) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), rollbackWait)
	defer cancel()
	msg := fmt.Sprintf("handing uplink %q of bridge %q over to NetworkManager: %v", b.Uplink, b.Name, cause)
	var results map[string]uint32
	if err := c.call(ctx, nmPath, ifaceNM+".CheckpointRollback", []any{cp}, &results); err != nil {
		return fmt.Errorf("%s; rolling the NetworkManager checkpoint back failed too (%v): the host may need a manual look (`nmcli con show`)", msg, err)
	}
	var errs []error
	var now Settings
	if err := c.call(ctx, up.conn, ifaceConn+".GetSettings", nil, &now); err != nil {
		errs = append(errs, fmt.Errorf("reading profile %q: %w", up.id, err))
	} else if autoconnect(now) != autoconnect(upSettings) {
		if err := c.call(ctx, up.conn, ifaceConn+".Update", []any{withAutoconnect(upSettings, autoconnect(upSettings))}); err != nil {
			errs = append(errs, fmt.Errorf("turning autoconnect back on in profile %q: %w", up.id, err))
		}
	}
	if err := c.waitUplink(ctx, b, up); err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return fmt.Errorf("%s; the NetworkManager checkpoint was rolled back but: %v: the host may need a manual look (`nmcli con show`)", msg, errors.Join(errs...))
	}
	return fmt.Errorf("handing uplink %q of bridge %q over to NetworkManager: %w; the NetworkManager checkpoint was rolled back, profile %q is active on %q again: %w",
		b.Uplink, b.Name, cause, up.id, b.Uplink, ErrRolledBack)
}
