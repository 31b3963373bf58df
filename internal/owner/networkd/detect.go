// Package networkd hands a bridge's uplink over to systemd-networkd, when
// networkd owns it: it detects the owner over networkd's D-Bus API
// (read-only), writes the bridge as networkd's own (.netdev and .network
// files under /run/systemd/network), reloads networkd, probes the default
// gateway and removes its files again when the probe fails.
package networkd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"github.com/godbus/dbus/v5"

	"github.com/virtbridge/virtbridge/internal/owner"
)

// D-Bus names of networkd's API.
const (
	busName     = "org.freedesktop.network1"
	managerPath = dbus.ObjectPath("/org/freedesktop/network1")
	ifaceMgr    = "org.freedesktop.network1.Manager"
	ifaceLink   = "org.freedesktop.network1.Link"
)

// Client talks to systemd-networkd over one D-Bus connection.
type Client struct {
	conn *dbus.Conn
	// Dir is where the runtime files go: /run/systemd/network by default
	// (New). Files there last until reboot; see the README for making
	// them permanent.
	Dir string
}

// New returns a Client over conn (the system bus, or a test host's bus).
func New(conn *dbus.Conn) *Client { return &Client{conn: conn, Dir: "/run/systemd/network"} }

func (c *Client) call(ctx context.Context, p dbus.ObjectPath, method string, args []any, out ...any) error {
	call := c.conn.Object(busName, p).CallWithContext(ctx, method, 0, args...)
	if call.Err != nil || len(out) == 0 {
		return call.Err
	}
	return call.Store(out...)
}

func (c *Client) running(ctx context.Context) (bool, error) {
	var owned bool
	err := c.conn.BusObject().CallWithContext(ctx, "org.freedesktop.DBus.NameHasOwner", 0, busName).Store(&owned)
	if err != nil {
		return false, fmt.Errorf("asking D-Bus whether systemd-networkd runs: %w", err)
	}
	return owned, nil
}

// link is what networkd says of one link.
type link struct {
	index int32
	path  dbus.ObjectPath
	admin string // AdministrativeState: configured, configuring, unmanaged, ...
	oper  string // OperationalState: routable once it has a global address, ...
	file  string // the .network file that matched, "" if none
}

// noSuchLink are the D-Bus errors networkd answers GetLinkByName for a
// link it does not know (networkd 252 borrows resolved's name).
var noSuchLink = []string{"org.freedesktop.resolve1.NoSuchLink", "org.freedesktop.network1.NoSuchLink"}

// owning are the administrative states of a link networkd configures.
var owning = []string{"configuring", "configured", "failed"}

// linkState reads name's state; ok is false when networkd does not know
// the link.
func (c *Client) linkState(ctx context.Context, name string) (l link, ok bool, err error) {
	err = c.call(ctx, managerPath, ifaceMgr+".GetLinkByName", []any{name}, &l.index, &l.path)
	var de dbus.Error
	if errors.As(err, &de) && slices.Contains(noSuchLink, de.Name) {
		return l, false, nil
	}
	if err != nil {
		return l, false, fmt.Errorf("looking up %q in systemd-networkd: %w", name, err)
	}
	for _, p := range []struct {
		name string
		out  *string
	}{{"AdministrativeState", &l.admin}, {"OperationalState", &l.oper}} {
		var v dbus.Variant
		if err := c.call(ctx, l.path, "org.freedesktop.DBus.Properties.Get", []any{ifaceLink, p.name}, &v); err != nil {
			return l, false, fmt.Errorf("reading systemd-networkd's state of %q: %w", name, err)
		}
		*p.out, _ = v.Value().(string)
	}
	var desc string
	if err := c.call(ctx, managerPath, ifaceMgr+".DescribeLink", []any{l.index}, &desc); err != nil {
		return l, false, fmt.Errorf("asking systemd-networkd to describe %q: %w", name, err)
	}
	var d struct{ NetworkFile string }
	if err := json.Unmarshal([]byte(desc), &d); err != nil {
		return l, false, fmt.Errorf("reading systemd-networkd's description of %q: %w", name, err)
	}
	l.file = d.NetworkFile
	return l, true, nil
}

// Detect reports whether systemd-networkd owns uplink: it runs and
// configures the link from a .network file (administrative state
// configuring, configured or failed). It only reads. networkd not running
// or not knowing the link is no error.
func (c *Client) Detect(ctx context.Context, uplink string) (owner.Owner, bool, error) {
	up, err := c.running(ctx)
	if err != nil || !up {
		return owner.Owner{}, false, err
	}
	l, ok, err := c.linkState(ctx, uplink)
	if err != nil || !ok || !slices.Contains(owning, l.admin) {
		return owner.Owner{}, false, err
	}
	return owner.Owner{
		Kind:   owner.Networkd,
		Uplink: uplink,
		Detail: fmt.Sprintf("systemd-networkd configures %q from %s (%s)", uplink, l.file, l.admin),
	}, true, nil
}
