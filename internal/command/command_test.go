package command

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/virtbridge/virtbridge/internal/deadline"
)

func look(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Skipf("skipped: %s not installed", name)
	}
	return p
}

// TestCleanEnvironment: nothing of the caller's environment reaches the
// command, whatever it holds; only Env and the Cmd's own additions do.
func TestCleanEnvironment(t *testing.T) {
	t.Setenv("LD_PRELOAD", "/tmp/evil.so")
	t.Setenv("LC_ALL", "de_DE.UTF-8")
	t.Setenv("XTABLES_LIBDIR", "/tmp/evil")
	t.Setenv("PATH", "/tmp/evil:/usr/bin:/bin")
	out, err := Cmd{Path: look(t, "env"), Env: []string{"SYSTEMD_PAGER="}}.Output(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	want := "PATH=/usr/sbin:/usr/bin:/sbin:/bin\nLC_ALL=C\nSYSTEMD_PAGER=\n"
	if string(out) != want {
		t.Fatalf("the command saw the environment\n%s\nwant exactly\n%s", out, want)
	}
}

// TestStdinArgvAndFailure: arguments arrive as given (no shell: "$HOME;
// id" is one argument), stdin is passed, and a failure names the argv and
// carries stderr.
func TestStdinArgvAndFailure(t *testing.T) {
	sh := look(t, "sh")
	out, err := Cmd{Path: sh, Args: []string{"-c", `printf '%s|' "$0" "$1"; cat`, "$HOME;", "id"}, Stdin: strings.NewReader("in")}.Output(context.Background())
	if err != nil || string(out) != "$HOME;|id|in" {
		t.Fatalf("output %q, %v", out, err)
	}
	_, err = Cmd{Path: sh, Args: []string{"-c", "echo broken >&2; exit 3"}}.Output(context.Background())
	if err == nil || !strings.Contains(err.Error(), `"-c"`) || !strings.Contains(err.Error(), "exit status 3: broken") {
		t.Fatalf("error %v, want argv, exit status and stderr", err)
	}
	if errors.Is(err, ErrTimeout) {
		t.Fatalf("a plain failure is not a timeout: %v", err)
	}
}

// TestTimeoutAndProcessDeadline: a command is stopped at its Timeout, and
// earlier when the process deadline comes first.
func TestTimeoutAndProcessDeadline(t *testing.T) {
	sleep := look(t, "sleep")
	start := time.Now()
	_, err := Cmd{Path: sleep, Args: []string{"30"}, Timeout: 200 * time.Millisecond}.Output(context.Background())
	if !errors.Is(err, ErrTimeout) || time.Since(start) > 10*time.Second {
		t.Fatalf("sleep 30 with a 200ms timeout: %v after %v", err, time.Since(start))
	}
	deadline.Set(time.Now().Add(200 * time.Millisecond))
	t.Cleanup(func() { deadline.Set(time.Time{}) })
	start = time.Now()
	_, err = Cmd{Path: sleep, Args: []string{"30"}, Timeout: time.Minute}.Output(context.Background())
	if !errors.Is(err, ErrTimeout) || time.Since(start) > 10*time.Second {
		t.Fatalf("sleep 30 past the process deadline: %v after %v", err, time.Since(start))
	}
	if !strings.Contains(err.Error(), "no result within") {
		t.Errorf("timeout error does not say so: %v", err)
	}
}

// TestLookPathIgnoresPATH: a program planted in a directory on $PATH is
// never chosen; only the system directories count.
func TestLookPathIgnoresPATH(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "env"), []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", dir)
	p, err := LookPath("env")
	if err != nil || filepath.Dir(p) == dir || !slices.Contains(Dirs, filepath.Dir(p)) {
		t.Fatalf("LookPath(env) = %q, %v; want one in %v", p, err, Dirs)
	}
	if _, err := LookPath("../bin/env"); err == nil {
		t.Fatal("a path was looked up")
	}
	if _, err := LookPath("virtbridge-no-such-program"); !errors.Is(err, exec.ErrNotFound) {
		t.Fatalf("missing program: %v", err)
	}
}
