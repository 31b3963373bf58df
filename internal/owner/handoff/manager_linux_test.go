package handoff

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/godbus/dbus/v5"
	"github.com/vishvananda/netlink"

	"github.com/virtbridge/virtbridge/internal/apply"
	"github.com/virtbridge/virtbridge/internal/desired"
	"github.com/virtbridge/virtbridge/internal/links"
	"github.com/virtbridge/virtbridge/internal/revert"
	"github.com/virtbridge/virtbridge/internal/testenv/netnstest"
)

// TestManagerSetting: manager: kernel always takes the kernel path;
// manager: networkmanager or networkd, when that manager does not own the
// uplink (here: no manager on any bus), refuses by name instead of moving
// the addresses under its feet; auto with no manager to ask is the kernel
// path's. No manager is asked, so this needs no bus.
func TestManagerSetting(t *testing.T) {
	ns := netnstest.New(t, "vbop")
	ns.Script(t, `ip link add uplink0 type veth peer name peer0
ip link set uplink0 up
ip addr add 10.9.0.2/24 dev uplink0`)
	o := &Owners{NS: ns.Handle}
	defer o.Close()
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
		if handled != tc.handled || len(cs) != 0 || (err == nil) != (tc.err == "") || (err != nil && !strings.HasPrefix(err.Error(), tc.err)) ||
			err != nil && !errors.Is(err, links.ErrNotOwner) {
			t.Errorf("manager %q: handled %v, changes %v, err %v; want handled %v, err %q", tc.manager, handled, cs, err, tc.handled, tc.err)
		}
	}
}

// TestOwnerGetsTheKernelPathsRefusals: an uplink the planner refuses
// whoever owns it (here: already a port of another bridge) is refused
// with the kernel path's message under every manager: setting, before any
// manager is asked (no D-Bus dial), and the host is left as it was.
func TestOwnerGetsTheKernelPathsRefusals(t *testing.T) {
	ns := netnstest.New(t, "vbop")
	ns.Script(t, `ip link add uplink0 type veth peer name peer0
ip link add brx type bridge
ip link set uplink0 master brx
ip link set uplink0 up
ip addr add 10.9.0.2/24 dev uplink0`)
	l, err := links.NewAt(ns.Handle)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	dials := 0
	o := &Owners{NS: ns.Handle, Links: l, Dial: func() (*dbus.Conn, error) {
		dials++
		return nil, errors.New("no bus in this test")
	}}
	before, _ := ns.Exec("ip", "-d", "addr", "show")
	want := `uplink "uplink0" of bridge "br0" is already enslaved to "brx"`
	for _, m := range []string{"", "networkmanager", "networkd"} {
		d := desired.Desired{Action: desired.ActionHost, Bridges: []desired.Bridge{{Name: "br0", Uplink: "uplink0", MoveAddresses: true, Manager: m}}}
		_, err := (&apply.Host{Links: l, Owners: o}).Apply(context.Background(), d, "")
		if err == nil || !strings.Contains(err.Error(), want) || !errors.Is(err, links.ErrUplinkBusy) || dials != 0 {
			t.Errorf("manager %q: Apply = %v, %d dials; want the kernel path's refusal %q and no dial", m, err, dials, want)
		}
	}
	if after, _ := ns.Exec("ip", "-d", "addr", "show"); after != before {
		t.Errorf("the refusals changed the host:\n%s\n--- after ---\n%s", before, after)
	}
}

// TestSteadyBridgeAsksNobody: a bridge the kernel path already made right
// (virtbridge's alias, the uplink its port, no host address left on the
// uplink) goes the kernel path without a connection to the bus, so the
// hook's steady prepare costs no D-Bus round trip; a bridge still to be
// made asks the managers, connecting then.
func TestSteadyBridgeAsksNobody(t *testing.T) {
	ns := netnstest.New(t, "vbqs")
	ns.Script(t, `ip link add uplink0 type veth peer name peer0
ip link set uplink0 up
ip addr add 10.9.0.2/24 dev uplink0`)
	dials := 0
	o := &Owners{NS: ns.Handle, Dial: func() (*dbus.Conn, error) {
		dials++
		return nil, errors.New("no bus in this test")
	}}
	b := desired.Bridge{Name: "br0", Uplink: "uplink0", MoveAddresses: true}
	ensure := func() (bool, error) {
		var rv revert.Reverter
		defer rv.Success()
		_, handled, err := o.EnsureBridge(context.Background(), b, &rv)
		return handled, err
	}
	// Not made yet: the managers must be asked.
	if handled, err := ensure(); dials != 1 || !handled || err == nil || !strings.Contains(err.Error(), "no bus in this test") {
		t.Fatalf("bridge to make: handled %v, err %v, %d dials; want the bus dialled and its error", handled, err, dials)
	}
	// As the kernel path leaves it.
	ns.Script(t, `ip link add br0 type bridge
ip addr del 10.9.0.2/24 dev uplink0
ip addr add 10.9.0.2/24 dev br0
ip link set uplink0 master br0
ip link set br0 up`)
	setAlias(t, ns, "br0", "managed by virtbridge")
	if handled, err := ensure(); dials != 1 || handled || err != nil {
		t.Errorf("steady bridge: handled %v, err %v, %d dials; want the kernel path and no dial", handled, err, dials)
	}
	// The same bridge without virtbridge's alias may be a manager's.
	setAlias(t, ns, "br0", "made by someone")
	if _, err := ensure(); dials != 2 || err == nil {
		t.Errorf("bridge without virtbridge's alias: err %v, %d dials; want the managers asked", err, dials)
	}
}

// setAlias sets link's interface alias in ns (iproute2's Script splits
// words, so an alias with spaces goes through netlink).
func setAlias(t testing.TB, ns *netnstest.NS, link, alias string) {
	t.Helper()
	h, err := netlink.NewHandleAt(ns.Handle)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	l, err := h.LinkByName(link)
	if err == nil {
		err = h.LinkSetAlias(l, alias)
	}
	if err != nil {
		t.Fatalf("setting the alias of %s: %v", link, err)
	}
}
