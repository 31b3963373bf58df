package install

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestIsVirtbridgeHook builds the real hook and checks that its build info
// identifies it, and that other programs are not taken for it.
func TestIsVirtbridgeHook(t *testing.T) {
	if testing.Short() {
		t.Skip("skipping: builds cmd/hook (-short)")
	}
	goTool, err := exec.LookPath("go")
	if err != nil {
		goTool = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	dir := t.TempDir()
	hook := filepath.Join(dir, "virtbridge-hook")
	cmd := exec.Command(goTool, "build", "-o", hook, "github.com/virtbridge/virtbridge/cmd/hook")
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building the hook: %v\n%s", err, out)
	}
	if !IsVirtbridgeHook(hook) {
		t.Errorf("IsVirtbridgeHook(%s) = false for the real hook", hook)
	}
	link := filepath.Join(dir, "qemu")
	if err := os.Symlink(hook, link); err != nil {
		t.Fatal(err)
	}
	if !IsVirtbridgeHook(link) {
		t.Errorf("IsVirtbridgeHook follows no link")
	}
	self, _ := os.Executable() // a Go binary, but another main package
	script := filepath.Join(dir, "script")
	os.WriteFile(script, []byte("#!/bin/sh\n"), 0o755)
	for _, p := range []string{self, script, "/bin/sh", filepath.Join(dir, "missing")} {
		if IsVirtbridgeHook(p) {
			t.Errorf("IsVirtbridgeHook(%s) = true", p)
		}
	}
}

func TestReloadSystemd(t *testing.T) {
	yes := true
	var calls []string
	systemctl := func(args ...string) error {
		calls = append(calls, strings.Join(args, " "))
		if args[0] == "is-active" && args[2] == "libvirtd.service" {
			return errors.New("inactive")
		}
		return nil
	}
	done, err := Reload(ReloadOptions{Systemd: &yes, Systemctl: systemctl})
	if err != nil {
		t.Fatal(err)
	}
	want := "is-active --quiet virtqemud.service|reload virtqemud.service|is-active --quiet libvirtd.service"
	if got := strings.Join(calls, "|"); got != want {
		t.Errorf("systemctl calls:\n%s\nwant\n%s", got, want)
	}
	if len(done) != 1 || !strings.Contains(done[0], "reloaded virtqemud.service") {
		t.Errorf("report %q", done)
	}
}

// TestReloadSignals starts a process named libvirtd (a copy of sleep) and
// checks that Reload sends it SIGHUP through its pid file, and ignores a
// stale pid file and a missing one.
func TestReloadSignals(t *testing.T) {
	sleep, err := exec.LookPath("sleep")
	if err != nil {
		t.Skip("skipping: no sleep command")
	}
	dir := t.TempDir()
	fake := filepath.Join(dir, "libvirtd")
	data, err := os.ReadFile(sleep)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(fake, data, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(fake, "60")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	pidFile := filepath.Join(dir, "libvirtd.pid")
	os.WriteFile(pidFile, []byte(strconv.Itoa(cmd.Process.Pid)+"\n"), 0o644)
	// virtqemud's pid file names a running process of another name: stale.
	stale := filepath.Join(dir, "virtqemud.pid")
	os.WriteFile(stale, []byte(strconv.Itoa(os.Getpid())), 0o644)
	no := false
	done, err := Reload(ReloadOptions{Systemd: &no, PIDFiles: map[string]string{"libvirtd": pidFile, "virtqemud": stale}})
	if err != nil {
		t.Fatal(err)
	}
	if len(done) != 1 || !strings.Contains(done[0], "SIGHUP to libvirtd") {
		t.Errorf("report %q", done)
	}
	waitErr := make(chan error, 1)
	go func() { waitErr <- cmd.Wait() }()
	select {
	case err := <-waitErr:
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGHUP {
			t.Errorf("fake libvirtd ended with %v, want killed by SIGHUP", err)
		}
	case <-time.After(10 * time.Second):
		t.Errorf("fake libvirtd got no SIGHUP")
	}
	if _, err := Reload(ReloadOptions{Systemd: &no, PIDFiles: map[string]string{}}); err != nil {
		t.Errorf("Reload without pid files: %v", err)
	}
}
