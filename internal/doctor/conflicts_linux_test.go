package doctor

import (
	"context"
	"testing"
	"time"

	"github.com/virtbridge/virtbridge/internal/desired"
	"github.com/virtbridge/virtbridge/internal/owner/nm"
	"github.com/virtbridge/virtbridge/internal/testenv/hostns"
)

// waitFinding runs the doctor on h until it has a finding of check about
// object with status st (the managers take their time to notice a
// change), for at most 30 s, and returns it.
func waitFinding(t *testing.T, h *hostns.Host, check, object string, st Status) Finding {
	t.Helper()
	start := time.Now()
	for {
		r := runHost(t, h, 0)
		for _, f := range find(r, check, object) {
			if f.Status == st {
				t.Logf("%s %s after %v", check, object, time.Since(start).Round(time.Millisecond))
				return f
			}
		}
		if time.Since(start) > 30*time.Second {
			t.Fatalf("no %s %q finding about %s within 30 s:\n%s", st, check, object, dumpReport(r))
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// kernelBridge makes br0 with the uplink as its port behind the
// manager's back, as virtbridge's kernel path (or an operator) would.
func kernelBridge(t *testing.T, h *hostns.Host) {
	h.NS.Script(t, `
		ip link add br0 type bridge stp_state 0
		ip link set br0 up
		ip link set uplink0 master br0`)
}

// TestManagersConflicts runs the doctor against the real managers, each
// case in its own host (private D-Bus, NetworkManager 1.42 or
// systemd-networkd 252): what they make of the links is read over D-Bus,
// and each way they fight over a bridge is explained with the objects,
// what will happen and the fix.
func TestManagersConflicts(t *testing.T) {
	t.Run("NetworkManager's own profile on a port of a bridge made under its feet", func(t *testing.T) {
		t.Parallel()
		h := hostns.New(t, "vbod1", hostns.NetworkManager)
		h.OwnUplink(t)
		kernelBridge(t, h)
		want(t, waitFinding(t, h, "uplink-nm-profile", "uplink0", Fail), Fail,
			`NetworkManager profile "uplink0" is active on uplink0`, "a port of br0", "takes uplink0 out of br0", "virtbridge release br0", "managed no")
		want(t, waitFinding(t, h, "bridge-nm-external", "br0", Warn), Warn,
			`"connected (externally)"`, "virtbridge's kernel path", "nmcli device set br0 managed no")
	})
	t.Run("the uplink's own profile autoconnects on a port of a bridge made under NetworkManager's feet", func(t *testing.T) {
		t.Parallel()
		h := hostns.New(t, "vbodb", hostns.NetworkManager)
		h.OwnUplink(t)
		h.Run(t, "nmcli", "device", "disconnect", hostns.Uplink)
		kernelBridge(t, h)
		want(t, waitFinding(t, h, "uplink-nm-profile", "uplink0", Warn), Warn,
			`own NetworkManager profile "uplink0" has autoconnect on while uplink0 is a port of br0`, "may activate", "takes uplink0 out of br0",
			`nmcli connection modify "uplink0" connection.autoconnect no`)
	})
	t.Run("both managers on the uplink", func(t *testing.T) {
		t.Parallel()
		h := hostns.New(t, "vbod3", hostns.NetworkManager)
		h.OwnUplink(t)
		h.StartOther(t, hostns.Networkd)
		h.WriteFile(t, hostns.NetworkdUplinkFile, hostns.NetworkdUplinkNetwork)
		h.Run(t, "networkctl", "reload")
		want(t, waitFinding(t, h, "managers-both", "uplink0", Fail), Fail,
			`NetworkManager (profile "uplink0", activated) and systemd-networkd`, hostns.NetworkdUplinkFile, "both configure uplink0",
			"Unmanaged=yes", "nmcli device set uplink0 managed no")
	})
	t.Run("networkd on a port of a bridge it did not make", func(t *testing.T) {
		t.Parallel()
		h := hostns.New(t, "vbod4", hostns.Networkd)
		h.OwnUplink(t)
		kernelBridge(t, h)
		want(t, waitFinding(t, h, "uplink-networkd-port", "uplink0", Fail), Fail,
			"systemd-networkd configures uplink0", "a bridge networkd did not make", "cannot adopt", "virtbridge release br0", "Unmanaged=yes")
	})
	t.Run("the uplink's own profile set to autoconnect after the handover", func(t *testing.T) {
		t.Parallel()
		h := hostns.New(t, "vbod5", hostns.NetworkManager)
		h.OwnUplink(t)
		c := nm.New(h.Bus(t))
		b := desired.Bridge{Name: "br0", Uplink: hostns.Uplink, MoveAddresses: true}
		if _, err := c.Handover(context.Background(), nm.Spec{Bridge: b}); err != nil {
			t.Fatal(err)
		}
		r := runHost(t, h, 0)
		for _, c := range []string{"uplink-nm-profile", "bridge-nm-external", "managers-both"} {
			if fs := find(r, c, ""); len(fs) > 0 {
				t.Errorf("after a clean handover: %+v", fs)
			}
		}
		h.Run(t, "nmcli", "connection", "modify", hostns.Uplink, "connection.autoconnect", "yes")
		want(t, waitFinding(t, h, "uplink-nm-profile", "uplink0", Warn), Warn,
			`own NetworkManager profile "uplink0" has autoconnect on`, `profile "virtbridge-br0-port-uplink0"`,
			`nmcli connection modify "uplink0" connection.autoconnect no`)
	})
}
