package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/virtbridge/virtbridge/internal/testenv/hostns"
	"github.com/virtbridge/virtbridge/internal/testenv/lab"
)

// startHostLibvirtd runs virtlogd and libvirtd in h's namespaces, the
// lab's way (shared/LAB.md), with private copies of libvirt's
// directories bound over the system ones in h's mount namespace and no
// hook; they are stopped when t ends. It skips t where the machine cannot
// run libvirtd.
func startHostLibvirtd(t *testing.T, h *hostns.Host) {
	t.Helper()
	lab.SkipIfUnavailable(t)
	if err := lab.EnsureHostPrereqs(); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cache := filepath.Join(os.TempDir(), "virtbridge-labcache") // the lab's qemu capabilities cache
	script := "set -e\nmkdir -p /run/libvirt\n"
	for path, sub := range map[string]string{"/etc/libvirt": "etc", "/var/lib/libvirt": "lib", "/var/log/libvirt": "log"} {
		if err := os.MkdirAll(filepath.Join(dir, sub, "qemu"), 0o755); err != nil {
			t.Fatal(err)
		}
		script += fmt.Sprintf("mount --bind %s %s\n", filepath.Join(dir, sub), path)
	}
	if err := os.MkdirAll(cache, 0o755); err != nil {
		t.Fatal(err)
	}
	h.Run(t, "sh", "-c", script+"mount --bind "+cache+" /var/cache/libvirt\n")
	for _, d := range []string{"virtlogd", "libvirtd"} {
		cmd := h.Start(t, d, nil, "/usr/sbin/"+d, "--pid-file", "/run/libvirt/"+d+".pid")
		pid := cmd.Process.Pid
		t.Cleanup(func() { syscall.Kill(pid, syscall.SIGTERM) })
		sock := map[string]string{"virtlogd": "/run/libvirt/virtlogd-sock", "libvirtd": "/run/libvirt/libvirt-sock"}[d]
		for begin := time.Now(); ; time.Sleep(100 * time.Millisecond) {
			if _, err := os.Stat(h.Path(sock)); err == nil {
				break
			}
			if time.Since(begin) > 60*time.Second {
				t.Fatalf("%s made no socket %s within 60 s:\n%s", d, sock, h.Log(d))
			}
		}
	}
}

// testWayBackLibvirtd: with libvirtd running, virtbridged's passes after
// link changes and reloads are reconciles with libvirt: a reload adding
// manager: virtbridged takes the lease over (the client stopped, a
// keeper bound); the bridge deleted under the keeper is made again and
// the keeper resumes there; a reload changing the manager stops it.
func testWayBackLibvirtd(t *testing.T) {
	h := hostns.New(t, "vbk2d", hostns.DHClient)
	startHostLibvirtd(t, h)
	k := &keeperHost{Host: h, addr: h.OwnUplink(t), status: h.Path("/run/virtbridge/lease-br0.json")}
	client := h.ClientPID()
	k.pid, k.logDir = startKeeperDaemon(t, h, keeperConfig(""))
	t.Cleanup(func() { syscall.Kill(k.pid, syscall.SIGTERM) })
	k.waitFor(t, "the start refused without the opt-in, then connected to libvirtd", 60*time.Second, func() bool {
		log := k.Log("virtbridged")
		return strings.Contains(log, "set manager: virtbridged") && strings.Contains(log, "connected to libvirtd")
	})
	k.reload(t, keeperConfig("virtbridged"))
	k.bound(t)
	if !exited(client) {
		t.Errorf("dhclient (pid %d) still runs after the reload took its lease over", client)
	}
	k.Run(t, "ip", "link", "del", "br0")
	k.waitFor(t, "the bridge made again by a reconcile, with the lease's address and default route", 30*time.Second, func() bool {
		a := k.Addresses(t, "br0")
		return len(a) == 1 && a[0] == k.addr && strings.Contains(k.DefaultRoute(t), "via "+hostns.Gateway+" dev br0") && k.PingFromUpstream(k.addr)
	})
	if j := k.journal(t); !strings.Contains(j, "kept on the bridge made again") {
		t.Errorf("journal lacks the lease kept on the bridge made again:\n%s", j)
	}
	if log := k.Log("virtbridged"); !strings.Contains(log, `msg=reconciled why="links changed"`) {
		t.Errorf("no reconcile after the links changed: the bridge was made again another way:\n%s", log)
	}
	k.reload(t, keeperConfig("kernel"))
	k.stopped(t)
}
