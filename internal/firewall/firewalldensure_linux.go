package firewall

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"slices"

	"github.com/vishvananda/netlink"
	vnetns "github.com/vishvananda/netns"

	"github.com/virtbridge/virtbridge/internal/change"
	"github.com/virtbridge/virtbridge/internal/deadline"
	"github.com/virtbridge/virtbridge/internal/paths"
	"github.com/virtbridge/virtbridge/internal/revert"
)

// ensureFirewalld, when firewalld runs, puts each bridge into its zone
// (chooseZone) and turns that zone's forwarding on, runtime and permanent,
// recording what it changed; bridges it once put into a zone and that are
// no longer managed are taken out again. Not running: nothing to do.
func (f *Firewall) ensureFirewalld(ctx context.Context, bridges []string, configured string, rv *revert.Reverter) ([]change.Change, error) {
	fd, err := dialFirewalld(ctx, f.dbus)
	if err != nil || fd == nil {
		return nil, err
	}
	defer fd.close()
	rec, err := loadRecord(f.record)
	if err != nil {
		return nil, err
	}
	var cs []change.Change
	step := func(c change.Change, do func(context.Context) error, undo func(context.Context) error) error {
		if err := do(ctx); err != nil {
			return err
		}
		cs = append(cs, c)
		rv.Add(func() error {
			uctx, cancel := deadline.Uncancelled(ctx)
			defer cancel()
			if fd2, err := dialFirewalld(uctx, f.dbus); err == nil && fd2 != nil {
				defer fd2.close()
				return undo(uctx)
			}
			return nil
		})
		return nil
	}
	before := rec.clone()
	for _, br := range bridges {
		zone, err := f.zoneFor(ctx, fd, br, configured, rec.Interfaces[br])
		if err != nil {
			return cs, err
		}
		for _, perm := range []bool{false, true} {
			if err := f.ensureInterface(ctx, fd, &rec, br, zone, perm, step); err != nil {
				return cs, err
			}
			if err := ensureForward(ctx, fd, &rec, zone, perm, step); err != nil {
				return cs, err
			}
		}
	}
	for br, zone := range rec.Interfaces {
		if !slices.Contains(bridges, br) {
			c, err := undoInterface(ctx, fd, br, zone)
			cs = append(cs, c...)
			if err != nil {
				return cs, err
			}
			delete(rec.Interfaces, br)
		}
	}
	if !before.equal(rec) {
		if err := saveRecord(f.record, rec); err != nil {
			return cs, err
		}
	}
	return cs, nil
}

// zoneFor reads what chooseZone needs: the bridge's zones, its ports'
// runtime zones and the default zone; recorded is the zone virtbridge put
// br in before, "" none.
func (f *Firewall) zoneFor(ctx context.Context, fd *firewalld, br, configured, recorded string) (string, error) {
	rt, err := fd.runtimeZoneOf(ctx, br)
	if err != nil {
		return "", err
	}
	pm, err := fd.permanentZoneOf(ctx, br)
	if err != nil {
		return "", err
	}
	var portZones []string
	ports, err := f.bridgePorts(br)
	if err != nil {
		return "", err
	}
	for _, p := range ports {
		z, err := fd.runtimeZoneOf(ctx, p)
		if err != nil {
			return "", err
		}
		portZones = append(portZones, z)
	}
	def, err := fd.defaultZone(ctx)
	if err != nil {
		return "", err
	}
	return chooseZone(br, configured, recorded, rt, pm, portZones, def)
}

type stepFunc func(c change.Change, do, undo func(context.Context) error) error

func (f *Firewall) ensureInterface(ctx context.Context, fd *firewalld, rec *firewalldRecord, br, zone string, perm bool, step stepFunc) error {
	zoneOf := fd.runtimeZoneOf
	if perm {
		zoneOf = fd.permanentZoneOf
	}
	cur, err := zoneOf(ctx, br)
	if err != nil || cur == zone {
		return err
	}
	c := change.Change{Kind: change.FirewalldChanged, Object: "firewalld " + where(perm) + " interface " + br, Before: zoneText(cur), After: zoneText(zone)}
	err = step(c, func(ctx context.Context) error {
		if perm && cur != "" {
			if err := fd.removeInterface(ctx, cur, br, true); err != nil {
				return err
			}
		}
		return fd.addInterface(ctx, zone, br, perm)
	}, func(ctx context.Context) error {
		err := fd.removeInterface(ctx, zone, br, perm)
		if cur != "" {
			err = errors.Join(err, fd.addInterface(ctx, cur, br, perm))
		}
		return err
	})
	if err == nil {
		rec.Interfaces[br] = zone
	}
	return err
}

func ensureForward(ctx context.Context, fd *firewalld, rec *firewalldRecord, zone string, perm bool, step stepFunc) error {
	on, err := fd.forward(ctx, zone, perm)
	if err != nil || on {
		return err
	}
	c := change.Change{Kind: change.FirewalldChanged, Object: "firewalld " + where(perm) + " zone " + zone, Before: "forward no", After: "forward yes"}
	err = step(c, func(ctx context.Context) error { return fd.setForward(ctx, zone, perm, true) },
		func(ctx context.Context) error { return fd.setForward(ctx, zone, perm, false) })
	if err == nil && !slices.Contains(rec.Forward, zone) {
		rec.Forward = append(rec.Forward, zone)
	}
	return err
}

// undoInterface takes br out of zone, runtime and permanent, where it is
// still there.
func undoInterface(ctx context.Context, fd *firewalld, br, zone string) ([]change.Change, error) {
	var cs []change.Change
	for _, perm := range []bool{false, true} {
		zoneOf := fd.runtimeZoneOf
		if perm {
			zoneOf = fd.permanentZoneOf
		}
		cur, err := zoneOf(ctx, br)
		if err != nil {
			return cs, err
		}
		if cur != zone {
			continue
		}
		if err := fd.removeInterface(ctx, zone, br, perm); err != nil {
			return cs, err
		}
		cs = append(cs, change.Change{Kind: change.FirewalldChanged, Object: "firewalld " + where(perm) + " interface " + br, Before: zoneText(zone), After: zoneText("")})
	}
	return cs, nil
}

// removeFirewalld undoes what the record says virtbridge changed, and
// forgets it. firewalld not running while there is a record is an error:
// its permanent settings would outlive the removal.
func (f *Firewall) removeFirewalld(ctx context.Context) ([]change.Change, error) {
	rec, err := loadRecord(f.record)
	if err != nil || len(rec.Interfaces) == 0 && len(rec.Forward) == 0 {
		return nil, errors.Join(err, removeRecord(f.record))
	}
	fd, err := dialFirewalld(ctx, f.dbus)
	if err != nil {
		return nil, err
	}
	if fd == nil {
		return nil, fmt.Errorf("firewalld is not running, so virtbridge cannot undo its zone settings (recorded in %s): start firewalld and run firewall-remove again", f.record)
	}
	defer fd.close()
	var cs []change.Change
	for br, zone := range rec.Interfaces {
		c, err := undoInterface(ctx, fd, br, zone)
		cs = append(cs, c...)
		if err != nil {
			return cs, err
		}
	}
	for _, zone := range rec.Forward {
		for _, perm := range []bool{false, true} {
			if on, err := fd.forward(ctx, zone, perm); err != nil || !on {
				if err != nil {
					return cs, err
				}
				continue
			}
			if err := fd.setForward(ctx, zone, perm, false); err != nil {
				return cs, err
			}
			cs = append(cs, change.Change{Kind: change.FirewalldChanged, Object: "firewalld " + where(perm) + " zone " + zone, Before: "forward yes", After: "forward no"})
		}
	}
	return cs, removeRecord(f.record)
}

// bridgePorts lists the ports of br in the firewall's namespace; none
// when br does not exist.
func (f *Firewall) bridgePorts(br string) ([]string, error) {
	h, err := netlink.NewHandle()
	if f.ns.path != "" {
		ns, nerr := vnetns.GetFromPath(f.ns.path)
		if nerr != nil {
			return nil, fmt.Errorf("listing ports of bridge %s: %w", br, nerr)
		}
		defer ns.Close()
		h, err = netlink.NewHandleAt(ns)
	}
	if err != nil {
		return nil, fmt.Errorf("listing ports of bridge %s: %w", br, err)
	}
	defer h.Close()
	links, err := h.LinkList()
	if err != nil {
		return nil, fmt.Errorf("listing ports of bridge %s: %w", br, err)
	}
	idx := 0
	for _, l := range links {
		if l.Attrs().Name == br {
			idx = l.Attrs().Index
		}
	}
	var out []string
	for _, l := range links {
		if idx != 0 && l.Attrs().MasterIndex == idx {
			out = append(out, l.Attrs().Name)
		}
	}
	slices.Sort(out)
	return out, nil
}

func (r firewalldRecord) clone() firewalldRecord {
	c := firewalldRecord{Interfaces: map[string]string{}, Forward: slices.Clone(r.Forward)}
	for k, v := range r.Interfaces {
		c.Interfaces[k] = v
	}
	return c
}

func (r firewalldRecord) equal(o firewalldRecord) bool {
	a, _ := json.Marshal(r)
	b, _ := json.Marshal(o)
	return string(a) == string(b)
}

// loadRecord reads the record; none is an empty one. Like the state file
// it is trusted only when root-owned and no link (paths.OpenFile).
func loadRecord(path string) (firewalldRecord, error) {
	rec := firewalldRecord{Interfaces: map[string]string{}}
	f, err := paths.OpenFile(path, os.O_RDONLY, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return rec, nil
	}
	if err != nil {
		return rec, fmt.Errorf("reading firewalld record %q: %w", path, err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, 1<<20))
	if err == nil {
		err = json.Unmarshal(b, &rec)
	}
	if err != nil {
		return rec, fmt.Errorf("reading firewalld record %q: %w", path, err)
	}
	if rec.Interfaces == nil {
		rec.Interfaces = map[string]string{}
	}
	return rec, nil
}

func saveRecord(path string, rec firewalldRecord) error {
	b, err := json.Marshal(rec)
	if err == nil {
		err = paths.WriteAtomic(path, append(b, '\n'), 0o644)
	}
	if err != nil {
		return fmt.Errorf("writing firewalld record %q: %w", path, err)
	}
	return nil
}

func removeRecord(path string) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("removing firewalld record %q: %w", path, err)
	}
	return nil
}

func zoneText(z string) string {
	if z == "" {
		return "no zone"
	}
	return "zone " + z
}
