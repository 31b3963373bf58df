package dhcp

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/virtbridge/virtbridge/internal/owner"
)

// TestClients reads a /proc laid out in a temporary directory: the DHCP
// clients naming the uplink count, others and other programs do not.
func TestClients(t *testing.T) {
	root := t.TempDir()
	for pid, p := range map[string]struct{ cmdline, comm string }{
		"101":  {"/sbin/dhclient\x00-d\x00-4\x00-pf\x00/run/x.pid\x00eth0\x00", "dhclient"},
		"102":  {"dhcpcd\x00--interface=eth0\x00", "dhcpcd"},
		"103":  {"udhcpc\x00-ieth0\x00", "udhcpc"},
		"104":  {"/sbin/dhclient\x00eth1\x00", "dhclient"},     // another link
		"105":  {"sshd\x00eth0\x00", "sshd"},                   // not a DHCP client
		"106":  {"python3\x00-c\x00x\x00eth0\x00", "dhclient"}, // renamed comm counts
		"self": {"dhclient\x00eth0\x00", "dhclient"},           // not a pid
	} {
		dir := filepath.Join(root, pid)
		os.MkdirAll(dir, 0o755)
		os.WriteFile(filepath.Join(dir, "cmdline"), []byte(p.cmdline), 0o644)
		os.WriteFile(filepath.Join(dir, "comm"), []byte(p.comm+"\n"), 0o644)
	}
	got := strings.Join(Clients(root, "eth0", 0), ", ")
	if want := "dhclient (pid 101), dhcpcd (pid 102), udhcpc (pid 103), dhclient (pid 106)"; got != want {
		t.Errorf("Clients = %s\nwant     %s", got, want)
	}
}

// TestDescribeAndRefusal: no lease is static (kernel); a lease is a DHCP
// client's, and the refusal names the address, its lifetime, the client
// and the ifupdown stanza of the bridge.
func TestDescribeAndRefusal(t *testing.T) {
	if o := Describe("eth0", nil, nil); o.Kind != owner.Kernel {
		t.Errorf("no lease: %+v", o)
	}
	leases := []Lease{{Addr: "10.88.0.104/24", ValidLft: 20, PreferredLft: 20}}
	if o := Describe("eth0", leases, nil); o.Kind != owner.DHCPClient || !strings.Contains(o.Detail, "no dhclient, dhcpcd or udhcpc") {
		t.Errorf("lease without client: %+v", o)
	}
	msg := Refusal("br0", "eth0", leases, []string{"dhclient (pid 812)"})
	for _, w := range []string{`uplink "eth0" of bridge "br0"`, "10.88.0.104/24 (valid for 20 s more)", "dhclient (pid 812)",
		"iface eth0 inet manual", "auto br0", "iface br0 inet dhcp", "bridge_ports eth0", "manager: kernel", "set manager: virtbridged for bridge \"br0\"", "stops the DHCP client bound to \"eth0\""} {
		if !strings.Contains(msg, w) {
			t.Errorf("refusal lacks %q:\n%s", w, msg)
		}
	}
	for _, c := range []struct {
		v6, perm, ra, want bool
	}{{false, true, false, false}, {false, false, false, true}, {true, false, true, false}, {true, false, false, true}, {true, true, false, false}} {
		if got := IsDynamic(c.v6, c.perm, c.ra); got != c.want {
			t.Errorf("IsDynamic(v6 %v, permanent %v, from RA %v) = %v", c.v6, c.perm, c.ra, got)
		}
	}
}
