package handoff

import (
	"context"
	"fmt"
	"strings"

	"github.com/vishvananda/netlink"

	"github.com/virtbridge/virtbridge/internal/change"
	"github.com/virtbridge/virtbridge/internal/desired"
	"github.com/virtbridge/virtbridge/internal/owner/networkd"
	"github.com/virtbridge/virtbridge/internal/revert"
)

// ReleaseBridge gives the uplink of bridge b back to the manager that made
// the bridge (`virtbridge release`; handled): NetworkManager's bridge from
// virtbridge's profiles goes and the uplink's own profile is active again
// (nm.Client.ReleaseBridge), systemd-networkd's from virtbridge's files
// likewise (networkd.Client.ReleaseBridge). A bridge neither manager
// configures is the kernel path's (not handled). A manager's bridge not
// made by virtbridge, and one with VM taps in it (the manager would delete
// it under them), are refused before any change. Nothing is pushed on rv:
// the manager's release is not undone.
func (o *Owners) ReleaseBridge(ctx context.Context, b desired.Bridge, rv *revert.Reverter) ([]change.Change, []string, bool, error) {
	if b.Manager == "kernel" || b.Manager == "virtbridged" {
		return nil, nil, false, nil
	}
	if err := o.managers(); err != nil {
		return nil, nil, true, fmt.Errorf("releasing bridge %q: %w", b.Name, err)
	}
	if o.NM != nil {
		id, ok, err := o.NM.MadeBridge(ctx, b.Name)
		if err != nil {
			return nil, nil, true, fmt.Errorf("releasing bridge %q: %w", b.Name, err)
		}
		if ok {
			if err := o.releasable(b, "NetworkManager", fmt.Sprintf("profile %q", id), strings.HasPrefix(id, "virtbridge-")); err != nil {
				return nil, nil, true, err
			}
			cs, err := o.NM.ReleaseBridge(ctx, b)
			return cs, nil, true, err
		}
	}
	if o.Networkd != nil {
		file, ok, err := o.Networkd.MadeBridge(ctx, b.Name)
		if err != nil {
			return nil, nil, true, fmt.Errorf("releasing bridge %q: %w", b.Name, err)
		}
		if ok {
			if err := o.releasable(b, "systemd-networkd", file, o.Networkd.Ours(file, b.Name)); err != nil {
				return nil, nil, true, err
			}
			cs, err := o.Networkd.ReleaseBridge(ctx, networkd.Spec{Bridge: b, Timeout: o.Timeout, NS: o.NS, Root: o.Root})
			return cs, nil, true, err
		}
	}
	return nil, nil, false, nil
}

// releasable refuses to release a manager's bridge that virtbridge did not
// make (ours false; by is the manager's profile or file) or that has VM
// taps in it.
func (o *Owners) releasable(b desired.Bridge, manager, by string, ours bool) error {
	if !ours {
		return fmt.Errorf("bridge %q is configured by %s from %s, which is not virtbridge's: virtbridge did not make it and does not "+
			"take it apart; change it with %s's own tools", b.Name, manager, by, manager)
	}
	h, err := netlink.NewHandleAt(o.NS)
	if err != nil {
		return fmt.Errorf("releasing bridge %q: opening netlink: %w", b.Name, err)
	}
	defer h.Close()
	br, err := h.LinkByName(b.Name)
	if err != nil {
		return fmt.Errorf("releasing bridge %q: %w", b.Name, err)
	}
	ls, err := h.LinkList()
	if err != nil {
		return fmt.Errorf("releasing bridge %q: listing links: %w", b.Name, err)
	}
	var taps []string
	for _, l := range ls {
		if l.Attrs().MasterIndex == br.Attrs().Index && l.Type() == "tuntap" {
			taps = append(taps, l.Attrs().Name)
		}
	}
	if len(taps) > 0 {
		return fmt.Errorf("bridge %q was made by %s (%s) and VM taps %s are in it: %s deletes the bridge once virtbridge's configuration of it goes, "+
			"which would cut those VMs off; stop them or move their NICs to another bridge, then release again",
			b.Name, manager, by, strings.Join(taps, ", "), manager)
	}
	return nil
}
