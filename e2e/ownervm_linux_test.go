package e2e

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

// hostLibvirtd runs libvirtd (and virtlogd) in a host's namespaces, the
// lab's way (shared/LAB.md): private copies of libvirt's and virtbridge's
// directories bound over the system ones in the host's mount namespace,
// the built hook installed as /etc/libvirt/hooks/qemu and ownerConfig as
// /etc/virtbridge/virtbridge.yaml (libvirtd passes no environment to its
// hooks). The hook journals to dir/var-log-virtbridge/journal.jsonl.
type hostLibvirtd struct {
	h   *hostns.Host
	dir string
}

// startHostLibvirtd starts libvirtd in h and stops it (and its VMs) when t
// ends. It skips t where the machine cannot run libvirtd.
func startHostLibvirtd(t *testing.T, h *hostns.Host, hook string) *hostLibvirtd {
	t.Helper()
	lab.SkipIfUnavailable(t)
	if err := lab.EnsureHostPrereqs(); err != nil {
		t.Fatal(err)
	}
	l := &hostLibvirtd{h: h, dir: t.TempDir()}
	hookData, err := os.ReadFile(hook)
	if err != nil {
		t.Fatal(err)
	}
	binds := map[string]string{
		"/etc/libvirt": "etc-libvirt", "/var/lib/libvirt": "var-lib-libvirt", "/var/log/libvirt": "var-log-libvirt",
		"/etc/virtbridge": "etc-virtbridge", "/var/lib/virtbridge": "var-lib-virtbridge", "/var/log/virtbridge": "var-log-virtbridge",
	}
	for _, sub := range []string{"etc-libvirt/hooks", "var-lib-libvirt/qemu", "var-log-libvirt/qemu", "etc-virtbridge", "var-lib-virtbridge", "var-log-virtbridge"} {
		if err := os.MkdirAll(filepath.Join(l.dir, sub), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(l.dir, "etc-libvirt/hooks/qemu"), hookData, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(l.dir, "etc-virtbridge/virtbridge.yaml"), []byte(ownerConfig), 0o644); err != nil {
		t.Fatal(err)
	}
	var script strings.Builder
	script.WriteString("set -e\nmkdir -p /run/libvirt /run/virtbridge\n")
	for path, sub := range binds {
		fmt.Fprintf(&script, "mount --bind %s %s\n", filepath.Join(l.dir, sub), path)
	}
	// The lab's shared qemu capabilities cache: probing qemu takes 10-50 s.
	cache := filepath.Join(os.TempDir(), "virtbridge-labcache")
	if err := os.MkdirAll(cache, 0o755); err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(&script, "mount --bind %s /var/cache/libvirt\n", cache)
	h.Run(t, "sh", "-c", script.String())
	for _, d := range []struct{ name, bin string }{{"virtlogd", "/usr/sbin/virtlogd"}, {"libvirtd", "/usr/sbin/libvirtd"}} {
		cmd := h.Command(d.bin, "--pid-file", "/run/libvirt/"+d.name+".pid")
		cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL=C"}
		logf, err := os.Create(filepath.Join(l.dir, d.name+".log"))
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stdout, cmd.Stderr = logf, logf
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		if err := cmd.Start(); err != nil {
			t.Fatalf("starting %s: %v", d.name, err)
		}
		done := make(chan struct{})
		go func() { cmd.Wait(); logf.Close(); close(done) }()
		t.Cleanup(func() {
			syscall.Kill(cmd.Process.Pid, syscall.SIGTERM)
			select {
			case <-done:
			case <-time.After(15 * time.Second):
				syscall.Kill(cmd.Process.Pid, syscall.SIGKILL)
				<-done
			}
		})
		if d.name == "virtlogd" {
			waitUntil(t, 20*time.Second, "virtlogd's socket", func() (bool, string) {
				_, err := os.Stat(h.Path("/run/libvirt/virtlogd-sock"))
				return err == nil, l.log(d.name)
			})
		}
	}
	waitUntil(t, 60*time.Second, "libvirtd answering", func() (bool, string) {
		out, err := l.virsh("version")
		return err == nil, out + l.log("libvirtd")
	})
	return l
}

func (l *hostLibvirtd) log(name string) string {
	b, _ := os.ReadFile(filepath.Join(l.dir, name+".log"))
	return string(b)
}

// virsh runs virsh against the host's libvirtd.
func (l *hostLibvirtd) virsh(args ...string) (string, error) {
	return l.h.Exec(append([]string{"virsh", "-c", "qemu:///system"}, args...)...)
}

// startVM defines a one-NIC VM on br0 and starts it paused (libvirt runs
// the hook's prepare, start and started and puts its tap in the bridge;
// the TCG guest burns no CPU); it is destroyed and undefined when t ends.
func (l *hostLibvirtd) startVM(t *testing.T, name, mac string) time.Duration {
	t.Helper()
	x, err := lab.DomainXML(lab.VM{Name: name, MAC: mac, Bridges: []string{ownerBridge}})
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(l.dir, name+".xml")
	if err := os.WriteFile(p, []byte(x), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := l.virsh("define", p); err != nil {
		t.Fatalf("virsh define: %v: %s", err, out)
	}
	t.Cleanup(func() {
		l.virsh("destroy", name)
		l.virsh("undefine", name)
	})
	begin := time.Now()
	if out, err := l.virsh("start", "--paused", name); err != nil {
		t.Fatalf("virsh start: %v: %s\n%s", err, out, l.log("libvirtd"))
	}
	return time.Since(begin)
}
