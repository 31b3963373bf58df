package handoff

import (
	"context"
	"strings"
	"testing"

	"github.com/vishvananda/netns"

	"github.com/virtbridge/virtbridge/internal/desired"
	"github.com/virtbridge/virtbridge/internal/revert"
)

// TestManagerSetting: manager: kernel always takes the kernel path;
// manager: networkmanager or networkd, when that manager does not own the
// uplink (here: no manager on any bus), refuses by name instead of moving
// the addresses under its feet; auto with no manager to ask is the kernel
// path's. No manager is asked, so this needs no bus and no root.
func TestManagerSetting(t *testing.T) {
	o := &Owners{NS: netns.None()}
	for _, tc := range []struct {
		manager string
		handled bool
		err     string
	}{
		{"", false, ""},
		{"kernel", false, ""},
		{"networkmanager", true, `bridge "br0": the configuration says manager: networkmanager, but NetworkManager does not manage uplink "uplink0"`},
		{"networkd", true, `bridge "br0": the configuration says manager: networkd, but systemd-networkd does not manage uplink "uplink0"`},
	} {
		var rv revert.Reverter
		b := desired.Bridge{Name: "br0", Uplink: "uplink0", MoveAddresses: true, Manager: tc.manager}
		cs, handled, err := o.EnsureBridge(context.Background(), b, &rv)
		rv.Success()
		if handled != tc.handled || len(cs) != 0 || (err == nil) != (tc.err == "") || (err != nil && !strings.HasPrefix(err.Error(), tc.err)) {
			t.Errorf("manager %q: handled %v, changes %v, err %v; want handled %v, err %q", tc.manager, handled, cs, err, tc.handled, tc.err)
		}
	}
}
