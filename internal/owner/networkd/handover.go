package networkd

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/virtbridge/virtbridge/internal/change"
	"github.com/virtbridge/virtbridge/internal/desired"
)

// ErrNotOwner: networkd does not configure the uplink.
var ErrNotOwner = errors.New("systemd-networkd does not own the uplink")

// ErrBridgeExists: a link with the bridge's name exists that networkd did
// not make from virtbridge's files; networkd cannot adopt a bridge made by
// someone else.
var ErrBridgeExists = errors.New("bridge exists already")

// ErrRolledBack: the handoff was made, the probe failed, and virtbridge's
// files were removed again: the host is as it was.
var ErrRolledBack = errors.New("handoff rolled back")

// Spec is one handoff.
type Spec struct {
	Bridge desired.Bridge
	// Timeout bounds networkd's configuring and the probe together (30 s
	// when zero).
	Timeout time.Duration
	// Probe checks, until ctx ends, that the host reaches its default
	// gateway through the bridge. It must not change the host.
	Probe func(ctx context.Context, bridge string) error
	// NS is the network namespace networkd runs in (the caller's when
	// zero, netns.None()).
	NS netns.NsHandle
	// Root is where networkd's file system is seen ("" for /; tests use
	// a host's /proc/PID/root).
	Root string
}

// Result is what a handoff did and how long it took.
type Result struct {
	Changes []change.Change
	Handoff time.Duration // from writing the files to the bridge configured and routable
	Probe   time.Duration

	prev  link              // the uplink before, for Release
	files map[string]string // virtbridge's files, by name

	reapplied *reapplied // a reapply's undo, for Release
}

func (s Spec) path(p string) string { return filepath.Join(s.Root, p) }

// Handover makes bridge s.Bridge networkd's own: it writes the bridge's
// .netdev (the uplink's MAC), a .network for the bridge with the uplink's
// settings and a port .network for the uplink under c.Dir, reloads
// networkd, waits for the bridge to be configured and routable, and probes.
// If anything fails it removes its files, reloads, deletes the bridge and
// waits for the uplink to be configured as before; the error wraps
// ErrRolledBack and says what the probe saw. It refuses, changing nothing,
// an uplink networkd does not configure and an existing bridge.
// With the files in place and the bridge configured (handed over earlier)
// it only brings the bridge's stp, forward_delay and mtu in line with
// s.Bridge (reapply), changing nothing when they are.
func (c *Client) Handover(ctx context.Context, s Spec) (Result, error) {
	var r Result
	b := s.Bridge
	if s.Timeout == 0 {
		s.Timeout = 30 * time.Second
	}
	if s.NS == 0 {
		s.NS = netns.None()
	}
	up, ok, err := c.linkState(ctx, b.Uplink)
	if err != nil {
		return r, err
	}
	nd, nw, port := Files(b)
	if !ok || !slices.Contains(owning, up.admin) {
		return r, fmt.Errorf("handing uplink %q of bridge %q over to systemd-networkd: no .network configures it: %w", b.Uplink, b.Name, ErrNotOwner)
	}
	if up.file == filepath.Join(c.Dir, port) {
		if br, ok, err := c.linkState(ctx, b.Name); err == nil && ok && br.admin == "configured" {
			return c.reapply(ctx, s)
		}
	}
	if _, there, err := c.linkState(ctx, b.Name); err != nil || there {
		if err == nil {
			err = fmt.Errorf("handing uplink %q over to systemd-networkd: a link %q exists already, and networkd cannot adopt a bridge it did not make: "+
				"delete it (`ip link del %s`) or name another bridge in the configuration: %w", b.Uplink, b.Name, b.Name, ErrBridgeExists)
		}
		return r, err
	}
	uplinkNetwork, err := os.ReadFile(s.path(up.file))
	if err != nil {
		return r, fmt.Errorf("reading %q's .network: %w", b.Uplink, err)
	}
	h, err := netlink.NewHandleAt(s.NS)
	if err != nil {
		return r, fmt.Errorf("opening netlink: %w", err)
	}
	defer h.Close()
	ul, err := h.LinkByName(b.Uplink)
	if err != nil {
		return r, fmt.Errorf("reading uplink %q: %w", b.Uplink, err)
	}
	files := map[string]string{
		nd:   netdevFile(b, ul.Attrs().HardwareAddr.String()),
		nw:   bridgeNetworkFile(b, up.file, string(uplinkNetwork)),
		port: portNetworkFile(b),
	}
	carried, err := carriedBy(h, ul)
	if err != nil {
		return r, err
	}
	r.prev, r.files = up, files
	start := time.Now()
	actx, cancel := context.WithTimeout(ctx, s.Timeout)
	defer cancel()
	err = c.apply(actx, s, files, h, carried)
	r.Handoff = time.Since(start)
	if err == nil && s.Probe != nil {
		pstart := time.Now()
		err = s.Probe(actx, b.Name)
		r.Probe = time.Since(pstart)
	}
	if err != nil {
		return r, c.rollback(ctx, s, h, up, files, err)
	}
	r.Changes = []change.Change{
		{Kind: change.BridgeCreated, Object: b.Name, After: "systemd-networkd " + filepath.Join(c.Dir, nd) + ", " + filepath.Join(c.Dir, nw)},
		{Kind: change.UplinkEnslaved, Object: b.Uplink, Before: "systemd-networkd " + up.file,
			After: fmt.Sprintf("%s (systemd-networkd %s)", b.Name, filepath.Join(c.Dir, port))},
	}
	return r, nil
}

// carried is what the host's connectivity rests on: an IPv4 address and
// the IPv4 default route.
type carried struct{ v4, gw bool }

// carriedBy reads what link l carries.
func carriedBy(h *netlink.Handle, l netlink.Link) (carried, error) {
	var c carried
	addrs, err := h.AddrList(l, netlink.FAMILY_V4)
	if err != nil {
		return c, fmt.Errorf("listing addresses: %w", err)
	}
	c.v4 = len(addrs) > 0
	routes, err := h.RouteList(l, netlink.FAMILY_V4)
	if err != nil {
		return c, fmt.Errorf("listing routes: %w", err)
	}
	for _, r := range routes {
		if (r.Dst == nil || r.Dst.IP.IsUnspecified()) && r.Gw != nil {
			c.gw = true
		}
	}
	return c, nil
}

// apply writes the files, reloads networkd and waits for the bridge to be
// configured (and routable when it has addresses to get) with the uplink
// as its port.
func (c *Client) apply(ctx context.Context, s Spec, files map[string]string, h *netlink.Handle, want carried) error {
	if err := os.MkdirAll(s.path(c.Dir), 0o755); err != nil {
		return fmt.Errorf("making %s: %w", c.Dir, err)
	}
	for name, content := range files {
		if err := os.WriteFile(s.path(filepath.Join(c.Dir, name)), []byte(content), 0o644); err != nil {
			return fmt.Errorf("writing %s: %w", filepath.Join(c.Dir, name), err)
		}
	}
	if err := c.call(ctx, managerPath, ifaceMgr+".Reload", nil); err != nil {
		return fmt.Errorf("reloading systemd-networkd: %w", err)
	}
	seen := ""
	for {
		br, ok, err := c.linkState(ctx, s.Bridge.Name)
		up, _, uerr := c.linkState(ctx, s.Bridge.Uplink)
		switch {
		case err != nil || uerr != nil:
			seen = fmt.Sprint(errors.Join(err, uerr))
		case !ok:
			seen = "the bridge is not there yet"
		case br.admin == "configured" && br.oper == "routable" && up.admin == "configured":
			brl, err := h.LinkByName(s.Bridge.Name)
			var has carried
			if err == nil {
				has, err = carriedBy(h, brl)
			}
			if err == nil && (has.v4 || !want.v4) && (has.gw || !want.gw) {
				return nil
			}
			seen = fmt.Sprintf("bridge configured, but has IPv4 address %v, default route %v (the uplink had %v, %v)", has.v4, has.gw, want.v4, want.gw)
		default:
			seen = fmt.Sprintf("bridge %s and %s, uplink %s", br.admin, br.oper, up.admin)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for systemd-networkd to configure bridge %q: %s", s.Bridge.Name, seen)
		case <-time.After(100 * time.Millisecond):
		}
	}
}
