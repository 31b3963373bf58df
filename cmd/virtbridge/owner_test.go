package main

import (
	"context"
	"strings"
	"testing"

	"github.com/virtbridge/virtbridge/internal/owner"
)

// fakeManagers answers as NetworkManager's or networkd's D-Bus detection.
type fakeManagers map[string]owner.Owner

func (f fakeManagers) Owner(_ context.Context, link string) (owner.Owner, bool, error) {
	o, ok := f[link]
	return o, ok, nil
}

// TestManagerOwnerShown: with NetworkManager owning the uplink (as its
// D-Bus API answers), plan's uplink_owners and status's owner: name it
// with its profile, not the DHCP client or static addresses the kernel
// shows. (The uplink need not exist: the managers are asked first.)
func TestManagerOwnerShown(t *testing.T) {
	saved := busOwners
	t.Cleanup(func() { busOwners = saved })
	busOwners = func() (managerOwners, error) {
		return fakeManagers{"vbq-up0": {Kind: owner.NetworkManager, Uplink: "vbq-up0",
			Detail: `NetworkManager profile "Wired connection 1" is active on "vbq-up0" (device state 100)`}}, nil
	}
	const want = `networkmanager: NetworkManager profile \"Wired connection 1\" is active on \"vbq-up0\"`
	cfg := writeConfig(t, "bridges: {br0: {uplink: vbq-up0}}\n")
	code, out, errs := cli(t, planXML, "plan", "--op", "prepare", "--config", cfg)
	if code != 0 || !strings.Contains(out, `"br0": "`+want) {
		t.Errorf("plan: exit %d, stderr %q, stdout lacks the owner %s:\n%s", code, errs, want, out)
	}
	code, out, errs = cli(t, "", "status", "--config", cfg)
	if !strings.Contains(out, "owner:     "+strings.ReplaceAll(want, `\"`, `"`)) {
		t.Errorf("status: exit %d, stderr %q, stdout lacks the owner:\n%s", code, errs, out)
	}
}
