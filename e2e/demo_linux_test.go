package e2e

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// TestDemoProgram runs `make demo`'s program, vbdemo, as a person would:
// to the end, and interrupted (Ctrl-C reaches its process group) while
// its VM runs. Either way it leaves no lab behind.
func TestDemoProgram(t *testing.T) {
	t.Run("full run", func(t *testing.T) {
		t.Parallel()
		requireLab(t)
		d := startDemo(t)
		code, out := d.wait(t, 5*time.Minute)
		if code != 0 {
			t.Fatalf("vbdemo exited %d:\n%s", code, out)
		}
		for _, want := range []string{
			"[1/4]", "[2/4]", "[3/4]", "[4/4]",
			"LEASE: the VM got 10.77.0.",
			"3 packets transmitted, 3 received",
			"alias vm:demo-vm uuid:",
			"vnet0 attached: vm \"demo-vm\"",
			"vnet0 detached: vm \"demo-vm\"",
			"lab down in",
			"Done in",
		} {
			if !strings.Contains(out, want) {
				t.Errorf("vbdemo's output lacks %q:\n%s", want, out)
			}
		}
		wantLabGone(t, out)
	})
	t.Run("interrupted", func(t *testing.T) {
		t.Parallel()
		requireLab(t)
		d := startDemo(t)
		waitUntil(t, 3*time.Minute, "vbdemo reaching step 3", func() (bool, string) {
			out := d.output()
			return strings.Contains(out, "[3/4]"), out
		})
		if err := syscall.Kill(-d.cmd.Process.Pid, syscall.SIGINT); err != nil {
			t.Fatal(err)
		}
		code, out := d.wait(t, 2*time.Minute)
		if code != 130 || !strings.Contains(out, "lab down in") {
			t.Fatalf("interrupted vbdemo exited %d, want 130 after tearing the lab down:\n%s", code, out)
		}
		wantLabGone(t, out)
	})
}

// demoRun is vbdemo running in its own process group, as a shell runs a
// foreground job.
type demoRun struct {
	cmd  *exec.Cmd
	mu   sync.Mutex
	out  bytes.Buffer
	done chan error
}

func (d *demoRun) Write(p []byte) (int, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.out.Write(p)
}

func (d *demoRun) output() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.out.String()
}

func startDemo(t *testing.T) *demoRun {
	t.Helper()
	vbdemo := bin(t, "vbdemo")
	d := &demoRun{done: make(chan error, 1)}
	d.cmd = exec.Command(vbdemo, "--bin", filepath.Dir(vbdemo))
	d.cmd.Stdout, d.cmd.Stderr = d, d
	d.cmd.Env = append(os.Environ(), "LC_ALL=C")
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { d.done <- d.cmd.Wait() }()
	t.Cleanup(func() {
		select {
		case <-d.done:
		default:
			// SIGTERM makes it tear its lab down; SIGKILL would leave it.
			_ = d.cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-d.done:
			case <-time.After(time.Minute):
				_ = d.cmd.Process.Kill()
				<-d.done
			}
		}
	})
	return d
}

// wait waits for vbdemo to exit and returns its exit code and output.
func (d *demoRun) wait(t *testing.T, limit time.Duration) (int, string) {
	t.Helper()
	select {
	case err := <-d.done:
		d.done <- err // for the cleanup
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return ee.ExitCode(), d.output()
		}
		if err != nil {
			t.Fatal(err)
		}
		return 0, d.output()
	case <-time.After(limit):
		t.Fatalf("vbdemo still running after %v:\n%s", limit, d.output())
		return 0, ""
	}
}

var demoNSRE = regexp.MustCompile(`network namespace (vbhv-[0-9a-z]+)`)

// wantLabGone checks that the lab vbdemo names in its output is gone:
// namespaces deleted, directory removed (which Close does only when no
// process was left in the namespaces).
func wantLabGone(t *testing.T, out string) {
	t.Helper()
	m := demoNSRE.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("vbdemo's output names no hypervisor namespace:\n%s", out)
	}
	tag := strings.TrimPrefix(m[1], "vbhv-")
	for _, ns := range []string{"vbhv-" + tag, "vbup-" + tag} {
		if _, err := os.Stat(filepath.Join("/run/netns", ns)); err == nil {
			t.Errorf("namespace %s left behind", ns)
		}
	}
	if dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), "virtbridge-lab-"+tag+"-*")); len(dirs) > 0 {
		t.Errorf("lab directory left behind: %v", dirs)
	}
}
