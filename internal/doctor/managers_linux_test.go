package doctor

import (
	"syscall"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"

	"github.com/virtbridge/virtbridge/internal/testenv/hostns"
)

const hostCfg = "bridges: {br0: {uplink: uplink0}}\n"

// hostManagers asks the managers of host h over its private bus.
func hostManagers(h *hostns.Host, timeout time.Duration) *HostManagers {
	return &HostManagers{Timeout: timeout, Dial: func() (*dbus.Conn, error) { return dbus.Connect(h.BusAddress()) }}
}

// runHost runs the doctor on host h (its links, its managers over D-Bus).
func runHost(t *testing.T, h *hostns.Host, timeout time.Duration) *Report {
	m := hostManagers(h, timeout)
	defer m.Close()
	return Run(Sources{ConfigPath: "test.yaml", Config: mustConfig(t, hostCfg), Links: HostLinks{NS: &h.NS.Handle}, Managers: m})
}

// TestManagersOverDBus: the doctor asks the real managers (a host with a
// private D-Bus, NetworkManager 1.42 or systemd-networkd 252) over D-Bus
// what they make of the uplink, and a NetworkManager that does not answer
// (stopped with SIGSTOP) costs the doctor its timeout, not a hang.
func TestManagersOverDBus(t *testing.T) {
	for _, c := range []struct {
		m    hostns.Manager
		ns   string
		says string
	}{
		{hostns.NetworkManager, "vbod6", `managed by NetworkManager (activated, profile "uplink0")`},
		{hostns.Networkd, "vbod7", "managed by systemd-networkd (configured, " + hostns.NetworkdUplinkFile + ")"},
	} {
		t.Run(string(c.m), func(t *testing.T) {
			t.Parallel()
			h := hostns.New(t, c.ns, c.m)
			h.OwnUplink(t)
			want(t, one(t, runHost(t, h, 0), "uplink-manager", "uplink0"), Warn, c.says)
		})
	}
	t.Run("NetworkManager stuck", func(t *testing.T) {
		t.Parallel()
		h := hostns.New(t, "vbod2", hostns.NetworkManager)
		h.OwnUplink(t)
		pid := h.ManagerPID()
		if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { syscall.Kill(pid, syscall.SIGCONT) })
		start := time.Now()
		r := runHost(t, h, 2*time.Second)
		t.Logf("doctor with NetworkManager stopped: %v", time.Since(start).Round(time.Millisecond))
		want(t, one(t, r, "uplink-manager", "uplink0"), Warn, "cannot tell", "NetworkManager did not answer over D-Bus within 2s")
	})
}
