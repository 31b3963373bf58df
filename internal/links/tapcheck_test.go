package links

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/virtbridge/virtbridge/internal/change"
	"github.com/virtbridge/virtbridge/internal/desired"
	"github.com/virtbridge/virtbridge/internal/revert"
)

// notTapCases are links a VM may name as its <target dev> on the managed
// bridge br0 that are not its tap. Manager (in a namespace, seeded by the
// script) and Fake (seeded by seed) must refuse each before changing
// anything, with the same message.
var notTapCases = []struct {
	name   string
	tap    string // the <target dev>
	guest  string // the NIC's guest MAC
	script string // ip commands making the link (br-x, an unmanaged bridge, exists)
	seed   func(*Fake)
	want   string
}{
	{
		name: "the default-route NIC", tap: "eth0", guest: "52:54:00:aa:01:01",
		script: "ip link add eth0 type veth peer name eth0p\nip addr add 10.88.0.2/24 dev eth0\nip link set eth0 up\nip route add default via 10.88.0.1 dev eth0",
		seed:   func(f *Fake) { f.AddLink("eth0", "veth", "52:54:00:00:00:01", "", "10.88.0.2/24") },
		want:   `eth0 is a veth link, not a tun/tap device in tap mode`,
	},
	{
		name: "a container's veth in another bridge", tap: "ctr0", guest: "52:54:00:aa:01:01",
		script: "ip link add ctr0 type veth peer name ctr0p\nip link set ctr0 master br-x",
		seed:   func(f *Fake) { f.AddLink("ctr0", "veth", "52:54:00:00:00:02", "br-x") },
		want:   `ctr0 is a veth link, not a tun/tap device in tap mode`,
	},
	{
		name: "an overlay's VXLAN port of an unmanaged bridge", tap: "vx0", guest: "52:54:00:aa:01:01",
		script: "ip link add vx0 type vxlan id 5 dstport 4789\nip link set vx0 master br-x",
		seed:   func(f *Fake) { f.AddLink("vx0", "vxlan", "52:54:00:00:00:03", "br-x") },
		want:   `vx0 is a vxlan link, not a tun/tap device in tap mode`,
	},
	{
		name: "an unmanaged bridge", tap: "br-x", guest: "52:54:00:aa:01:01",
		want: `br-x is a bridge link, not a tun/tap device in tap mode`,
	},
	{
		name: "a tun device", tap: "tun0", guest: "52:54:00:aa:01:01",
		script: "ip tuntap add dev tun0 mode tun",
		seed:   func(f *Fake) { f.AddLink("tun0", "tuntap", "", "").TunMode = "tun" },
		want:   `tun0 is a tun/tap device in tun mode, not a tun/tap device in tap mode`,
	},
	{
		name: "a VPN's tap", tap: "tap0", guest: "52:54:00:aa:01:01",
		script: "ip tuntap add dev tap0 mode tap\nip link set tap0 address 02:00:00:00:00:99",
		seed:   func(f *Fake) { f.AddLink("tap0", "tuntap", "02:00:00:00:00:99", "") },
		want:   `tap "tap0" of NIC 52:54:00:aa:01:01 on bridge "br0" has MAC 02:00:00:00:00:99, but libvirt gives this NIC's tap the MAC fe:54:00:aa:01:01`,
	},
	{
		name: "another VM's tap", tap: "vnet7", guest: "52:54:00:aa:01:01",
		script: "ip tuntap add dev vnet7 mode tap\nip link set vnet7 address fe:54:00:bb:00:07 master br-x alias vm:other",
		seed: func(f *Fake) {
			f.AddLink("vnet7", "tuntap", "fe:54:00:bb:00:07", "br-x").Alias = "vm:other"
		},
		want: `has MAC fe:54:00:bb:00:07, but libvirt gives this NIC's tap the MAC fe:54:00:aa:01:01`,
	},
	{
		// libvirt gives fa:... when the guest MAC starts with fe.
		name: "a tap with the guest's own MAC", tap: "vnet8", guest: "fe:54:00:aa:01:02",
		script: "ip tuntap add dev vnet8 mode tap\nip link set vnet8 address fe:54:00:aa:01:02",
		seed:   func(f *Fake) { f.AddLink("vnet8", "tuntap", "fe:54:00:aa:01:02", "") },
		want:   `has MAC fe:54:00:aa:01:02, but libvirt gives this NIC's tap the MAC fa:54:00:aa:01:02`,
	},
}

// checkNotTap runs EnsurePort twice on a link that is not the NIC's tap
// and returns the refusal, failing t unless both runs refuse with
// ErrNotTap, the expected message and no change or undo step.
func checkNotTap(t *testing.T, ensure func(context.Context, desired.Port, string, *revert.Reverter) ([]change.Change, error), tap, guest, want string) string {
	t.Helper()
	var msg string
	for i := range 2 {
		var rv revert.Reverter
		cs, err := ensure(context.Background(), policyPort(tap, guest), "vm:hostile uuid:1", &rv)
		if !errors.Is(err, ErrNotTap) || !strings.Contains(err.Error(), want) || len(cs) != 0 {
			t.Fatalf("run %d: EnsurePort(%s) = %v, %v; want no change and ErrNotTap saying %q", i+1, tap, cs, err, want)
		}
		if !strings.Contains(err.Error(), "<target dev='"+tap+"'/>") {
			t.Errorf("the refusal does not tell what to fix: %v", err)
		}
		if err := rv.Fail(); err != nil {
			t.Errorf("undo after a refusal: %v", err)
		}
		msg = err.Error()
	}
	return msg
}

// policyPort is the port of the NIC with guest MAC guest naming tap on br0.
func policyPort(tap, guest string) desired.Port {
	return desired.Port{Tap: tap, MAC: guest, Bridge: "br0"}
}

func TestFakeRefusesWhatIsNotTheTap(t *testing.T) {
	for _, tc := range notTapCases {
		t.Run(tc.name, func(t *testing.T) {
			f := host()
			f.AddLink("br0", "bridge", "02:00:00:00:00:01", "").MACPinned = true
			f.AddLink("br-x", "bridge", "02:00:00:00:00:02", "").MACPinned = true
			if tc.seed != nil {
				tc.seed(f)
			}
			before := f.String()
			msg := checkNotTap(t, f.EnsurePort, tc.tap, tc.guest, tc.want)
			t.Log(msg)
			if after := f.String(); after != before {
				t.Errorf("the refusal changed the model:\n%s\nwant:\n%s", after, before)
			}
		})
	}
}
