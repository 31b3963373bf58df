// Package nm hands a bridge's uplink over to NetworkManager, when
// NetworkManager owns it, over NetworkManager's D-Bus API: it detects the
// owner (read-only), makes the bridge NetworkManager's own (a bridge
// profile carrying the uplink profile's IP settings and MAC, and a port
// profile for the uplink), activates it inside a checkpoint, probes the
// default gateway and commits or rolls back.
package nm

import (
	"context"
	"errors"
	"fmt"

	"github.com/godbus/dbus/v5"

	"github.com/virtbridge/virtbridge/internal/owner"
)

// D-Bus names of NetworkManager's API.
const (
	busName       = "org.freedesktop.NetworkManager"
	nmPath        = dbus.ObjectPath("/org/freedesktop/NetworkManager")
	settingsPath  = dbus.ObjectPath("/org/freedesktop/NetworkManager/Settings")
	ifaceNM       = "org.freedesktop.NetworkManager"
	ifaceDevice   = "org.freedesktop.NetworkManager.Device"
	ifaceActive   = "org.freedesktop.NetworkManager.Connection.Active"
	ifaceSettings = "org.freedesktop.NetworkManager.Settings"
	ifaceConn     = "org.freedesktop.NetworkManager.Settings.Connection"
	ifaceIP4      = "org.freedesktop.NetworkManager.IP4Config"
	errUnknownDev = "org.freedesktop.NetworkManager.UnknownDevice"
	noObject      = dbus.ObjectPath("/")
)

// Device states (NMDeviceState) and settings-connection flags this
// package reads.
const (
	stateUnmanaged   = 10
	stateActivated   = 100
	connFlagExternal = 0x8 // NM_SETTINGS_CONNECTION_FLAG_EXTERNAL
)

// Client talks to NetworkManager over one D-Bus connection.
type Client struct {
	conn *dbus.Conn
}

// New returns a Client over conn (the system bus, or a test host's bus).
func New(conn *dbus.Conn) *Client { return &Client{conn: conn} }

// Settings is a profile as NetworkManager's D-Bus API carries it.
type Settings = map[string]map[string]dbus.Variant

func (c *Client) obj(p dbus.ObjectPath) dbus.BusObject { return c.conn.Object(busName, p) }

// call calls method on object p and stores its results in out.
func (c *Client) call(ctx context.Context, p dbus.ObjectPath, method string, args []any, out ...any) error {
	call := c.obj(p).CallWithContext(ctx, method, 0, args...)
	if call.Err != nil {
		return call.Err
	}
	if len(out) == 0 {
		return nil
	}
	return call.Store(out...)
}

// prop reads property name of interface iface of object p into out.
func (c *Client) prop(ctx context.Context, p dbus.ObjectPath, iface, name string, out any) error {
	var v dbus.Variant
	if err := c.call(ctx, p, "org.freedesktop.DBus.Properties.Get", []any{iface, name}, &v); err != nil {
		return fmt.Errorf("reading %s.%s of %s: %w", iface, name, p, err)
	}
	return dbus.Store([]any{v.Value()}, out)
}

// running reports whether NetworkManager is on the bus.
func (c *Client) running(ctx context.Context) (bool, error) {
	var owned bool
	err := c.conn.BusObject().CallWithContext(ctx, "org.freedesktop.DBus.NameHasOwner", 0, busName).Store(&owned)
	if err != nil {
		return false, fmt.Errorf("asking D-Bus whether NetworkManager runs: %w", err)
	}
	return owned, nil
}

// device is what Detect reads of a NetworkManager device.
type device struct {
	name    string
	path    dbus.ObjectPath
	managed bool
	state   uint32
	active  dbus.ObjectPath // "/" when no profile is active
	conn    dbus.ObjectPath // the active profile, "/" when none
	id      string          // the active profile's name
	flags   uint32          // the active profile's flags
	mac     string
}

// device reads link name's device; ok is false when NetworkManager does
// not know the link.
func (c *Client) device(ctx context.Context, name string) (d device, ok bool, err error) {
	d.name, d.conn, d.active = name, noObject, noObject
	err = c.call(ctx, nmPath, ifaceNM+".GetDeviceByIpIface", []any{name}, &d.path)
	var de dbus.Error
	if errors.As(err, &de) && de.Name == errUnknownDev {
		return d, false, nil
	}
	if err != nil {
		return d, false, fmt.Errorf("looking up %q in NetworkManager: %w", name, err)
	}
	for _, p := range []struct {
		name string
		out  any
	}{{"Managed", &d.managed}, {"State", &d.state}, {"ActiveConnection", &d.active}, {"HwAddress", &d.mac}} {
		if err := c.prop(ctx, d.path, ifaceDevice, p.name, p.out); err != nil {
			return d, false, fmt.Errorf("reading NetworkManager's device %q: %w", name, err)
		}
	}
	if d.active == noObject {
		return d, true, nil
	}
	if err := c.prop(ctx, d.active, ifaceActive, "Connection", &d.conn); err != nil {
		return d, false, fmt.Errorf("reading the profile active on %q: %w", name, err)
	}
	if err := c.prop(ctx, d.active, ifaceActive, "Id", &d.id); err != nil {
		return d, false, fmt.Errorf("reading the profile active on %q: %w", name, err)
	}
	if err := c.prop(ctx, d.conn, ifaceConn, "Flags", &d.flags); err != nil {
		return d, false, fmt.Errorf("reading the profile active on %q: %w", name, err)
	}
	return d, true, nil
}

// Detect reports whether NetworkManager owns uplink: it runs, manages the
// link and has one of its profiles active on it (a profile NetworkManager
// merely made up to show a link configured by someone else, "externally
// connected", does not count). It only reads. NetworkManager not running
// or not knowing the link is no error.
func (c *Client) Detect(ctx context.Context, uplink string) (owner.Owner, bool, error) {
	up, err := c.running(ctx)
	if err != nil || !up {
		return owner.Owner{}, false, err
	}
	d, ok, err := c.device(ctx, uplink)
	if err != nil || !ok || !d.managed || d.conn == noObject || d.flags&connFlagExternal != 0 {
		return owner.Owner{}, false, err
	}
	return owner.Owner{
		Kind:   owner.NetworkManager,
		Uplink: uplink,
		Detail: fmt.Sprintf("NetworkManager profile %q is active on %q (device state %d)", d.id, uplink, d.state),
	}, true, nil
}
