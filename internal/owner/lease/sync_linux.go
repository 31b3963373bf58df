package lease

import (
	"context"
	"fmt"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/virtbridge/virtbridge/internal/change"
	"github.com/virtbridge/virtbridge/internal/desired"
)

// Sync brings the running Keepers in line with the configuration bs and
// the links, before a pass makes the host match (a reload, a link change,
// the hook's or virtbridged's pass). A Keeper whose bridge bs no longer
// gives manager: virtbridged (the setting changed, or the bridge left the
// configuration) stops: the address stays on the bridge with what is left
// of its lease, and nobody renews it (journaled lease-released, saying
// what to do). A Keeper whose bridge is gone, or was made again (another
// link index: its socket is bound to the old one), stops too, and its
// lease waits for After to resume it on the bridge made again. Idempotent.
func (k *Keepers) Sync(ctx context.Context, bs []desired.Bridge) {
	want := map[string]desired.Bridge{}
	for _, b := range bs {
		if b.Manager == Manager {
			want[b.Name] = b
		}
	}
	k.mu.Lock()
	var gone, stale []string
	for name, kg := range k.running {
		if _, ok := want[name]; !ok {
			gone = append(gone, name)
		} else if linkIndex(name) != kg.index {
			stale = append(stale, name)
		}
	}
	for name, o := range k.orphans {
		if _, ok := want[name]; !ok {
			delete(k.orphans, name)
			k.released(ctx, name, o)
		}
	}
	k.mu.Unlock()
	for _, name := range gone {
		k.released(ctx, name, k.stop(name))
	}
	for _, name := range stale {
		o := k.stop(name)
		k.Log.Info("the bridge went or was made again; its lease waits for it", "bridge", name, "address", o.lease.Addr.String())
		k.mu.Lock()
		k.orphans[name] = o
		k.mu.Unlock()
	}
}

// stop ends bridge's Keeper and returns it with the lease it held.
func (k *Keepers) stop(bridge string) *keeping {
	k.mu.Lock()
	kg := k.running[bridge]
	delete(k.running, bridge)
	k.mu.Unlock()
	kg.cancel()
	<-kg.done
	return kg
}

// released journals that virtbridged keeps bridge's lease no more.
func (k *Keepers) released(ctx context.Context, bridge string, kg *keeping) {
	after := "virtbridged keeps it no more (the configuration no longer says manager: virtbridged for the bridge); "
	if l := kg.lease; l.Addr.IsValid() {
		after += fmt.Sprintf("%s stays on %s until %s, unrenewed: `virtbridge release %s` gives it back to %s, then start its DHCP client there",
			l.Addr, bridge, l.Expiry().UTC().Format(time.RFC3339), bridge, kg.uplink)
	} else {
		after += "it held no address"
	}
	c := change.Change{Kind: change.LeaseReleased, Object: bridge, Before: describeOr(kg.lease), After: after}
	k.Log.Info("host changed", "change", c.String())
	k.Journal(ctx, []change.Change{c})
}

// resume runs the lease of an orphan Keeper again on bridge, made again:
// the address back with what is left of its lifetime and the routes a
// DHCP client makes (the default route through the lease's router).
// Journaled lease-kept. Not made yet: tried again at the next pass.
func (k *Keepers) resume(ctx context.Context, bridge string, o *keeping) error {
	if !made(bridge, o.uplink) {
		return nil
	}
	l := o.lease
	if now := time.Now(); l.Addr.IsValid() && l.Remaining(now) > 0 {
		if err := (BridgeAddr{Link: bridge}).Set(l.Addr, l.Remaining(now)); err != nil {
			return err
		}
		if l.Router.IsValid() {
			if err := (BridgeRoutes{Link: bridge}).Add(Route{Gw: l.Router}); err != nil {
				return err
			}
		}
	}
	if err := k.launch(bridge, o.uplink, o.id, l); err != nil {
		return err
	}
	c := change.Change{Kind: change.LeaseKept, Object: bridge, Before: describeOr(l) + fmt.Sprintf(" on bridge index %d, gone", o.index),
		After: fmt.Sprintf("kept on the bridge made again (index %d)", linkIndex(bridge))}
	if l.Router.IsValid() {
		c.After += ", default route via " + l.Router.String()
	}
	k.Log.Info("host changed", "change", c.String())
	k.Journal(ctx, []change.Change{c})
	return nil
}

func describeOr(l Lease) string {
	if !l.Addr.IsValid() {
		return "no lease"
	}
	return describe(l)
}

// linkIndex is link's index, 0 when there is none of that name.
func linkIndex(name string) int {
	l, err := netlink.LinkByName(name)
	if err != nil {
		return 0
	}
	return l.Attrs().Index
}
