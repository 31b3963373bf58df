package main

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/virtbridge/virtbridge/internal/testenv/hostns"
)

// keeperConfig is the configuration of the dhclient hosts: one bridge on
// the uplink, with manager (empty: auto), nothing else touched.
func keeperConfig(manager string) string {
	m := ""
	if manager != "" {
		m = "\n    manager: " + manager
	}
	return `bridges:
  br0:
    uplink: ` + hostns.Uplink + m + `
sysctl: {ip_forward: leave, ipv6_forward: leave, bridge_nf_call_iptables: leave, bridge_nf_call_ip6tables: leave}
firewall: {backend: none}
`
}

// startKeeperDaemon starts the built virtbridged in h with config; its
// state and journal files in h.Dir, its run directory the host's private
// /run/virtbridge. libvirtd does not run there: the daemon makes the
// bridges at start and keeps retrying libvirt.
func startKeeperDaemon(t *testing.T, h *hostns.Host, config string) (pid int, logDir string) {
	t.Helper()
	cfg := filepath.Join(h.Dir, "virtbridge.yaml")
	if err := os.WriteFile(cfg, []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	logDir = filepath.Join(h.Dir, "log")
	env := []string{"VIRTBRIDGE_STATE_DIR=" + filepath.Join(h.Dir, "state"), "VIRTBRIDGE_LOG_DIR=" + logDir}
	cmd := h.Start(t, "virtbridged", env, daemonBinary(t), "--config", cfg)
	return cmd.Process.Pid, logDir
}

// sampleKept checks one sample of a host whose lease virtbridged keeps:
// the same address on the bridge only, with a finite lifetime of at most
// the lease time, the default route and one connected route through the
// bridge, and upstream able to ping the host.
func sampleKept(t *testing.T, h *hostns.Host, addr string) []string {
	var bad []string
	if a := h.Addresses(t, "br0"); !slices.Equal(a, []string{addr}) {
		bad = append(bad, "bridge addresses "+strings.Join(a, ","))
	}
	if a := h.Addresses(t, hostns.Uplink); len(a) > 0 {
		bad = append(bad, "uplink addresses "+strings.Join(a, ","))
	}
	if m := h.Master(t, hostns.Uplink); m != "br0" {
		bad = append(bad, "uplink master "+m)
	}
	if r := h.DefaultRoute(t); !strings.Contains(r, "via "+hostns.Gateway+" dev br0") {
		bad = append(bad, "default route "+r)
	}
	if rs := h.ConnectedRoutes(t); len(rs) != 1 || !strings.Contains(rs[0], "dev br0") {
		bad = append(bad, "connected routes "+strings.Join(rs, " | "))
	}
	if lft := validLft(t, h, "br0"); lft <= 0 || lft > int(hostns.LeaseTime/time.Second) {
		bad = append(bad, fmt.Sprintf("bridge address valid_lft %d, want 1..%d", lft, int(hostns.LeaseTime/time.Second)))
	}
	if !h.PingFromUpstream(addr) {
		bad = append(bad, "upstream cannot ping "+addr)
	}
	return bad
}

var validRe = regexp.MustCompile(`valid_lft (\d+|forever)`)

// validLft is the valid lifetime of link's first IPv4 address, -1 for
// forever or none.
func validLft(t *testing.T, h *hostns.Host, link string) int {
	out, _ := h.NS.Exec("ip", "-4", "addr", "show", "dev", link)
	m := validRe.FindStringSubmatch(out)
	if m == nil || m[1] == "forever" {
		return -1
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

// exited reports whether pid has ended (a zombie has).
func exited(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	i := strings.LastIndexByte(string(b), ')')
	return i > 0 && i+2 < len(b) && b[i+2] == 'Z'
}

// TestKeeperOptIn runs the dhclient hosts side by side: manager:
// virtbridged keeps the lease through more than a lease lifetime; without
// the opt-in the start is refused and the host left as it was.
func TestKeeperOptIn(t *testing.T) {
	t.Run("virtbridged keeps the lease", func(t *testing.T) {
		t.Parallel()
		testKeeperKeeps(t)
	})
	t.Run("refused without the opt-in", func(t *testing.T) {
		t.Parallel()
		testKeeperRefused(t)
	})
}

func testKeeperKeeps(t *testing.T) {
	h := hostns.New(t, "vbkp", hostns.DHClient)
	addr := h.OwnUplink(t)
	client := h.ClientPID()
	mac := strings.TrimSpace(h.Run(t, "cat", "/sys/class/net/"+hostns.Uplink+"/address"))
	start := time.Now()
	pid, logDir := startKeeperDaemon(t, h, keeperConfig("virtbridged"))
	status := h.Path("/run/virtbridge/lease-br0.json")
	// The handoff: until virtbridged reports the lease confirmed.
	var handoff time.Duration
	handoffBad := 0
	for {
		b, _ := os.ReadFile(status)
		if strings.Contains(string(b), `"phase": "bound"`) {
			handoff = time.Since(start)
			break
		}
		if time.Since(start) > 60*time.Second {
			t.Fatalf("virtbridged did not keep the lease within 60 s; status %q\n%s", b, h.Log("virtbridged"))
		}
		if bad := sampleKept(t, h, addr); len(bad) > 0 && strings.Contains(strings.Join(bad, ";"), "ping") {
			handoffBad++
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Logf("handoff to virtbridged's client: %v (lost pings during it: %d)", handoff.Round(time.Millisecond), handoffBad)
	if handoffBad > 1 {
		t.Errorf("%d pings lost during the handoff, want at most one", handoffBad)
	}
	handed := time.Now()
	span := hostns.LeaseTime + 30*time.Second
	samples, failed := 0, 0
	for time.Since(handed) < span {
		samples++
		bad := sampleKept(t, h, addr)
		if !exited(client) {
			bad = append(bad, fmt.Sprintf("dhclient (pid %d) still runs", client))
		}
		if exited(pid) {
			t.Fatalf("virtbridged exited:\n%s", h.Log("virtbridged"))
		}
		if len(bad) > 0 {
			failed++
			t.Errorf("sample %d (%v after the handoff): %s", samples, time.Since(handed).Round(time.Second), strings.Join(bad, "; "))
		}
		time.Sleep(time.Second)
	}
	t.Logf("%d samples over %v, %d bad", samples, span, failed)
	checkRenewed(t, h, mac, addr, handed)
	checkJournal(t, logDir, client, addr)
	stopKeeperDaemon(t, h, pid, status)
}

// checkRenewed: dnsmasq's lease for the uplink's MAC and the same address
// runs out later than one granted at the handoff would: it was renewed.
func checkRenewed(t *testing.T, h *hostns.Host, mac, addr string, handed time.Time) {
	t.Helper()
	ip := strings.Split(addr, "/")[0]
	leases := h.DnsmasqLeases(t)
	for _, l := range strings.Split(leases, "\n") {
		f := strings.Fields(l)
		if len(f) >= 3 && f[1] == mac && f[2] == ip {
			exp, _ := strconv.ParseInt(f[0], 10, 64)
			if until := time.Unix(exp, 0); !until.After(handed.Add(hostns.LeaseTime + 30*time.Second)) {
				t.Errorf("dnsmasq's lease of %s runs out at %v: not renewed after the handoff at %v", ip, until, handed)
			}
			return
		}
	}
	t.Errorf("dnsmasq has no lease of %s for %s:\n%s", ip, mac, leases)
}

// checkJournal: the host-change records of the handoff and the keeper,
// with a renewal at each T1 (a minute apart) since the handoff.
func checkJournal(t *testing.T, logDir string, client int, addr string) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(logDir, "journal.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range []string{"uplink-enslaved uplink0", "address-moved " + addr, fmt.Sprintf(`dhcp-client-stopped uplink0: \"dhclient (pid %d)`, client),
		"lease-kept br0"} {
		if !strings.Contains(string(b), w) {
			t.Errorf("journal lacks %q:\n%s", w, b)
		}
	}
	if n := strings.Count(string(b), `"MESSAGE":"lease-renewed br0`); n < 2 {
		t.Errorf("journal has %d lease-renewed records over %v, want one at each T1 (2):\n%s", n, hostns.LeaseTime+30*time.Second, b)
	}
}

// stopKeeperDaemon: SIGTERM ends virtbridged within seconds, exit 0, its
// status file gone, the address left with its remaining lifetime, no
// process of it left.
func stopKeeperDaemon(t *testing.T, h *hostns.Host, pid int, status string) {
	t.Helper()
	begin := time.Now()
	syscall.Kill(pid, syscall.SIGTERM)
	for !exited(pid) {
		if time.Since(begin) > 20*time.Second {
			t.Fatalf("virtbridged did not stop within 20 s of SIGTERM:\n%s", h.Log("virtbridged"))
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("virtbridged stopped %v after SIGTERM", time.Since(begin).Round(time.Millisecond))
	if !strings.Contains(h.Log("virtbridged"), "virtbridged stopped") {
		t.Errorf("virtbridged did not stop cleanly:\n%s", h.Log("virtbridged"))
	}
	if _, err := os.Stat(status); err == nil {
		t.Errorf("status file %s left behind", status)
	}
	if lft := validLft(t, h, "br0"); lft <= 0 {
		t.Errorf("after the stop the bridge's address has valid_lft %d, want its remaining lifetime", lft)
	}
	if left := processesWith(filepath.Join(h.Dir, "virtbridge.yaml")); len(left) > 0 {
		t.Errorf("processes of virtbridged left: %v", left)
	}
}

func testKeeperRefused(t *testing.T) {
	h := hostns.New(t, "vbkq", hostns.DHClient)
	addr := h.OwnUplink(t)
	client := h.ClientPID()
	before := lifetimes.ReplaceAllString(h.Dump(t), "lft")
	pid, _ := startKeeperDaemon(t, h, keeperConfig(""))
	deadline := time.Now().Add(60 * time.Second)
	for !strings.Contains(h.Log("virtbridged"), "set manager: virtbridged") {
		if time.Now().After(deadline) || exited(pid) {
			t.Fatalf("virtbridged did not refuse the bridge with the opt-in named:\n%s", h.Log("virtbridged"))
		}
		time.Sleep(200 * time.Millisecond)
	}
	syscall.Kill(pid, syscall.SIGTERM)
	for end := time.Now().Add(20 * time.Second); !exited(pid) && time.Now().Before(end); {
		time.Sleep(50 * time.Millisecond)
	}
	if after := lifetimes.ReplaceAllString(h.Dump(t), "lft"); after != before {
		t.Errorf("the refusal changed the host:\n%s\n--- after ---\n%s", before, after)
	}
	if exited(client) || !h.PingFromUpstream(addr) {
		t.Errorf("after the refusal dhclient exited (%v) or %s is unreachable", exited(client), addr)
	}
}

var lifetimes = regexp.MustCompile(`valid_lft \S+ preferred_lft \S+`)

// processesWith are the pids of the processes whose command line holds s.
func processesWith(s string) []string {
	var out []string
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		b, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if strings.Contains(string(b), s) && !exited(atoi(e.Name())) {
			out = append(out, e.Name())
		}
	}
	return out
}

func atoi(s string) int { n, _ := strconv.Atoi(s); return n }
