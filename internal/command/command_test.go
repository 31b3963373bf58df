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
	if errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("a plain failure is not a timeout: %v", err)
	}
}

// TestTimeoutAndContext: a command is stopped at its Timeout, earlier
// when its context's deadline comes first, and at once when its context is
// cancelled; each time the error names the argv and why, and while it runs
// the context's Activity says so.
func TestTimeoutAndContext(t *testing.T) {
	sleep := look(t, "sleep")
	argv := `["` + sleep + `" "30"]`
	start := time.Now()
	_, err := Cmd{Path: sleep, Args: []string{"30"}, Timeout: 200 * time.Millisecond}.Output(context.Background())
	t.Logf("timeout: %v after %v", err, time.Since(start))
	if !errors.Is(err, context.DeadlineExceeded) || time.Since(start) > 10*time.Second ||
		err.Error() != "running "+argv+": no result within 200ms: timed out" {
		t.Fatalf("sleep 30 with a 200ms timeout: %v after %v", err, time.Since(start))
	}

	ctx, cancel := deadline.Within(context.Background(), time.Now(), 200*time.Millisecond)
	defer cancel()
	start = time.Now()
	_, err = Cmd{Path: sleep, Args: []string{"30"}, Timeout: time.Minute}.Output(ctx)
	t.Logf("deadline: %v after %v", err, time.Since(start))
	var de *deadline.Error
	if !errors.As(err, &de) || !errors.Is(err, context.DeadlineExceeded) || time.Since(start) > 10*time.Second ||
		!strings.HasPrefix(err.Error(), "running "+argv+": no result within ") || !strings.HasSuffix(err.Error(), ": timed out") {
		t.Fatalf("sleep 30 past its context's deadline: %v after %v", err, time.Since(start))
	}

	ctx, stop := context.WithCancel(context.Background())
	ctx, act := deadline.WithActivity(ctx)
	done := make(chan error, 1)
	go func() {
		_, err := Cmd{Path: sleep, Args: []string{"30"}, Timeout: time.Minute}.Output(ctx)
		done <- err
	}()
	for end := time.Now().Add(30 * time.Second); act.Current() == ""; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatal("the Activity never said the command runs")
		}
	}
	if act.Current() != "running "+argv {
		t.Fatalf("Activity %q while the command runs", act.Current())
	}
	start = time.Now()
	stop()
	select {
	case err := <-done:
		t.Logf("cancelled: %v after %v", err, time.Since(start))
		if !errors.Is(err, context.Canceled) || err.Error() != "running "+argv+": stopped" {
			t.Fatalf("cancelled: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the command ran on 30 s after its context was cancelled")
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
