package links

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netns"

	"github.com/virtbridge/virtbridge/internal/desired"
	vblab "github.com/virtbridge/virtbridge/internal/testenv/lab"
)

// TestLibvirtTapsPassTheTapCheck holds EnsurePort's tap check against what
// a real libvirtd makes (the lab): for a bridge NIC, a NIC on a libvirt
// network in bridge mode and a NIC with a <target dev> of its own, the tap
// is a tun/tap device in tap mode whose MAC is TapMAC of the guest MAC,
// also for a guest MAC starting with fe (then the tap's starts with fa);
// EnsurePort accepts each, twice. It also pins the fact that makes an
// existing link at prepare never the VM's tap: libvirt refuses to start a
// VM whose <target dev> names a tap that already exists, and <target
// managed='no'> on a bridge NIC.
func TestLibvirtTapsPassTheTapCheck(t *testing.T) {
	if testing.Short() {
		t.Skip("skipping: runs a real libvirtd (-short)")
	}
	l := vblab.ForTest(t, vblab.Options{})
	l.RunHV(t, "ip", "link", "add", "br-t", "type", "bridge")
	l.RunHV(t, "ip", "link", "set", "br-t", "up")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	netXML, err := vblab.NetworkXML("net-t", "br-t")
	if err != nil {
		t.Fatal(err)
	}
	if err := l.DefineStartNetwork(ctx, netXML); err != nil {
		t.Fatal(err)
	}
	nics := []vblab.NIC{
		{Source: "br-t", MAC: "52:54:00:7a:00:01"},
		{Source: "br-t", MAC: "fe:54:00:7a:00:02"},
		{Type: "network", Source: "net-t", MAC: "52:54:00:7a:00:03", Target: "vbnamed0"},
	}
	dom, err := vblab.DomainXML(vblab.VM{Name: "taps", NICs: nics})
	if err != nil {
		t.Fatal(err)
	}
	l.DefineForTest(t, "taps", dom)
	l.RunVirsh(t, "start", "taps")

	hv, err := netns.GetFromName(l.HVNetns())
	if err != nil {
		t.Fatal(err)
	}
	defer hv.Close()
	m, err := NewAt(hv)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	for _, n := range nics {
		tap, err := l.TapOf(ctx, "taps", n.MAC)
		if err != nil {
			t.Fatal(err)
		}
		want, err := TapMAC(n.MAC)
		if err != nil {
			t.Fatal(err)
		}
		link := l.RunHV(t, "ip", "-d", "link", "show", "dev", tap)
		t.Logf("guest MAC %s: tap %s\n%s", n.MAC, tap, link)
		if !strings.Contains(link, "tun type tap") || !strings.Contains(link, "link/ether "+want+" ") {
			t.Errorf("the tap libvirt made for guest MAC %s is not a tap with MAC %s:\n%s", n.MAC, want, link)
		}
		p := desired.Port{Tap: tap, MAC: n.MAC, Bridge: "br-t"}
		for i := range 2 {
			cs, err := m.EnsurePort(context.Background(), p, "vm:taps", nil)
			if err != nil || (i == 1 && len(cs) != 0) {
				t.Errorf("EnsurePort #%d of libvirt's tap %s = %v, %v; want it accepted, then no change", i+1, tap, cs, err)
			}
		}
	}

	// A tap that exists before the VM starts is not taken over.
	l.RunHV(t, "ip", "tuntap", "add", "dev", "vbpre0", "mode", "tap")
	dom, err = vblab.DomainXML(vblab.VM{Name: "grab", NICs: []vblab.NIC{{Source: "br-t", MAC: "52:54:00:7a:00:09", Target: "vbpre0"}}})
	if err != nil {
		t.Fatal(err)
	}
	l.DefineForTest(t, "grab", dom)
	_, err = l.Virsh(ctx, "start", "grab")
	t.Logf("starting a VM whose <target dev> is an existing tap: %v", err)
	if err == nil {
		t.Errorf("libvirt started a VM on the existing tap vbpre0:\n%s", l.RunHV(t, "ip", "-d", "link", "show", "dev", "vbpre0"))
	}
	// <target managed='no'> (a tap made beforehand, kept as it is) is for
	// type='ethernet' only, which virtbridge leaves alone: libvirt refuses
	// it on a bridge NIC, so the MAC check never meets such a tap.
	unmanaged := strings.Replace(dom, `<target dev="vbpre0"`, `<target managed="no" dev="vbpre0"`, 1)
	if unmanaged == dom {
		t.Fatalf("no <target dev=\"vbpre0\"> in\n%s", dom)
	}
	err = l.Define(ctx, unmanaged)
	t.Logf("defining a bridge NIC with <target managed='no'>: %v", err)
	if err == nil {
		t.Errorf("libvirt accepted <target managed='no'> on a bridge NIC")
	}
	_, err = m.EnsurePort(context.Background(), desired.Port{Tap: "vbpre0", MAC: "52:54:00:7a:00:09", Bridge: "br-t"}, "vm:grab", nil)
	if !errors.Is(err, ErrNotTap) {
		t.Errorf("EnsurePort of the foreign tap vbpre0 = %v, want ErrNotTap", err)
	}
}
