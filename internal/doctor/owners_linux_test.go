package doctor

import (
	"context"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/virtbridge/virtbridge/internal/owner"
)

// fakeOwners answers as NetworkManager's or networkd's D-Bus detection
// would: links maps a link to its owner.
type fakeOwners map[string]owner.Owner

func (f fakeOwners) Owner(_ context.Context, link string) (owner.Owner, bool, error) {
	o, ok := f[link]
	return o, ok, nil
}

// TestUplinkOwnerManager: a NetworkManager (or networkd) owner detected
// over D-Bus is shown as the uplink's owner (uplink-owner), OK under
// manager: auto — the handoff goes through it — and the state-file warning
// (uplink-manager) is not given; manager: kernel warns, a manager: naming
// the other manager fails. Nobody's uplink: no uplink-owner finding, the
// state-file check as before.
func TestUplinkOwnerManager(t *testing.T) {
	ns := uplinkNS(t)
	ls, err := HostLinks{NS: &ns.Handle}.Links()
	if err != nil {
		t.Fatal(err)
	}
	up, _ := linkByName(ls, "uplink0")
	nm := t.TempDir()
	writeHook(t, filepath.Join(nm, "devices", strconv.Itoa(up.Index)), "[device]\nmanaged=true\n", 0o644)
	m := &HostManagers{NMRunDir: nm, NetworkdLinksDir: t.TempDir()}
	nmOwner := fakeOwners{"uplink0": {Kind: owner.NetworkManager, Uplink: "uplink0",
		Detail: `NetworkManager profile "uplink0" is active on "uplink0" (device state 100)`}}

	src := func(cfg string, o Owners) Sources {
		s := nsSources(t, ns, cfg, "", m)
		s.Owners = o
		return s
	}
	r := Run(src("bridges: {br0: {uplink: uplink0}}\n", nmOwner))
	want(t, one(t, r, "uplink-owner", "uplink0"), OK, `owned by NetworkManager: NetworkManager profile "uplink0" is active`, "hands bridge br0 over through it")
	if fs := find(r, "uplink-manager", "uplink0"); len(fs) != 0 {
		t.Errorf("uplink-manager warns though the handoff goes through the owner: %+v", fs)
	}
	want(t, one(t, Run(src("bridges: {br0: {uplink: uplink0, manager: kernel}}\n", nmOwner)), "uplink-owner", "uplink0"), Warn,
		"says manager: kernel", "behind the manager's back", "drop manager: kernel")
	want(t, one(t, Run(src("bridges: {br0: {uplink: uplink0, manager: networkd}}\n", nmOwner)), "uplink-owner", "uplink0"), Fail,
		"says manager: networkd", "set manager: auto")
	ndOwner := fakeOwners{"uplink0": {Kind: owner.Networkd, Uplink: "uplink0", Detail: `systemd-networkd configures "uplink0" from /etc/systemd/network/10-uplink.network (configured)`}}
	want(t, one(t, Run(src("bridges: {br0: {uplink: uplink0}}\n", ndOwner)), "uplink-owner", "uplink0"), OK, "owned by systemd-networkd: ")

	r = Run(src("bridges: {br0: {uplink: uplink0}}\n", fakeOwners{}))
	if fs := find(r, "uplink-owner", "uplink0"); len(fs) != 0 {
		t.Errorf("uplink-owner for an uplink no manager owns: %+v", fs)
	}
	want(t, one(t, r, "uplink-manager", "uplink0"), Warn, "managed by NetworkManager")
}
