package links

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/virtbridge/virtbridge/internal/desired"
	"github.com/virtbridge/virtbridge/internal/revert"
	"github.com/virtbridge/virtbridge/internal/testenv/netnstest"
)

// raLab is a host namespace whose uplink does SLAAC from a router in the
// upstream namespace: dnsmasq advertising 2001:db8:1::/64 (valid 10 min)
// every 10 s with a router lifetime of 30 min. The router also holds
// 2001:db8:2::1, off-link, reached through the learnt default route.
type raLab struct {
	*lab
	routerLL string // the router's link-local address
}

// newRALab builds it; forwarding: the host forwards IPv6 (all.forwarding
// 1), so the uplink accepts advertisements only with accept_ra 2.
func newRALab(t *testing.T, forwarding bool) *raLab {
	t.Helper()
	l := &lab{host: netnstest.New(t, "vbsl"), up: netnstest.New(t, "vbsl")}
	fastDAD(t, l.host)
	fastDAD(t, l.up)
	if forwarding {
		l.host.Script(t, `
			sysctl -q -w net.ipv6.conf.all.forwarding=1
			sysctl -q -w net.ipv6.conf.default.accept_ra=2`)
	}
	l.host.Script(t, `
		ip link add uplink type veth peer name upstream netns `+l.up.Name+`
		ip addr add 10.77.0.2/24 dev uplink
		ip link set uplink up
		ip route add default via 10.77.0.1 dev uplink metric 100`)
	l.up.Script(t, `
		ip addr add 10.77.0.1/24 dev upstream
		ip -6 addr add 2001:db8:1::1/64 dev upstream nodad
		ip -6 addr add 2001:db8:2::1/128 dev lo
		sysctl -q -w net.ipv6.conf.all.forwarding=1
		ip link set upstream up`)
	startRouter(t, l.up)
	m, err := NewAt(l.host.Handle)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Close)
	m.sysfs = sysfsOf(t, l.host)
	l.m = m
	rl := &raLab{lab: l}
	waitFor(t, 30*time.Second, "SLAAC on the uplink", func() bool {
		return strings.Contains(l.host.Run(t, "ip", "-6", "route", "show", "dev", "uplink"), "proto ra") &&
			strings.Contains(l.host.Run(t, "ip", "-6", "addr", "show", "dev", "uplink", "scope", "global"), "2001:db8:1:")
	})
	rl.routerLL = strings.Fields(l.host.Run(t, "ip", "-6", "route", "show", "default", "dev", "uplink"))[2]
	return rl
}

// startRouter runs dnsmasq as the router advertising in ns, stopped (by
// pid) at the end of the test.
func startRouter(t *testing.T, ns *netnstest.NS) {
	t.Helper()
	if _, err := exec.LookPath("dnsmasq"); err != nil {
		t.Skip("skipped: needs dnsmasq (scripts/deps.sh)")
	}
	cmd := exec.Command("ip", "netns", "exec", ns.Name, "dnsmasq", "--no-daemon", "--port=0", "--conf-file=/dev/null",
		"--interface=upstream", "--bind-interfaces", "--enable-ra", "--dhcp-range=2001:db8:1::,ra-only,64,10m",
		"--ra-param=upstream,10,1800", "--pid-file=", "--dhcp-leasefile=/dev/null")
	out := &strings.Builder{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			t.Logf("dnsmasq:\n%s", out)
		}
	})
}

func waitFor(t *testing.T, limit time.Duration, what string, ok func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !ok() {
		if time.Since(start) > limit {
			t.Fatalf("no %s after %s", what, limit)
		}
		time.Sleep(100 * time.Millisecond)
	}
	return time.Since(start)
}

// slowPing pings addr from ns every 100 ms, count times.
func slowPing(t *testing.T, ns *netnstest.NS, addr string, count int) func() (lost, sent int) {
	t.Helper()
	cmd := exec.Command("ip", "netns", "exec", ns.Name, "ping", "-n", "-q", "-i", "0.1", "-W", "1",
		"-c", strconv.Itoa(count), addr)
	cmd.Env = []string{"LC_ALL=C", "PATH=/usr/sbin:/usr/bin:/sbin:/bin"}
	out := &strings.Builder{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			cmd.Wait()
		}
	})
	return func() (int, int) {
		cmd.Wait()
		m := regexp.MustCompile(`(\d+) packets transmitted, (\d+) received`).FindStringSubmatch(out.String())
		if m == nil {
			t.Fatalf("ping %s: no statistics:\n%s", addr, out)
		}
		tx, _ := strconv.Atoi(m[1])
		rx, _ := strconv.Atoi(m[2])
		return tx - rx, tx
	}
}

// validLft is the valid lifetime of the bridge's SLAAC address.
func validLft(t *testing.T, ns *netnstest.NS) int {
	t.Helper()
	return validLftOn(t, ns, "br-up")
}

// validLftOn is the valid lifetime of link's SLAAC address.
func validLftOn(t *testing.T, ns *netnstest.NS, link string) int {
	t.Helper()
	out := ns.Run(t, "ip", "-6", "addr", "show", "dev", link, "scope", "global")
	m := regexp.MustCompile(`2001:db8:1:\S+ .*\n\s+valid_lft (\d+)sec`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no SLAAC address with a lifetime on the bridge:\n%s", out)
	}
	v, _ := strconv.Atoi(m[1])
	return v
}

// sysctlOf reads net.ipv6.conf.LINK.KEY in ns.
func sysctlOf(t *testing.T, ns *netnstest.NS, link, key string) string {
	t.Helper()
	return strings.TrimSpace(ns.Run(t, "sysctl", "-n", fmt.Sprintf("net/ipv6/conf/%s/%s", link, key)))
}

// checkRAHandoff is the SLAAC handoff: the host keeps reaching its router
// (global and off-link through the learnt default route) while the uplink
// joins the bridge; the uplink keeps nothing it learnt and stops
// accepting advertisements; the bridge accepts them (acceptRA) and, after
// the next advertisement, holds its own learnt default route and the
// address, refreshed.
func checkRAHandoff(t *testing.T, l *raLab, b desired.Bridge, acceptRA string) {
	const samples = 60 // 6 s at one every 100 ms
	global := slowPing(t, l.host, "2001:db8:1::1", samples)
	offLink := slowPing(t, l.host, "2001:db8:2::1", samples)
	time.Sleep(time.Second)
	var rv revert.Reverter
	start := time.Now()
	cs, err := l.m.EnsureBridge(context.Background(), b, &rv)
	if err != nil {
		t.Fatalf("EnsureBridge: %v", err)
	}
	rv.Success()
	t.Logf("handoff in %s:", time.Since(start))
	for _, c := range cs {
		t.Logf("  %s", c)
	}
	ll := slowPing(t, l.host, l.routerLL+"%br-up", 30)
	for what, res := range map[string]func() (int, int){"global": global, "off-link": offLink, "link-local on the bridge": ll} {
		lost, sent := res()
		t.Logf("ping %s: %d of %d lost", what, lost, sent)
		if lost > 1 {
			t.Errorf("ping of the router's %s address: %d of %d lost (one every 100 ms); want at most 1", what, lost, sent)
		}
	}
	if got := l.host.Run(t, "ip", "-6", "addr", "show", "dev", "uplink", "scope", "global"); got != "" {
		t.Errorf("addresses left on the enslaved uplink:\n%s", got)
	}
	if got := l.host.Run(t, "ip", "-6", "route", "show", "dev", "uplink"); strings.TrimSpace(got) != "fe80::/64 proto kernel metric 256 pref medium" {
		t.Errorf("routes left on the enslaved uplink:\n%s", got)
	}
	if got := sysctlOf(t, l.host, "uplink", "accept_ra"); got != "0" {
		t.Errorf("uplink accept_ra = %s; want 0", got)
	}
	if got := sysctlOf(t, l.host, "br-up", "accept_ra"); got != acceptRA {
		t.Errorf("bridge accept_ra = %s; want %s", got, acceptRA)
	}
	// The next advertisement: the bridge's own default route (metric
	// 1024) and the moved address refreshed: its valid_lft back up, not
	// counting down from what it had when it moved.
	moved := validLft(t, l.host)
	took := waitFor(t, 30*time.Second, "learnt default route and refreshed address on the bridge", func() bool {
		routes := l.host.Run(t, "ip", "-6", "route", "show", "dev", "br-up")
		return strings.Contains(routes, "default via "+l.routerLL+" proto ra metric 1024") &&
			validLft(t, l.host) > moved-int(time.Since(start).Seconds())+3
	})
	t.Logf("bridge learnt from the advertisements %s after the handoff (address valid %d s when moved, %d s now)",
		time.Since(start), moved, validLft(t, l.host))
	_ = took
	if cs, err := l.m.EnsureBridge(context.Background(), b, &rv); err != nil || len(cs) != 0 {
		t.Errorf("second EnsureBridge = %v, %v; want no change", cs, err)
	}
	l.host.Run(t, "ping", "-c1", "-W5", "2001:db8:2::1")
}

// TestSLAACHandoff: an uplink with a SLAAC address and a `proto ra`
// default route. Before, both stayed on the enslaved uplink and the host
// lost IPv6 on that network until the bridge learnt on its own.
func TestSLAACHandoff(t *testing.T) {
	t.Parallel()
	checkRAHandoff(t, newRALab(t, false), upBridge(), "1")
}

// TestSLAACHandoffForwarding: the same on a host forwarding IPv6, where
// only accept_ra 2 keeps the advertisements.
func TestSLAACHandoffForwarding(t *testing.T) {
	t.Parallel()
	checkRAHandoff(t, newRALab(t, true), upBridge(), "2")
}

// TestSLAACHandoffForwardingLater: the configuration turns IPv6
// forwarding on (sysctl.ipv6_forward: 1), which the sysctl backend does
// after the bridges: the bridge must already accept advertisements with
// accept_ra 2, or forwarding purges its learnt default route.
func TestSLAACHandoffForwardingLater(t *testing.T) {
	t.Parallel()
	l := newRALab(t, false)
	b := upBridge()
	b.IPv6Forward = true
	var rv revert.Reverter
	if _, err := l.m.EnsureBridge(context.Background(), b, &rv); err != nil {
		t.Fatalf("EnsureBridge: %v", err)
	}
	if got := sysctlOf(t, l.host, "br-up", "accept_ra"); got != "2" {
		t.Errorf("bridge accept_ra = %s; want 2", got)
	}
	waitFor(t, 30*time.Second, "learnt default route on the bridge", func() bool {
		return strings.Contains(l.host.Run(t, "ip", "-6", "route", "show", "dev", "br-up"), "proto ra metric 1024")
	})
	l.host.Run(t, "sysctl", "-q", "-w", "net.ipv6.conf.all.forwarding=1")
	if got := l.host.Run(t, "ip", "-6", "route", "show", "dev", "br-up"); !strings.Contains(got, "proto ra metric 1024") {
		t.Errorf("turning forwarding on purged the bridge's learnt default route:\n%s", got)
	}
	l.host.Run(t, "ping", "-c1", "-W5", "2001:db8:2::1")
}

// TestSLAACRelease: ReleaseBridge gives the RA role back to the uplink:
// accept_ra as before the handoff, the SLAAC address and the learnt
// default route on the uplink again, and the next advertisement refreshes
// them there.
func TestSLAACRelease(t *testing.T) {
	t.Parallel()
	l := newRALab(t, false)
	var rv revert.Reverter
	if _, err := l.m.EnsureBridge(context.Background(), upBridge(), &rv); err != nil {
		t.Fatalf("EnsureBridge: %v", err)
	}
	rv.Success()
	waitFor(t, 30*time.Second, "learnt default route on the bridge", func() bool {
		return strings.Contains(l.host.Run(t, "ip", "-6", "route", "show", "dev", "br-up"), "proto ra metric 1024")
	})
	offLink := slowPing(t, l.host, "2001:db8:2::1", 30)
	time.Sleep(time.Second)
	cs, _, err := l.m.ReleaseBridge(context.Background(), upBridge(), &rv)
	if err != nil {
		t.Fatalf("ReleaseBridge: %v", err)
	}
	for _, c := range cs {
		t.Logf("  %s", c)
	}
	if lost, sent := offLink(); lost > 1 {
		t.Errorf("ping of the off-link address: %d of %d lost through the release; want at most 1", lost, sent)
	}
	if got := sysctlOf(t, l.host, "uplink", "accept_ra"); got != "1" {
		t.Errorf("uplink accept_ra = %s after the release; want 1", got)
	}
	if got := l.host.Run(t, "ip", "-6", "addr", "show", "dev", "uplink", "scope", "global"); !strings.Contains(got, "2001:db8:1:") {
		t.Errorf("no SLAAC address back on the uplink:\n%s", got)
	}
	waitFor(t, 30*time.Second, "learnt default route on the uplink", func() bool {
		return strings.Contains(l.host.Run(t, "ip", "-6", "route", "show", "dev", "uplink"), "default via "+l.routerLL+" proto ra metric 1024")
	})
	l.host.Run(t, "ping", "-c1", "-W5", "2001:db8:2::1")
}

// TestDHCPv6LeaseBesideSLAAC: a DHCPv6 lease (an IPv6 address with a
// lifetime that no advertisement made) beside the SLAAC address is refused
// like a DHCPv4 lease of a bare client, before any change: the RA role
// stays on the uplink. With manager: kernel the lease moves as a static
// address, and the SLAAC address with its lifetime, the bridge taking the
// RA role.
func TestDHCPv6LeaseBesideSLAAC(t *testing.T) {
	t.Parallel()
	l := newRALab(t, false)
	l.host.Run(t, "ip", "-6", "addr", "add", "2001:db8:1::99/128", "dev", "uplink", "valid_lft", "300", "preferred_lft", "300", "nodad")
	startFakeDHCPClient(t, l.host.Name, "uplink")
	var rv revert.Reverter
	_, err := l.m.EnsureBridge(context.Background(), upBridge(), &rv)
	if !errors.Is(err, ErrDynamicAddress) || !strings.Contains(err.Error(), "2001:db8:1::99/128 (valid for ") ||
		strings.Contains(err.Error(), "2001:db8:1:0:") {
		t.Fatalf("EnsureBridge = %v; want ErrDynamicAddress naming the lease 2001:db8:1::99/128, not the SLAAC address", err)
	}
	if got := l.host.Run(t, "ip", "link", "show"); strings.Contains(got, "br-up") || sysctlOf(t, l.host, "uplink", "accept_ra") != "1" {
		t.Errorf("the refusal changed the host:\n%s", got)
	}
	b := upBridge()
	b.Manager = "kernel"
	if _, err := l.m.EnsureBridge(context.Background(), b, &rv); err != nil {
		t.Fatalf("EnsureBridge(manager kernel) = %v", err)
	}
	got := l.host.Run(t, "ip", "-6", "addr", "show", "dev", "br-up", "scope", "global")
	if !regexp.MustCompile(`2001:db8:1::99/128 scope global nodad \n\s+valid_lft forever`).MatchString(got) ||
		!regexp.MustCompile(`2001:db8:1:0:\S+/64 scope global nodad dynamic mngtmpaddr \n\s+valid_lft \d+sec`).MatchString(got) {
		t.Errorf("want the lease static and the SLAAC address with its lifetime on the bridge:\n%s", got)
	}
	if got := l.host.Run(t, "ip", "-6", "addr", "show", "dev", "uplink", "scope", "global"); got != "" {
		t.Errorf("addresses left on the enslaved uplink:\n%s", got)
	}
}

// TestSLAACHandoffUndo: a handoff undone (a failed probe, a later step
// failing) gives the uplink its RA role back, and the uplink's next
// advertisement is acted on: its default route comes back as a copy one
// metric up, as the same key would make the kernel drop the advertisement
// (the address would then count down unrefreshed).
func TestSLAACHandoffUndo(t *testing.T) {
	t.Parallel()
	l := newRALab(t, false)
	var rv revert.Reverter
	if _, err := l.m.EnsureBridge(context.Background(), upBridge(), &rv); err != nil {
		t.Fatalf("EnsureBridge: %v", err)
	}
	if err := rv.Fail(); err != nil {
		t.Fatalf("undo: %v", err)
	}
	if got := sysctlOf(t, l.host, "uplink", "accept_ra"); got != "1" {
		t.Errorf("uplink accept_ra = %s after the undo; want 1", got)
	}
	if got := l.host.Run(t, "ip", "link", "show"); strings.Contains(got, "br-up") {
		t.Errorf("bridge left after the undo:\n%s", got)
	}
	start, moved := time.Now(), validLftOn(t, l.host, "uplink")
	waitFor(t, 30*time.Second, "refreshed address and learnt default route on the uplink", func() bool {
		return strings.Contains(l.host.Run(t, "ip", "-6", "route", "show", "dev", "uplink"), "default via "+l.routerLL+" proto ra metric 1024") &&
			validLftOn(t, l.host, "uplink") > moved-int(time.Since(start).Seconds())+3
	})
}

// TestSLAACBridgeKeepsAccepting: a bridge holding what it learnt whose
// accept_ra no longer acts on advertisements — 0, or 1 once the
// configuration turns IPv6 forwarding on — gets it back at the next
// EnsureBridge, although its uplink has nothing left to hand over.
func TestSLAACBridgeKeepsAccepting(t *testing.T) {
	t.Parallel()
	l := newRALab(t, false)
	var rv revert.Reverter
	if _, err := l.m.EnsureBridge(context.Background(), upBridge(), &rv); err != nil {
		t.Fatalf("EnsureBridge: %v", err)
	}
	l.host.Run(t, "sysctl", "-q", "-w", "net.ipv6.conf.br-up.accept_ra=0")
	if _, err := l.m.EnsureBridge(context.Background(), upBridge(), &rv); err != nil {
		t.Fatalf("EnsureBridge: %v", err)
	}
	if got := sysctlOf(t, l.host, "br-up", "accept_ra"); got != "1" {
		t.Errorf("bridge accept_ra = %s; want 1 back", got)
	}
	b := upBridge()
	b.IPv6Forward = true
	cs, err := l.m.EnsureBridge(context.Background(), b, &rv)
	if err != nil {
		t.Fatalf("EnsureBridge: %v", err)
	}
	if got := sysctlOf(t, l.host, "br-up", "accept_ra"); got != "2" || len(cs) != 1 {
		t.Errorf("bridge accept_ra = %s (changes %v); want 2, one change", got, cs)
	}
}
