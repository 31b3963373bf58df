package links

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"

	"github.com/virtbridge/virtbridge/internal/testenv/netnstest"
)

// TestDumpsAreFilteredByTheKernel: with 150 veth pairs holding addresses
// and routes, the address and route listings of one link return exactly
// that link's addresses and routes (as `ip` shows them), and the kernel
// sent nothing else: the dumps are filtered by ifindex and output device
// in the kernel, not by walking every link (docs/BENCHMARKS.md, F5).
func TestDumpsAreFilteredByTheKernel(t *testing.T) {
	ns := netnstest.New(t, "vbldump")
	var b strings.Builder
	for i := range 150 {
		fmt.Fprintf(&b, "link add va%d type veth peer name vb%d\nlink set va%d up\nlink set vb%d up\n", i, i, i, i)
		fmt.Fprintf(&b, "addr add 10.%d.%d.1/24 dev va%d\naddr add 2001:db8:%x::1/64 dev va%d nodad\n", 100+i/200, i%200, i, i, i)
		fmt.Fprintf(&b, "addr add 10.%d.%d.2/24 dev vb%d\nroute add 172.%d.%d.0/24 via 10.%d.%d.9 dev va%d\n",
			100+i/200, i%200, i, 16+i/200, i%200, 100+i/200, i%200, i)
	}
	batch := filepath.Join(t.TempDir(), "links.batch")
	if err := os.WriteFile(batch, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	ns.Run(t, "ip", "-batch", batch)
	ns.Script(t, `
		ip link add target type veth peer name peer
		ip link set target up
		ip link set peer up
		ip addr add 192.0.2.2/24 dev target
		ip addr add 192.0.2.3/24 dev target
		ip addr add 198.51.100.7/32 dev target label target:1
		ip -6 addr add 2001:db8:ff::2/64 dev target nodad
		ip route add 203.0.113.0/24 via 192.0.2.1 dev target
		ip -6 route add 2001:db8:aa::/48 via 2001:db8:ff::1 dev target`)
	m, err := NewAt(ns.Handle)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	target, err := m.h.LinkByName("target")
	if err != nil {
		t.Fatal(err)
	}
	idx := target.Attrs().Index

	as, seen, err := m.addrDump(idx)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, a := range as {
		got = append(got, a.IPNet.String()+" "+a.Label)
	}
	var shown []struct {
		AddrInfo []struct {
			Local     string `json:"local"`
			Prefixlen int    `json:"prefixlen"`
			Label     string `json:"label"`
		} `json:"addr_info"`
	}
	if err := json.Unmarshal([]byte(ns.Run(t, "ip", "-j", "addr", "show", "dev", "target")), &shown); err != nil || len(shown) != 1 {
		t.Fatalf("ip -j addr show dev target: %v", err)
	}
	var want []string
	for _, a := range shown[0].AddrInfo {
		want = append(want, fmt.Sprintf("%s/%d %s", a.Local, a.Prefixlen, a.Label))
	}
	slices.Sort(got)
	slices.Sort(want)
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("addresses of target:\n%s\nwant (ip addr):\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if seen != len(want) {
		t.Errorf("the kernel sent %d addresses for a link holding %d: the dump was not filtered by ifindex", seen, len(want))
	}

	for _, fam := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
		rs, err := m.routeDump(fam, idx)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, rt := range rs {
			got = append(got, routeString(rt))
			if rt.LinkIndex != idx {
				t.Errorf("family %d: route %s (ifindex %d) does not use target (ifindex %d)", fam, routeString(rt), rt.LinkIndex, idx)
			}
		}
		flag := map[int]string{netlink.FAMILY_V4: "-4", netlink.FAMILY_V6: "-6"}[fam]
		want := ns.Run(t, "ip", flag, "-o", "route", "show", "table", "all", "dev", "target")
		if n := len(strings.Split(strings.TrimSpace(want), "\n")); len(rs) != n {
			t.Errorf("family %d: the kernel sent %d routes, `ip route show dev target` has %d:\n%s\ngot:\n%s",
				fam, len(rs), n, want, strings.Join(got, "\n"))
		}
	}
}
