package firewall

import (
	"context"
	"fmt"

	"github.com/godbus/dbus/v5"
)

// firewalld's D-Bus names (firewalld ≥ 1.0).
const (
	fwdName       = "org.fedoraproject.FirewallD1"
	fwdPath       = "/org/fedoraproject/FirewallD1"
	fwdZone       = fwdName + ".zone"
	fwdConfigPath = fwdPath + "/config"
	fwdConfig     = fwdName + ".config"
	fwdConfigZone = fwdName + ".config.zone"
)

// firewalld is a connection to a running firewalld.
type firewalld struct {
	conn     *dbus.Conn
	obj, cfg dbus.BusObject
}

// dialFirewalld connects to firewalld on the system bus at addr ("" is the
// system bus). No bus, or no firewalld on it, is (nil, nil): not running.
func dialFirewalld(ctx context.Context, addr string) (*firewalld, error) {
	var conn *dbus.Conn
	var err error
	if addr == "" {
		conn, err = dbus.ConnectSystemBus(dbus.WithContext(ctx))
	} else {
		conn, err = dbus.Connect(addr, dbus.WithContext(ctx))
	}
	if err != nil {
		return nil, nil // no system bus: no firewalld either
	}
	var has bool
	if err := conn.BusObject().CallWithContext(ctx, "org.freedesktop.DBus.NameHasOwner", 0, fwdName).Store(&has); err != nil || !has {
		conn.Close()
		return nil, nil
	}
	return &firewalld{conn: conn, obj: conn.Object(fwdName, fwdPath), cfg: conn.Object(fwdName, fwdConfigPath)}, nil
}

func (f *firewalld) close() { f.conn.Close() }

func (f *firewalld) call(ctx context.Context, o dbus.BusObject, method string, ret any, args ...any) error {
	c := o.CallWithContext(ctx, method, 0, args...)
	if c.Err == nil && ret != nil {
		c.Err = c.Store(ret)
	}
	if c.Err != nil {
		return fmt.Errorf("firewalld %s%v: %w", method, args, c.Err)
	}
	return nil
}

func (f *firewalld) runtimeZoneOf(ctx context.Context, iface string) (z string, err error) {
	return z, f.call(ctx, f.obj, fwdZone+".getZoneOfInterface", &z, iface)
}

func (f *firewalld) permanentZoneOf(ctx context.Context, iface string) (z string, err error) {
	return z, f.call(ctx, f.cfg, fwdConfig+".getZoneOfInterface", &z, iface)
}

func (f *firewalld) defaultZone(ctx context.Context) (z string, err error) {
	return z, f.call(ctx, f.obj, fwdName+".getDefaultZone", &z)
}

func (f *firewalld) permanentZone(ctx context.Context, zone string) (dbus.BusObject, error) {
	var p dbus.ObjectPath
	if err := f.call(ctx, f.cfg, fwdConfig+".getZoneByName", &p, zone); err != nil {
		return nil, err
	}
	return f.conn.Object(fwdName, p), nil
}

// forward reads a zone's forwarding, runtime or permanent.
func (f *firewalld) forward(ctx context.Context, zone string, permanent bool) (bool, error) {
	var s map[string]dbus.Variant
	if permanent {
		z, err := f.permanentZone(ctx, zone)
		if err != nil {
			return false, err
		}
		if err := f.call(ctx, z, fwdConfigZone+".getSettings2", &s); err != nil {
			return false, err
		}
	} else if err := f.call(ctx, f.obj, fwdZone+".getZoneSettings2", &s, zone); err != nil {
		return false, err
	}
	on, _ := s["forward"].Value().(bool)
	return on, nil
}

func (f *firewalld) setForward(ctx context.Context, zone string, permanent, on bool) error {
	set := map[string]dbus.Variant{"forward": dbus.MakeVariant(on)}
	if permanent {
		z, err := f.permanentZone(ctx, zone)
		if err != nil {
			return err
		}
		return f.call(ctx, z, fwdConfigZone+".update2", nil, set)
	}
	return f.call(ctx, f.obj, fwdZone+".setZoneSettings2", nil, zone, set)
}

func (f *firewalld) addInterface(ctx context.Context, zone, iface string, permanent bool) error {
	if permanent {
		z, err := f.permanentZone(ctx, zone)
		if err != nil {
			return err
		}
		return f.call(ctx, z, fwdConfigZone+".addInterface", nil, iface)
	}
	return f.call(ctx, f.obj, fwdZone+".changeZoneOfInterface", new(string), zone, iface)
}

func (f *firewalld) removeInterface(ctx context.Context, zone, iface string, permanent bool) error {
	if permanent {
		z, err := f.permanentZone(ctx, zone)
		if err != nil {
			return err
		}
		return f.call(ctx, z, fwdConfigZone+".removeInterface", nil, iface)
	}
	return f.call(ctx, f.obj, fwdZone+".removeInterface", new(string), zone, iface)
}

// where names runtime or permanent settings in changes.
func where(permanent bool) string {
	if permanent {
		return "permanent"
	}
	return "runtime"
}
