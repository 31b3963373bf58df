//go:build linux

package lab_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/virtbridge/virtbridge/internal/testenv/lab"
)

func TestLabStartClose(t *testing.T) {
	lab.SkipIfUnavailable(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	begin := time.Now()
	l, err := lab.Start(ctx, lab.Options{Upstream: true, Logf: t.Logf})
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	closed := false
	t.Cleanup(func() {
		if !closed {
			l.Close()
		}
	})
	t.Logf("start took %v", time.Since(begin))

	if !strings.HasPrefix(l.HVNetns(), "vbhv-") || !strings.HasPrefix(l.UpNetns(), "vbup-") {
		t.Errorf("namespace names %q, %q", l.HVNetns(), l.UpNetns())
	}
	if out, err := l.Virsh(ctx, "list", "--all", "--name"); err != nil || strings.TrimSpace(out) != "" {
		t.Errorf("virsh list = %q, %v; want no domains", out, err)
	}
	out, err := l.ExecHV(ctx, "ip", "-o", "link", "show")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(out), lab.UplinkName+"@") || strings.Contains(string(out), "eth0") {
		t.Errorf("hypervisor links:\n%s", out)
	}
	if out, err := l.ExecUp(ctx, "ip", "-o", "addr", "show", "dev", lab.UpstreamLinkName); err != nil || !strings.Contains(string(out), lab.UpstreamCIDR) {
		t.Errorf("upstream address: %s %v", out, err)
	}
	// The private mounts are visible inside only.
	if out, err := l.ExecHV(ctx, "sh", "-c", "ls -d /etc/libvirt/hooks && test -S /run/libvirt/libvirt-sock"); err != nil {
		t.Errorf("inside view: %s %v", out, err)
	}
	if _, err := os.Stat("/run/libvirt/libvirt-sock"); err == nil {
		t.Errorf("host sees /run/libvirt/libvirt-sock: the lab's mounts leaked")
	}
	if _, err := l.Virsh(ctx, "no-such-command"); err == nil || !strings.Contains(err.Error(), "no-such-command") {
		t.Errorf("virsh error does not name the command: %v", err)
	}

	pids := []int{l.LibvirtdPID()}
	oldPID := l.LibvirtdPID()
	if err := l.RestartLibvirtd(ctx); err != nil {
		t.Fatalf("RestartLibvirtd: %v", err)
	}
	if l.LibvirtdPID() == oldPID || l.LibvirtdPID() == 0 {
		t.Errorf("libvirtd pid %d after restart, was %d", l.LibvirtdPID(), oldPID)
	}
	pids = append(pids, l.LibvirtdPID())

	begin = time.Now()
	closed = true
	if err := l.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	t.Logf("close took %v", time.Since(begin))
	if err := l.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	for _, ns := range []string{l.HVNetns(), l.UpNetns()} {
		if _, err := os.Stat(filepath.Join("/run/netns", ns)); err == nil {
			t.Errorf("namespace %s still exists", ns)
		}
	}
	for _, pid := range pids {
		if err := syscall.Kill(pid, 0); err == nil {
			t.Errorf("pid %d still exists", pid)
		}
	}
	if _, err := os.Stat(l.Dir()); err == nil {
		t.Errorf("lab directory %s still exists", l.Dir())
	}
}

// TestHookSeesPrivateConfig proves how a hook finds its configuration:
// libvirtd scrubs the environment it passes to hooks, while the lab's
// private /etc/virtbridge is visible at its usual path.
func TestHookSeesPrivateConfig(t *testing.T) {
	hook := `#!/bin/sh
cat >/dev/null
env | sort > /run/virtbridge/env-$2-$3
cat /etc/virtbridge/virtbridge.yaml > /run/virtbridge/config-$2-$3
`
	l := lab.ForTest(t, lab.Options{
		HookFiles:     map[string][]byte{"qemu": []byte(hook)},
		EtcVirtbridge: map[string][]byte{"virtbridge.yaml": []byte("marker: 42\n")},
		LibvirtdEnv:   []string{"VIRTBRIDGE_CONFIG=/nowhere"},
	})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	x, err := lab.DomainXML(lab.VM{Name: "hooked"})
	if err != nil {
		t.Fatal(err)
	}
	if err := l.DefineStart(ctx, x); err != nil {
		t.Fatal(err)
	}
	if err := l.DestroyUndefine(ctx, "hooked"); err != nil {
		t.Fatal(err)
	}
	read := func(p string) string {
		hp, err := l.HostPath(p)
		if err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(hp)
		if err != nil {
			t.Fatalf("hook output: %v", err)
		}
		return string(b)
	}
	if got := read("/run/virtbridge/config-prepare-begin"); got != "marker: 42\n" {
		t.Errorf("hook read config %q", got)
	}
	env := read("/run/virtbridge/env-release-end")
	for _, v := range []string{"VIRTBRIDGE_CONFIG", "VIRTBRIDGE_LAB"} {
		if strings.Contains(env, v) {
			t.Errorf("hook environment has %s:\n%s", v, env)
		}
	}
	if !strings.Contains(env, "LC_ALL=C\n") || !strings.Contains(env, "PATH=") {
		t.Errorf("hook environment lacks LC_ALL=C or PATH:\n%s", env)
	}
	// The host's directories are untouched.
	if _, err := os.Stat("/etc/libvirt/hooks/qemu"); err == nil {
		t.Errorf("host has /etc/libvirt/hooks/qemu: the lab's mounts leaked")
	}
}

// TestVMGetsLease boots a disk-less PXE VM on a bridge enslaving the uplink
// and waits for its DHCP lease upstream: the whole path works. It costs
// about 20 s of CPU under TCG.
func TestVMGetsLease(t *testing.T) {
	if testing.Short() {
		t.Skip("skipping VM boot in -short mode")
	}
	l := lab.ForTest(t, lab.Options{Upstream: true})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	for _, argv := range [][]string{
		{"ip", "link", "add", "br-up", "type", "bridge"},
		{"ip", "link", "set", lab.UplinkName, "master", "br-up"},
		{"ip", "link", "set", "br-up", "up"},
	} {
		if _, err := l.ExecHV(ctx, argv[0], argv[1:]...); err != nil {
			t.Fatal(err)
		}
	}
	const mac = "52:54:00:aa:ff:01"
	x, err := lab.DomainXML(lab.VM{Name: "pxe", MAC: mac, Bridges: []string{"br-up"}})
	if err != nil {
		t.Fatal(err)
	}
	begin := time.Now()
	if err := l.DefineStart(ctx, x); err != nil {
		t.Fatal(err)
	}
	ip, err := l.WaitLease(ctx, mac)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("lease %s after %v", ip, time.Since(begin).Round(time.Second))
	if !strings.HasPrefix(ip, "10.77.0.") {
		t.Errorf("lease %s outside the upstream range", ip)
	}
	if err := l.DestroyUndefine(ctx, "pxe"); err != nil {
		t.Fatal(err)
	}
}

// TestStartLeavesForeignNamespace proves that a lab whose name is taken
// fails without tearing down the namespace it does not own.
func TestStartLeavesForeignNamespace(t *testing.T) {
	lab.SkipIfUnavailable(t)
	tag := fmt.Sprintf("taken%d", os.Getpid()%100000)
	ns := "vbhv-" + tag
	if out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v: %s", err, out)
	}
	t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	l, err := lab.Start(ctx, lab.Options{Prefix: tag})
	if err == nil {
		l.Close()
		t.Fatal("Start succeeded with a taken namespace name")
	}
	if _, err := os.Stat(filepath.Join("/run/netns", ns)); err != nil {
		t.Errorf("foreign namespace was removed: %v", err)
	}
}
