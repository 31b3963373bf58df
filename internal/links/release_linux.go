package links

import (
	"context"
	"errors"
	"fmt"

	"github.com/vishvananda/netlink"

	"github.com/virtbridge/virtbridge/internal/change"
	"github.com/virtbridge/virtbridge/internal/deadline"
	"github.com/virtbridge/virtbridge/internal/desired"
	"github.com/virtbridge/virtbridge/internal/revert"
)

// Refusals of ReleaseBridge.
var (
	// ErrNoUplinkPort: no uplink in the bridge to give the host's
	// addresses back to.
	ErrNoUplinkPort = errors.New("no uplink in the bridge")
	// ErrNotOurs: neither virtbridge's alias on the bridge nor its uplink
	// in the configuration: someone else's bridge.
	ErrNotOurs = errors.New("bridge not virtbridge's")
)

// ReleaseBridge is the way back from EnsureBridge (`virtbridge release`):
// what the bridge carries — its addresses, the routes of every table
// through it, its permanent neighbours, its legs of multipath routes and
// the rules naming it — moves back to the uplink with the same care as the
// move there (added on the uplink, still a port, before deleted from the
// bridge; no probe), then the uplink leaves the bridge. The bridge is then
// deleted, unless other ports (VM taps) are still in it: their names are
// returned in kept and the bridge stays, without uplink nor addresses.
// The uplink is b.Uplink, the link carrying b.UplinkMAC, or else the
// bridge's one port that is no tun/tap device; a bridge without
// ManagedAlias whose uplink b does not name (one the configuration does
// not declare) is someone else's, refused before any change (ErrNotOurs). Every step pushes its undo
// on rv but the bridge's deletion, the last one. IPv6 addresses come back
// with nodad (they are in use on that segment already), static: no
// lifetime. An IPv4 address with a lifetime (a lease virtbridged kept
// under manager: virtbridged) comes back with what is left of it.
func (m *Manager) ReleaseBridge(ctx context.Context, b desired.Bridge, rv *revert.Reverter) (cs []change.Change, kept []string, err error) {
	if err := deadline.Ended(ctx, "releasing bridge %q", b.Name); err != nil {
		return nil, nil, err
	}
	if rv == nil {
		rv = &revert.Reverter{}
	}
	br, err := m.existingBridge(b.Name)
	if err != nil {
		return nil, nil, err
	}
	if br == nil {
		return nil, nil, fmt.Errorf("releasing bridge %q: no bridge of that name in this network namespace: %w", b.Name, ErrBridgeMissing)
	}
	if br.Attrs().Alias != ManagedAlias && b.Uplink == "" && b.UplinkMAC == "" {
		return nil, nil, fmt.Errorf("releasing bridge %q: it does not carry virtbridge's alias %q and the configuration does not declare it, "+
			"so virtbridge did not make it and does not take it apart; use the tools that made it (ifupdown, ip link), "+
			"or declare it with its uplink in the configuration to release it: %w", b.Name, ManagedAlias, ErrNotOurs)
	}
	ports, err := m.ports(br)
	if err != nil {
		return nil, nil, err
	}
	up, err := m.portUplink(b, ports)
	if err != nil {
		return nil, nil, err
	}
	for _, p := range ports {
		if p.Attrs().Index != up.Attrs().Index {
			kept = append(kept, p.Attrs().Name)
		}
	}
	// The move, backwards: from the bridge ("up" of the run) to the
	// uplink ("br"), as a kernel-managed bridge named like the uplink.
	back := desired.Bridge{Name: up.Attrs().Name, Uplink: b.Name, MoveAddresses: true, Manager: "kernel", ProbeTimeout: -1}
	s := Snapshot{Bridge: cp(m.linkValue(up, "", nil)), Uplinks: []Link{m.linkValue(br, "", nil)}}
	rw := &raw{bridge: up, up: br}
	if err := m.readUplink(&s, rw, back, up); err != nil {
		return nil, nil, fmt.Errorf("releasing bridge %q: %w", b.Name, err)
	}
	plan, err := planRelease(back, s)
	if err != nil {
		return nil, nil, fmt.Errorf("releasing bridge %q: %w", b.Name, err)
	}
	r := &run{b: back, rv: rv, up: br, br: up, raw: rw, back: true}
	for _, st := range plan {
		if err := m.exec(ctx, r, st); err != nil {
			return r.cs, nil, fmt.Errorf("releasing bridge %q: %w", b.Name, err)
		}
	}
	if err := m.takeRA(r, false); err != nil { // the RA role back to the uplink (slaac_linux.go)
		return r.cs, nil, fmt.Errorf("releasing bridge %q: %w", b.Name, err)
	}
	if err := m.unslave(r, b.Name); err != nil {
		return r.cs, nil, err
	}
	if len(kept) > 0 {
		return r.cs, kept, nil
	}
	if err := m.step("bridge-del", b.Name); err != nil {
		return r.cs, nil, err
	}
	if err := m.h.LinkDel(br); err != nil {
		return r.cs, nil, fmt.Errorf("deleting bridge %q: %w", b.Name, err)
	}
	r.record(change.BridgeDeleted, b.Name, "", "")
	return r.cs, nil, nil
}

// unslave takes the uplink (r.br in a backwards run) out of bridge.
func (m *Manager) unslave(r *run, bridge string) error {
	up := r.br
	if err := m.step("unslave", up.Attrs().Name); err != nil {
		return err
	}
	if err := m.h.LinkSetNoMaster(up); err != nil {
		return fmt.Errorf("taking %q out of bridge %q: %w", up.Attrs().Name, bridge, err)
	}
	master := r.up.Attrs().Index
	r.rv.Add(func() error { return m.restoreMaster(up, master) })
	r.record(change.UplinkReleased, up.Attrs().Name, bridge, "")
	return nil
}

// portUplink picks the uplink among a bridge's ports (ReleaseBridge).
func (m *Manager) portUplink(b desired.Bridge, ports []netlink.Link) (netlink.Link, error) {
	var found []netlink.Link
	for _, p := range ports {
		switch {
		case b.Uplink != "":
			if p.Attrs().Name == b.Uplink {
				found = append(found, p)
			}
		case b.UplinkMAC != "":
			if p.Attrs().HardwareAddr.String() == b.UplinkMAC {
				found = append(found, p)
			}
		case p.Type() != "tuntap":
			found = append(found, p)
		}
	}
	if len(found) == 1 {
		return found[0], nil
	}
	var names []string
	for _, p := range ports {
		names = append(names, fmt.Sprintf("%s (%s)", p.Attrs().Name, p.Type()))
	}
	want := "one port that is no VM tap"
	if b.Uplink != "" {
		want = fmt.Sprintf("uplink %q", b.Uplink)
	} else if b.UplinkMAC != "" {
		want = fmt.Sprintf("the uplink with MAC %s", b.UplinkMAC)
	}
	return nil, fmt.Errorf("releasing bridge %q: %s is not among its ports %v, so there is nothing to give the bridge's addresses back to; "+
		"name the uplink in the configuration, or take the ports out by hand (ip link set PORT nomaster): %w", b.Name, want, names, ErrNoUplinkPort)
}
