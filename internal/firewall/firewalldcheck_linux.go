package firewall

import (
	"context"
	"fmt"
	"slices"
)

// checkFirewalld lists, when firewalld runs, what differs from what
// ensureFirewalld would leave: a managed bridge not in its zone (runtime
// or permanent; e.g. moved or removed behind virtbridge's back), its zone
// not forwarding, a bridge no longer managed still in the zone virtbridge
// put it in. It changes nothing. Not running: nothing to check.
func (f *Firewall) checkFirewalld(ctx context.Context, bridges []string, configured string) ([]string, error) {
	fd, err := dialFirewalld(ctx, f.dbus)
	if err != nil || fd == nil {
		return nil, err
	}
	defer fd.close()
	rec, err := loadRecord(f.record)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, br := range bridges {
		zone, err := f.zoneFor(ctx, fd, br, configured, rec.Interfaces[br])
		if err != nil {
			return out, err
		}
		for _, perm := range []bool{false, true} {
			ps, err := checkZone(ctx, fd, br, zone, perm)
			out = append(out, ps...)
			if err != nil {
				return out, err
			}
		}
	}
	for br, zone := range rec.Interfaces {
		if slices.Contains(bridges, br) {
			continue
		}
		if cur, err := fd.runtimeZoneOf(ctx, br); err != nil || cur == zone {
			if err != nil {
				return out, err
			}
			out = append(out, fmt.Sprintf("firewalld: bridge %s is no longer managed and still in zone %s, where virtbridge put it", br, zone))
		}
	}
	slices.Sort(out)
	return out, nil
}

// checkZone says whether br is in zone and zone forwards, runtime or
// permanent.
func checkZone(ctx context.Context, fd *firewalld, br, zone string, perm bool) ([]string, error) {
	zoneOf := fd.runtimeZoneOf
	if perm {
		zoneOf = fd.permanentZoneOf
	}
	var out []string
	cur, err := zoneOf(ctx, br)
	if err != nil {
		return nil, err
	}
	if cur != zone {
		out = append(out, fmt.Sprintf("firewalld: %s: bridge %s is in %s, want zone %s", where(perm), br, zoneText(cur), zone))
	}
	on, err := fd.forward(ctx, zone, perm)
	if err != nil {
		return out, err
	}
	if !on {
		out = append(out, fmt.Sprintf("firewalld: %s: zone %s does not forward, so it drops bridged frames of %s", where(perm), zone, br))
	}
	return out, nil
}
