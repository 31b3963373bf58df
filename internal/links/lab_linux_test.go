package links

import (
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/virtbridge/virtbridge/internal/testenv/netnstest"
)

// lab is a host namespace whose uplink (one end of a veth pair) leads to an
// upstream namespace, as LAB.md describes.
type lab struct {
	host, up *netnstest.NS
	m        *Manager
}

// newLab builds the host namespace with a Manager on it and, when uplink is
// set, the uplink veth with 10.77.0.2/24, 2001:db8:77::2/64 and default
// routes (metric 100) to an upstream namespace holding .1 and ::1.
func newLab(t *testing.T, uplink bool) *lab {
	t.Helper()
	l := &lab{host: netnstest.New(t, "vblh")}
	fastDAD(t, l.host)
	if uplink {
		l.up = netnstest.New(t, "vblu")
		fastDAD(t, l.up)
		l.host.Script(t, `
			ip link add uplink type veth peer name upstream netns `+l.up.Name+`
			ip addr add 10.77.0.2/24 dev uplink
			ip -6 addr add 2001:db8:77::2/64 dev uplink nodad
			ip link set uplink up
			ip route add default via 10.77.0.1 dev uplink metric 100
			ip -6 route add default via 2001:db8:77::1 dev uplink metric 100`)
		l.up.Script(t, `
			ip addr add 10.77.0.1/24 dev upstream
			ip -6 addr add 2001:db8:77::1/64 dev upstream nodad
			ip link set upstream up`)
	}
	m, err := NewAt(l.host.Handle)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Close)
	m.sysfs = sysfsOf(t, l.host)
	l.m = m
	return l
}

// fastDAD keeps IPv6 duplicate address detection but drops its random
// initial delay (up to 1 s) for the links created afterwards, so dumps
// settle sooner. (The 1 s wait for an answer is a per-device neighbour
// setting, with no default to set in a new namespace.)
func fastDAD(t *testing.T, ns *netnstest.NS) {
	t.Helper()
	ns.Run(t, "sysctl", "-q", "-w", "net.ipv6.conf.default.router_solicitation_delay=0")
}

// sysfsOf returns a path under which the sysfs of ns's network namespace
// is seen: the root of a process started by `ip netns exec`, which mounts
// a sysfs of that namespace in a mount namespace of its own.
func sysfsOf(t *testing.T, ns *netnstest.NS) string {
	t.Helper()
	cmd := exec.Command("ip", "netns", "exec", ns.Name, "sleep", "3600")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	root := fmt.Sprintf("/proc/%d/root/sys", cmd.Process.Pid)
	deadline := time.Now().Add(5 * time.Second)
	for {
		// `ip netns exec` mounts the namespace's sysfs before it execs sleep.
		if exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", cmd.Process.Pid)); err == nil && strings.Contains(exe, "sleep") {
			return root
		}
		if time.Now().After(deadline) {
			t.Fatalf("ip netns exec %s sleep did not start", ns.Name)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

var (
	timerRE    = regexp.MustCompile(`\b(\w+_timer) +[0-9.]+`)
	lifetimeRE = regexp.MustCompile(`\b(valid|preferred)_lft \d+sec`)
)

// dump is the namespace's state as iproute2 shows it, with the fields that
// change by themselves over time (bridge timers, finite lifetimes) masked.
// It waits for IPv6 duplicate address detection to settle first.
func dump(t *testing.T, ns *netnstest.NS) string {
	t.Helper()
	waitNoTentative(t, ns)
	var b strings.Builder
	for _, args := range [][]string{
		{"ip", "-d", "link", "show"},
		{"ip", "addr", "show"},
		{"ip", "route", "show", "table", "all"},
		{"ip", "-6", "route", "show", "table", "all"},
		{"ip", "rule", "show"},
		{"ip", "neigh", "show", "nud", "permanent"},
	} {
		out := ns.Run(t, args...)
		// ip resolves link-netnsid to a name by trying every namespace in
		// /run/netns; one that a parallel test is deleting makes it print
		// this error among the output. Ask again.
		for i := 0; i < 10 && strings.Contains(out, "Peer netns reference is invalid"); i++ {
			time.Sleep(20 * time.Millisecond)
			out = ns.Run(t, args...)
		}
		fmt.Fprintf(&b, "$ %s\n%s", strings.Join(args, " "), out)
	}
	s := timerRE.ReplaceAllString(b.String(), "$1 *")
	return lifetimeRE.ReplaceAllString(s, "${1}_lft *")
}

func waitNoTentative(t *testing.T, ns *netnstest.NS) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for strings.Contains(ns.Run(t, "ip", "addr", "show"), "tentative") {
		if time.Now().After(deadline) {
			t.Fatalf("IPv6 addresses still tentative after 10s:\n%s", ns.Run(t, "ip", "addr", "show"))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// diff shows the lines that differ between two dumps.
func diff(a, b string) string {
	al, bl := strings.Split(a, "\n"), strings.Split(b, "\n")
	var out strings.Builder
	for i := 0; i < len(al) || i < len(bl); i++ {
		var x, y string
		if i < len(al) {
			x = al[i]
		}
		if i < len(bl) {
			y = bl[i]
		}
		if x != y {
			fmt.Fprintf(&out, "line %d:\n  before: %s\n  after:  %s\n", i+1, x, y)
		}
	}
	return out.String()
}

func requireSame(t *testing.T, what, before, after string) {
	t.Helper()
	if before != after {
		t.Fatalf("%s: namespace changed:\n%s\nfull after:\n%s", what, diff(before, after), after)
	}
}
