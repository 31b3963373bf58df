package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/virtbridge/virtbridge/internal/testenv/hostns"
)

// noBridges is the configuration once br0 left it.
const noBridges = `bridges: {}
sysctl: {ip_forward: leave, ipv6_forward: leave, bridge_nf_call_iptables: leave, bridge_nf_call_ip6tables: leave}
firewall: {backend: none}
`

var (
	cliOnce sync.Once
	cliBin  string
	cliErr  error
)

// cliBinary builds the virtbridge CLI next to the built virtbridged.
func cliBinary(t *testing.T) string {
	t.Helper()
	dir := filepath.Dir(daemonBinary(t))
	cliOnce.Do(func() {
		cliBin = filepath.Join(dir, "virtbridge")
		cmd := exec.Command("go", "build", "-o", cliBin, "../virtbridge")
		cmd.Env = append(os.Environ(), "LC_ALL=C")
		if out, err := cmd.CombinedOutput(); err != nil {
			cliErr = fmt.Errorf("running %q: %w: %s", cmd.Args, err, out)
		}
	})
	if cliErr != nil {
		t.Fatal(cliErr)
	}
	return cliBin
}

// keeperHost is a dhclient host whose lease the built virtbridged keeps.
type keeperHost struct {
	*hostns.Host
	addr, status, logDir string
	pid                  int
}

func newKeeperHost(t *testing.T, prefix, config string) *keeperHost {
	h := hostns.New(t, prefix, hostns.DHClient)
	k := &keeperHost{Host: h, addr: h.OwnUplink(t), status: h.Path("/run/virtbridge/lease-br0.json")}
	k.pid, k.logDir = startKeeperDaemon(t, h, config)
	t.Cleanup(func() { syscall.Kill(k.pid, syscall.SIGTERM) })
	return k
}

// waitFor polls cond every 200 ms up to patience (generous: the machine
// is shared), logging how long it took.
func (k *keeperHost) waitFor(t *testing.T, what string, patience time.Duration, cond func() bool) {
	t.Helper()
	begin := time.Now()
	for !cond() {
		if time.Since(begin) > patience {
			t.Fatalf("%s: not within %v\nvirtbridged:\n%s\njournal:\n%s", what, patience, k.Log("virtbridged"), k.journal(t))
		}
		if exited(k.pid) {
			t.Fatalf("%s: virtbridged exited:\n%s", what, k.Log("virtbridged"))
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Logf("%s: %v", what, time.Since(begin).Round(time.Millisecond))
}

func (k *keeperHost) bound(t *testing.T) {
	t.Helper()
	k.waitFor(t, "virtbridged keeps the lease (bound)", 60*time.Second, func() bool {
		b, _ := os.ReadFile(k.status)
		return strings.Contains(string(b), `"phase": "bound"`)
	})
}

func (k *keeperHost) journal(t *testing.T) string {
	b, _ := os.ReadFile(filepath.Join(k.logDir, "journal.jsonl"))
	return string(b)
}

// reload writes config and sends virtbridged SIGHUP.
func (k *keeperHost) reload(t *testing.T, config string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(k.Dir, "virtbridge.yaml"), []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	syscall.Kill(k.pid, syscall.SIGHUP)
}

// cli runs the built virtbridge in the host with virtbridged's files.
func (k *keeperHost) cli(t *testing.T, args ...string) (int, string) {
	t.Helper()
	cmd := k.Command(cliBinary(t), args...)
	cmd.Env = []string{"LC_ALL=C", "PATH=/usr/sbin:/usr/bin:/sbin:/bin", "VIRTBRIDGE_STATE_DIR=" + filepath.Join(k.Dir, "state"),
		"VIRTBRIDGE_LOG_DIR=" + k.logDir}
	out, err := cmd.CombinedOutput()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return code, string(out)
}

// stopped waits for the keeper to stop after a reload: its status file
// gone and lease-released journaled (after the status goes).
func (k *keeperHost) stopped(t *testing.T) {
	t.Helper()
	k.waitFor(t, "the keeper stops after the reload (status gone, lease-released br0 journaled)", 30*time.Second, func() bool {
		return gone(k.status)() && strings.Contains(k.journal(t), "lease-released br0")
	})
}

// noResume: the bridge was not deleted, so no keeper stopped to wait
// for it to be made again.
func (k *keeperHost) noResume(t *testing.T) {
	t.Helper()
	if log := k.Log("virtbridged"); strings.Contains(log, "its lease waits for it") {
		t.Errorf("a keeper stopped to wait for a bridge that was never deleted:\n%s", log)
	}
}

func gone(path string) func() bool {
	return func() bool { _, err := os.Stat(path); return os.IsNotExist(err) }
}

// TestKeeperWayBack: the ways back from manager: virtbridged, side by
// side, each on its own dhclient host with the built virtbridged (and
// the built virtbridge CLI): release, a reload that changes the manager,
// and the bridge deleted under the running keeper, also with libvirtd
// running (virtbridged's passes then are reconciles).
func TestKeeperWayBack(t *testing.T) {
	t.Run("release", func(t *testing.T) { t.Parallel(); testWayBackRelease(t) })
	t.Run("reload", func(t *testing.T) { t.Parallel(); testWayBackReload(t) })
	t.Run("bridge made again", func(t *testing.T) { t.Parallel(); testWayBackDrift(t) })
	t.Run("libvirtd connected", func(t *testing.T) { t.Parallel(); testWayBackLibvirtd(t) })
}

// testWayBackRelease: release is refused while virtbridged keeps the
// lease under a configuration that says so (nothing changed); once the
// bridge left the configuration and virtbridged reloaded, it keeps the
// lease no more (journaled), release gives the address back to the
// uplink with what is left of the lease, names the stopped dhclient's
// command line, journals it, and that command renews the lease there.
func testWayBackRelease(t *testing.T) {
	k := newKeeperHost(t, "vbk2a", keeperConfig("virtbridged"))
	cfg := filepath.Join(k.Dir, "virtbridge.yaml")
	k.bound(t)
	code, out := k.cli(t, "release", "--config", cfg, "br0")
	if code != 1 || !strings.Contains(out, "still says manager: virtbridged") || !strings.Contains(out, "systemctl reload virtbridged") {
		t.Errorf("release under manager: virtbridged: exit %d, want 1 saying to reload first:\n%s", code, out)
	}
	if a := k.Addresses(t, "br0"); len(a) != 1 || a[0] != k.addr {
		t.Fatalf("the refused release changed the bridge's addresses: %v", a)
	}
	k.reload(t, noBridges)
	k.stopped(t)
	k.noResume(t)
	if lft := validLft(t, k.Host, "br0"); lft <= 0 {
		t.Errorf("after the keeper stopped the bridge's address has valid_lft %d, want what is left of the lease", lft)
	}
	code, out = k.cli(t, "release", "--config", cfg, "br0")
	t.Logf("release:\n%s", out)
	if code != 0 || !strings.Contains(out, "lease: uplink0 holds "+k.addr) || !strings.Contains(out, "dhclient -d -4 -lf") {
		t.Fatalf("release: exit %d, want 0 naming the lease and the dhclient command:\n%s", code, out)
	}
	if a := k.Addresses(t, hostns.Uplink); len(a) != 1 || a[0] != k.addr {
		t.Errorf("uplink addresses after release: %v, want %s", a, k.addr)
	}
	if lft := validLft(t, k.Host, hostns.Uplink); lft <= 0 || lft > int(hostns.LeaseTime/time.Second) {
		t.Errorf("the address back on the uplink has valid_lft %d, want what is left of the lease", lft)
	}
	if j := k.journal(t); !strings.Contains(j, "lease-released uplink0") {
		t.Errorf("journal lacks lease-released uplink0:\n%s", j)
	}
	// The command named, run again, renews the lease on the uplink.
	cmdline := strings.Fields(out[strings.Index(out, "it ran as `")+len("it ran as `"):])
	var args []string
	for _, f := range cmdline {
		args = append(args, strings.TrimSuffix(f, "`"))
		if strings.HasSuffix(f, "`") {
			break
		}
	}
	k.Start(t, "dhclient-again", nil, args[0], args[1:]...)
	ip := strings.Split(k.addr, "/")[0]
	k.waitFor(t, "dhclient run again binds the same address on the uplink", 30*time.Second, func() bool {
		return strings.Contains(k.Log("dhclient-again"), "bound to "+ip) && k.PingFromUpstream(k.addr)
	})
	if a := k.Addresses(t, hostns.Uplink); len(a) != 1 || a[0] != k.addr {
		t.Errorf("uplink addresses with dhclient again: %v, want %s", a, k.addr)
	}
}

// testWayBackReload: a bare dhclient host refused under manager: auto;
// a reload adding manager: virtbridged starts a keeper on that pass; one
// changing it to kernel stops it (journaled), the address left with
// what is left of its lease; virtbridged runs on.
func testWayBackReload(t *testing.T) {
	k := newKeeperHost(t, "vbk2b", keeperConfig(""))
	k.waitFor(t, "the start refused without the opt-in", 60*time.Second, func() bool {
		return strings.Contains(k.Log("virtbridged"), "set manager: virtbridged")
	})
	k.reload(t, keeperConfig("virtbridged"))
	k.bound(t)
	if m := k.Master(t, hostns.Uplink); m != "br0" {
		t.Errorf("uplink master %q after the reload, want br0", m)
	}
	k.reload(t, keeperConfig("kernel"))
	k.stopped(t)
	k.noResume(t)
	if lft := validLft(t, k.Host, "br0"); lft <= 0 || lft > int(hostns.LeaseTime/time.Second) {
		t.Errorf("the address left on the bridge has valid_lft %d, want what is left of the lease", lft)
	}
}

// testWayBackDrift: br0 deleted while the keeper runs: virtbridged makes
// it again and the keeper resumes there: the same address with what is
// left of its lifetime, the default route through the bridge, journaled;
// its client's packet socket is bound to the new bridge, none to the old.
func testWayBackDrift(t *testing.T) {
	k := newKeeperHost(t, "vbk2c", keeperConfig("virtbridged"))
	k.bound(t)
	old := strings.TrimSpace(k.Run(t, "cat", "/sys/class/net/br0/ifindex"))
	k.Run(t, "ip", "link", "del", "br0")
	k.waitFor(t, "the bridge made again with the lease's address, default route and pings", 30*time.Second, func() bool {
		a := k.Addresses(t, "br0")
		return len(a) == 1 && a[0] == k.addr && strings.Contains(k.DefaultRoute(t), "via "+hostns.Gateway+" dev br0") && k.PingFromUpstream(k.addr)
	})
	if lft := validLft(t, k.Host, "br0"); lft <= 0 || lft > int(hostns.LeaseTime/time.Second) {
		t.Errorf("the address on the bridge made again has valid_lft %d, want what is left of the lease", lft)
	}
	if j := k.journal(t); !strings.Contains(j, "kept on the bridge made again") {
		t.Errorf("journal lacks the lease kept on the bridge made again:\n%s", j)
	}
	now := strings.TrimSpace(k.Run(t, "cat", "/sys/class/net/br0/ifindex"))
	ifaces := packetIfaces(t, k)
	t.Logf("bridge index %s, made again %s; packet sockets on %v", old, now, ifaces)
	if !ifaces[now] || ifaces[old] {
		t.Errorf("packet sockets on links %v: want one on the new bridge (index %s), none on the old (%s)", ifaces, now, old)
	}
}

// packetIfaces are the link indexes of the host's packet sockets
// (/proc/net/packet: sk RefCnt Type Proto Iface ...).
func packetIfaces(t *testing.T, k *keeperHost) map[string]bool {
	out := map[string]bool{}
	for _, l := range strings.Split(k.Run(t, "cat", "/proc/net/packet"), "\n")[1:] {
		if f := strings.Fields(l); len(f) > 4 {
			out[f[4]] = true
		}
	}
	return out
}
