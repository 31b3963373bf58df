// Package hostns gives privileged tests a "host" whose uplink is owned by a
// real network manager, the way hypervisors run: a network namespace with a
// private mount and UTS namespace in which /run, the managers' state and
// configuration directories are private tmpfs and /sys is read-only (so
// NetworkManager and systemd-networkd treat udev as absent and manage the
// veths), a private D-Bus system bus, NetworkManager 1.42,
// systemd-networkd 252 or a bare ISC dhclient (DHClient), and an upstream
// namespace serving DHCP with dnsmasq
// (2-minute leases) through the veth uplink0 <-> up0.
//
// Nothing runs in the machine's own namespaces: every process is started in
// the test's namespaces, stopped by pid, and the namespaces are deleted at
// the end of the test, also when it fails. The recipes are shared/LAB.md's
// "Network managers, DHCP clients and firewalld inside a namespace".
package hostns

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/virtbridge/virtbridge/internal/testenv/netnstest"
)

// Manager names the network manager a Host runs.
type Manager string

// Managers a Host can run.
const (
	NetworkManager Manager = "networkmanager"
	Networkd       Manager = "networkd"
	// DHClient: ISC dhclient without a manager, as ifupdown runs it.
	DHClient Manager = "dhclient"
	// Static: nobody; OwnUplink gives the uplink a static address.
	Static Manager = "static"
)

// The upstream network.
const (
	Uplink       = "uplink0"
	UpstreamLink = "up0"
	Gateway      = "10.88.0.1"
	UpstreamCIDR = Gateway + "/24"
	// LeaseTime is dnsmasq's lease time, its shortest.
	LeaseTime = 2 * time.Minute
)

// Host is one test host: its network namespace (NS, where the uplink and
// the manager live), the upstream namespace (Up, with dnsmasq) and the
// processes started in them.
type Host struct {
	NS  *netnstest.NS
	Up  *netnstest.NS
	Dir string // the host's files on the machine: logs, leases, configs
	Mgr Manager

	t       testing.TB
	holder  *exec.Cmd // the sleep whose namespaces every command enters
	bus     *exec.Cmd
	manager *exec.Cmd
	dnsmasq *exec.Cmd
}

// New makes a Host running manager m, with namespaces named after prefix
// (e.g. "vbn"). Everything is torn down at the end of the test. It skips
// the test, saying why, when not root or when the manager is not
// installed.
func New(t testing.TB, prefix string, m Manager) *Host {
	t.Helper()
	netnstest.RequireRoot(t)
	requireTools(t, m)
	h := &Host{t: t, Mgr: m, Dir: t.TempDir()}
	h.Up = netnstest.New(t, prefix+"u")
	h.NS = netnstest.New(t, prefix+"h")
	h.NS.Run(t, "ip", "link", "add", Uplink, "type", "veth", "peer", "name", UpstreamLink, "netns", h.Up.Name)
	h.Up.Script(t, "ip addr add "+UpstreamCIDR+" dev "+UpstreamLink+"\nip link set "+UpstreamLink+" up")
	h.startDnsmasq(t)
	h.startHolder(t)
	h.startBus(t)
	h.StartManager(t)
	return h
}

func requireTools(t testing.TB, m Manager) {
	t.Helper()
	tools := []string{"dnsmasq", "dbus-daemon", "nsenter", "unshare"}
	switch m {
	case NetworkManager:
		tools = append(tools, "NetworkManager", "nmcli")
	case Networkd:
		if _, err := os.Stat(networkdPath); err != nil {
			t.Skipf("skipped: needs systemd-networkd (%s; scripts/deps.sh installs systemd)", networkdPath)
		}
		tools = append(tools, "networkctl")
	case DHClient:
		tools = append(tools, "dhclient")
	}
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("skipped: needs %s (scripts/deps.sh installs it)", tool)
		}
	}
}

const networkdPath = "/lib/systemd/systemd-networkd"

// start starts cmd in its own process group with its output in log, and
// stops it (SIGTERM, then SIGKILL) at the end of the test.
func (h *Host) start(t testing.TB, name string, cmd *exec.Cmd) *exec.Cmd {
	t.Helper()
	logf, err := os.OpenFile(filepath.Join(h.Dir, name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	cmd.Env = append([]string{"LC_ALL=C", "PATH=/usr/sbin:/usr/bin:/sbin:/bin"}, cmd.Env...)
	cmd.Dir = "/"
	if cmd.Stdout == nil {
		cmd.Stdout = logf
	}
	cmd.Stderr = logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		logf.Close()
		t.Fatalf("starting %s %q: %v", name, cmd.Args, err)
	}
	t.Cleanup(func() { stop(cmd); logf.Close() })
	return cmd
}

// Start starts the program at path with args in the host (its network,
// mount and UTS namespaces), with env added to LC_ALL=C and a PATH, its
// output in the host's log name (Log), and stops it at the end of the test
// (SIGTERM to its process group, then SIGKILL) unless it has ended.
func (h *Host) Start(t testing.TB, name string, env []string, path string, args ...string) *exec.Cmd {
	t.Helper()
	cmd := h.nsenter(path, args...)
	cmd.Env = env
	return h.start(t, name, cmd)
}

// stop ends cmd's process group by its pid: SIGTERM, then SIGKILL after
// 10 s. Stopping a stopped command is a no-op.
func stop(cmd *exec.Cmd) {
	if cmd == nil || cmd.ProcessState != nil {
		return
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-done
	}
}

func (h *Host) startDnsmasq(t testing.TB) {
	t.Helper()
	h.dnsmasq = h.start(t, "dnsmasq", exec.Command("ip", "netns", "exec", h.Up.Name, "dnsmasq",
		"--no-daemon", "--conf-file=/dev/null", "--port=0", "--no-resolv", "--no-hosts",
		"--interface="+UpstreamLink, "--bind-interfaces", "--no-ping",
		"--dhcp-range=10.88.0.100,10.88.0.200,2m", "--dhcp-option=option:router,"+Gateway,
		"--dhcp-leasefile="+filepath.Join(h.Dir, "dnsmasq.leases"),
		"--pid-file="+filepath.Join(h.Dir, "dnsmasq.pid"),
		"--log-facility=-", "--log-dhcp"))
	udp := filepath.Join("/proc", fmt.Sprint(h.dnsmasq.Process.Pid), "net", "udp")
	h.waitFor(t, "dnsmasq's DHCP socket", 10*time.Second, func() bool {
		b, err := os.ReadFile(udp)
		return err == nil && strings.Contains(string(b), ":0043 ")
	})
}

// holderScript makes the private mount and UTS namespace a host needs.
const holderScript = `set -e
mount --make-rprivate /
mount -t tmpfs -o mode=0755 tmpfs /run
mkdir -p /run/dbus /run/NetworkManager /run/systemd/netif /run/systemd/network
chown systemd-network:systemd-network /run/systemd/netif
for d in /etc/NetworkManager /var/lib/NetworkManager /etc/systemd/network /var/lib/systemd; do
  if [ -d "$d" ]; then mount -t tmpfs -o mode=0755 tmpfs "$d"; fi
done
if [ -d /etc/NetworkManager ]; then
  mkdir -p /etc/NetworkManager/conf.d /etc/NetworkManager/system-connections
  cp "$DIR/NetworkManager.conf" /etc/NetworkManager/NetworkManager.conf
fi
cp -L /etc/resolv.conf "$DIR/resolv.conf"
mount --bind "$DIR/resolv.conf" /etc/resolv.conf
mount -o remount,bind,ro /sys
hostname vbn-host
echo ready
exec sleep infinity >/dev/null
`

// nmConf is NetworkManager's configuration in a Host: keyfile profiles,
// nothing of the machine's (DNS, hostname, polkit), no automatic profiles.
const nmConf = `[main]
plugins=keyfile
dns=none
rc-manager=unmanaged
hostname-mode=none
auth-polkit=false
no-auto-default=*

[device]
match-device=*
managed=1

[keyfile]
unmanaged-devices=none

[logging]
level=INFO
`

func (h *Host) startHolder(t testing.TB) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(h.Dir, "NetworkManager.conf"), []byte(nmConf), 0o644); err != nil {
		t.Fatal(err)
	}
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	cmd := exec.Command("ip", "netns", "exec", h.NS.Name, "unshare", "--mount", "--uts", "--propagation", "private",
		"sh", "-c", holderScript)
	cmd.Env = []string{"DIR=" + h.Dir}
	cmd.Stdout = w
	h.holder = h.start(t, "holder", cmd)
	w.Close()
	line, err := bufio.NewReader(r).ReadString('\n')
	if err != nil || line != "ready\n" {
		t.Fatalf("setting up the host's mount namespace: %q %v: %s", line, err, h.log("holder"))
	}
}
