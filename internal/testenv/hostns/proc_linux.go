package hostns

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"
)

// busConf is the private system bus: allow-all policy and no service
// directories (plain --system would activate polkitd through the setuid
// helper).
const busConf = `<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path=/run/dbus/system_bus_socket</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_type="method_call"/>
    <allow send_destination="*"/>
    <allow receive_sender="*"/>
  </policy>
</busconfig>
`

// nsenter returns a command run in the host's network, mount and UTS
// namespaces. name must be an absolute path (nsenter does not search the
// host's PATH for it).
func (h *Host) nsenter(name string, args ...string) *exec.Cmd {
	a := append([]string{"-t", fmt.Sprint(h.holder.Process.Pid), "-m", "-n", "-u", name}, args...)
	return exec.Command("nsenter", a...)
}

// Command is a command to run in the host's network, mount and UTS
// namespaces, not started: a program under test (the hook, the daemon).
// path must be absolute.
func (h *Host) Command(path string, args ...string) *exec.Cmd { return h.nsenter(path, args...) }

// Pid is the pid of the process holding the host's namespaces, for
// nsenter -t.
func (h *Host) Pid() int { return h.holder.Process.Pid }

// Exec runs a command in the host (its namespaces) with LC_ALL=C and
// returns its combined output. The command is looked up in the machine's
// PATH.
func (h *Host) Exec(args ...string) (string, error) {
	path, err := exec.LookPath(args[0])
	if err != nil {
		return "", err
	}
	cmd := h.nsenter(path, args[1:]...)
	cmd.Env = []string{"LC_ALL=C", "PATH=/usr/sbin:/usr/bin:/sbin:/bin"}
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// Run is Exec that fails the test on error.
func (h *Host) Run(t testing.TB, args ...string) string {
	t.Helper()
	out, err := h.Exec(args...)
	if err != nil {
		t.Fatalf("in host %s: %s: %v\n%s", h.NS.Name, strings.Join(args, " "), err, out)
	}
	return out
}

// Path is where the host's file p (e.g. /run/systemd/network/x.network)
// is, seen from the machine: through the holder's root, which resolves in
// the host's mount namespace.
func (h *Host) Path(p string) string {
	return filepath.Join("/proc", fmt.Sprint(h.holder.Process.Pid), "root", p)
}

// WriteFile writes the host's file p.
func (h *Host) WriteFile(t testing.TB, p, content string) {
	t.Helper()
	if err := os.WriteFile(h.Path(p), []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// BusAddress is the D-Bus address of the host's system bus, usable from
// the machine.
func (h *Host) BusAddress() string {
	return "unix:path=" + h.Path("/run/dbus/system_bus_socket")
}

// Bus connects to the host's system bus; the connection is closed at the
// end of the test.
func (h *Host) Bus(t testing.TB) *dbus.Conn {
	t.Helper()
	c, err := dbus.Connect(h.BusAddress())
	if err != nil {
		t.Fatalf("connecting to the host's bus: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func (h *Host) startBus(t testing.TB) {
	t.Helper()
	conf := filepath.Join(h.Dir, "bus.conf")
	if err := os.WriteFile(conf, []byte(busConf), 0o644); err != nil {
		t.Fatal(err)
	}
	h.bus = h.start(t, "dbus", h.nsenter("/usr/bin/dbus-daemon", "--config-file="+conf, "--nofork", "--nopidfile"))
	h.waitFor(t, "the host's D-Bus socket", 10*time.Second, func() bool {
		c, err := dbus.Connect(h.BusAddress())
		if err == nil {
			c.Close()
		}
		return err == nil
	})
}

// busName is the name the manager owns once it serves D-Bus.
func (m Manager) busName() string {
	if m == NetworkManager {
		return "org.freedesktop.NetworkManager"
	}
	return "org.freedesktop.network1"
}

// StartManager starts the host's network manager and waits until it
// serves D-Bus (NetworkManager: until its start-up is over).
func (h *Host) StartManager(t testing.TB) {
	t.Helper()
	h.manager = h.startManager(t, h.Mgr)
}

// StartOther starts manager m too, beside the host's own, on the same bus
// (a host where an installer left both enabled), and waits until it serves
// D-Bus. It is stopped at the end of the test.
func (h *Host) StartOther(t testing.TB, m Manager) {
	t.Helper()
	requireTools(t, m)
	h.startManager(t, m)
}

// ManagerPID is the pid of the host's network manager (for tests that
// freeze it with SIGSTOP, say).
func (h *Host) ManagerPID() int { return h.manager.Process.Pid }

func (h *Host) startManager(t testing.TB, m Manager) *exec.Cmd {
	t.Helper()
	var cmd *exec.Cmd
	switch m {
	case NetworkManager:
		cmd = h.start(t, string(m), h.nsenter("/usr/sbin/NetworkManager", "--no-daemon", "--debug"))
	case Networkd:
		cmd = h.start(t, string(m), h.nsenter(networkdPath))
	case DHClient:
		return h.startDHClient(t)
	default: // Static: nobody
		return nil
	}
	c := h.Bus(t)
	h.waitFor(t, string(m)+" on D-Bus", 30*time.Second, func() bool {
		if cmd.ProcessState != nil {
			t.Fatalf("%s exited: %s", m, h.log(string(m)))
		}
		var owned bool
		if err := c.BusObject().Call("org.freedesktop.DBus.NameHasOwner", 0, m.busName()).Store(&owned); err != nil || !owned {
			return false
		}
		if m != NetworkManager {
			return true
		}
		v, err := c.Object("org.freedesktop.NetworkManager", "/org/freedesktop/NetworkManager").
			GetProperty("org.freedesktop.NetworkManager.Startup")
		return err == nil && v.Value() == false
	})
	return cmd
}

// startDHClient starts dhclient on the uplink in the foreground, its
// lease and pid files in the host's Dir, as ifupdown's "inet dhcp" runs it.
func (h *Host) startDHClient(t testing.TB) *exec.Cmd {
	t.Helper()
	path, err := exec.LookPath("dhclient")
	if err != nil {
		t.Fatal(err)
	}
	return h.start(t, string(DHClient), h.nsenter(path, "-d", "-4",
		"-lf", h.DhclientLeases(), "-pf", filepath.Join(h.Dir, "dhclient.pid"), Uplink))
}

// StopManager stops the host's network manager (SIGTERM) and waits for it.
// NetworkManager leaves the links as they are when it stops.
func (h *Host) StopManager(t testing.TB) {
	t.Helper()
	stop(h.manager)
}

// waitFor polls cond every 50 ms until it holds, failing the test after
// patience. It logs how long the wait took.
func (h *Host) waitFor(t testing.TB, what string, patience time.Duration, cond func() bool) {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > patience {
			t.Fatalf("waiting for %s: not after %v", what, patience)
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("%s: ready after %v", what, time.Since(start).Round(time.Millisecond))
}

// log is the tail of one of the host's process logs, for failures.
func (h *Host) log(name string) string {
	b, _ := os.ReadFile(filepath.Join(h.Dir, name+".log"))
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

// Log is the host's log of process name ("networkmanager", "networkd",
// "dnsmasq", "dbus", "holder"), for test failures.
func (h *Host) Log(name string) string { return h.log(name) }
