package main

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/virtbridge/virtbridge/internal/owner"
	"github.com/virtbridge/virtbridge/internal/owner/lease"
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

// TestKeeperOwnerShown: with a running virtbridged keeping the lease of a
// bridge with manager: virtbridged (its status under the run directory),
// plan and status name virtbridged as the owner, with the lease, its expiry
// and the next renewal.
func TestKeeperOwnerShown(t *testing.T) {
	saved := busOwners
	t.Cleanup(func() { busOwners = saved })
	busOwners = func() (managerOwners, error) { return fakeManagers{}, nil }
	run := t.TempDir()
	t.Setenv("VIRTBRIDGE_RUN_DIR", run)
	now := time.Now()
	if err := lease.WriteStatus(run, lease.Status{Bridge: "br0", Uplink: "vbq-up0", Phase: lease.Bound, Addr: "10.88.0.104/24",
		Server: "10.88.0.1", Expires: now.Add(110400 * time.Millisecond), RenewAt: now.Add(50 * time.Second), RebindAt: now.Add(95 * time.Second)}); err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("virtbridged: virtbridged (pid %d) keeps lease 10.88.0.104/24 from 10.88.0.1, bound, expires %s (in 1m50s), renews at %s",
		os.Getpid(), now.Add(110400*time.Millisecond).UTC().Format(time.TimeOnly), now.Add(50*time.Second).UTC().Format(time.TimeOnly))
	cfg := writeConfig(t, "bridges: {br0: {uplink: vbq-up0, manager: virtbridged}}\n")
	code, out, errs := cli(t, planXML, "plan", "--op", "prepare", "--config", cfg)
	if !strings.Contains(out, `"br0": "`+want) {
		t.Errorf("plan: exit %d, stderr %q, stdout lacks the owner %s:\n%s", code, errs, want, out)
	}
	code, out, errs = cli(t, "", "status", "--config", cfg)
	if !strings.Contains(out, "owner:     "+want) {
		t.Errorf("status: exit %d, stderr %q, stdout lacks the owner %s:\n%s", code, errs, want, out)
	}
}
