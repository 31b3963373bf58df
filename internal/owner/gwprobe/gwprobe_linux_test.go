package gwprobe

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/virtbridge/virtbridge/internal/testenv/netnstest"
)

// TestGateway: a gateway that answers ARP through the link passes; one
// that does not, and a link without the default route, fail with what was
// seen; the probe changes no route or address.
func TestGateway(t *testing.T) {
	host, up := netnstest.New(t, "vbnp"), netnstest.New(t, "vbnq")
	host.Run(t, "ip", "link", "add", "br0", "type", "veth", "peer", "name", "gw0", "netns", up.Name)
	up.Script(t, "ip addr add 10.89.0.1/24 dev gw0\nip link set gw0 up")
	host.Script(t, "ip addr add 10.89.0.2/24 dev br0\nip link set br0 up")
	ctx := func() context.Context {
		c, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		t.Cleanup(cancel)
		return c
	}
	if _, err := Gateway(ctx(), host.Handle, "br0"); !errors.Is(err, ErrUnreachable) || !strings.Contains(err.Error(), "no IPv4 default route through br0") {
		t.Fatalf("without a default route: %v", err)
	}
	host.Run(t, "ip", "route", "add", "default", "via", "10.89.0.1", "dev", "br0")
	before := host.Dump(t)
	r, err := Gateway(ctx(), host.Handle, "br0")
	if err != nil || r.Gateway.String() != "10.89.0.1" {
		t.Fatalf("gateway answering: %+v, %v", r, err)
	}
	t.Logf("answered after %v", r.Took)
	if after := host.Dump(t); after != before {
		t.Fatalf("the probe changed the host:\n%s\n---\n%s", before, after)
	}
	up.Run(t, "ip", "link", "set", "gw0", "arp", "off")
	host.Run(t, "ip", "neigh", "flush", "dev", "br0")
	if _, err := Gateway(ctx(), host.Handle, "br0"); !errors.Is(err, ErrUnreachable) || !strings.Contains(err.Error(), "gateway 10.89.0.1 is") {
		t.Fatalf("gateway silent: %v", err)
	}
}
