package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/virtbridge/virtbridge/internal/install"
)

// buildHook builds the real virtbridge-hook, which install-hook insists on
// as its target.
func buildHook(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("skipping: builds cmd/hook (-short)")
	}
	goTool, err := exec.LookPath("go")
	if err != nil {
		goTool = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	out := filepath.Join(t.TempDir(), "virtbridge-hook")
	cmd := exec.Command(goTool, "build", "-o", out, "github.com/virtbridge/virtbridge/cmd/hook")
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building the hook: %v\n%s", err, b)
	}
	return out
}

func TestInstallHookCommand(t *testing.T) {
	hook := buildHook(t)
	root := t.TempDir()
	t.Setenv("VIRTBRIDGE_STATE_DIR", filepath.Join(root, "state"))
	hooks := filepath.Join(root, "hooks")
	if err := os.MkdirAll(hooks, 0o755); err != nil {
		t.Fatal(err)
	}
	foreign := "#!/bin/sh\nexit 0\n"
	if err := os.WriteFile(filepath.Join(hooks, "qemu"), []byte(foreign), 0o755); err != nil {
		t.Fatal(err)
	}

	code, out, errs := cli(t, "", "install-hook", "--hooks-dir", hooks, "--target", hook)
	if code != exitOK || errs != "" {
		t.Fatalf("install-hook: exit %d stderr %q", code, errs)
	}
	for _, want := range []string{"moved the existing hook", "installed the hook", "systemctl reload virtqemud"} {
		if !strings.Contains(out, want) {
			t.Errorf("install-hook output lacks %q:\n%s", want, out)
		}
	}
	if text, _ := os.Readlink(filepath.Join(hooks, "qemu")); text != hook {
		t.Errorf("hook links to %q, want %q", text, hook)
	}

	// Again: nothing to do, nothing said (the operator is told once).
	if code, out, errs := cli(t, "", "install-hook", "--hooks-dir", hooks, "--target", hook); code != exitOK || out != "" || errs != "" {
		t.Errorf("second install-hook: exit %d out %q stderr %q", code, out, errs)
	}

	code, out, errs = cli(t, "", "uninstall-hook", "--hooks-dir", hooks)
	if code != exitOK || errs != "" || !strings.Contains(out, "put back the hook") {
		t.Fatalf("uninstall-hook: exit %d out %q stderr %q", code, out, errs)
	}
	if data, err := os.ReadFile(filepath.Join(hooks, "qemu")); err != nil || string(data) != foreign {
		t.Errorf("hook after uninstall-hook: %q, %v", data, err)
	}
	for _, gone := range []string{filepath.Join(hooks, "qemu.d"), filepath.Join(root, "state")} {
		if _, err := os.Stat(gone); !os.IsNotExist(err) {
			t.Errorf("%s, created by install-hook, is still there: %v", gone, err)
		}
	}
}

func TestInstallHookRefusesForeignTarget(t *testing.T) {
	root := t.TempDir()
	t.Setenv("VIRTBRIDGE_STATE_DIR", filepath.Join(root, "state"))
	code, _, errs := cli(t, "", "install-hook", "--hooks-dir", filepath.Join(root, "hooks"), "--target", "/bin/sh")
	if code != exitFound || !strings.Contains(errs, "/bin/sh is not virtbridge's hook binary") {
		t.Fatalf("exit %d stderr %q", code, errs)
	}
	if _, err := os.Stat(filepath.Join(root, "hooks")); !os.IsNotExist(err) {
		t.Errorf("a refused install-hook created the hook directory: %v", err)
	}
}

func TestDefaultTargetIsNextToTheBinary(t *testing.T) {
	self, _ := os.Executable()
	self, _ = filepath.EvalSymlinks(self)
	if got, want := defaultTarget(), filepath.Join(filepath.Dir(self), "virtbridge-hook"); got != want {
		t.Errorf("defaultTarget() = %q, want %q", got, want)
	}
	if install.DefaultTarget != "/usr/bin/virtbridge-hook" {
		t.Errorf("DefaultTarget = %q, the path the packages install", install.DefaultTarget)
	}
}
