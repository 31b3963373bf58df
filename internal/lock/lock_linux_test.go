package lock

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/virtbridge/virtbridge/internal/deadline"
	"github.com/virtbridge/virtbridge/internal/paths"
	"github.com/virtbridge/virtbridge/internal/testenv/pathstest"
)

func TestExclusiveWithBoundedWait(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "lock")
	a, err := Acquire(path, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Acquire(path, 30*time.Millisecond); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("second Acquire while held = %v, want context.DeadlineExceeded", err)
	}
	done := make(chan error, 1)
	go func() {
		b, err := Acquire(path, 5*time.Second)
		if err == nil {
			err = b.Release()
		}
		done <- err
	}()
	time.Sleep(20 * time.Millisecond)
	if err := a.Release(); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("waiter did not get the lock after release: %v", err)
	}
	if err := (*Lock)(nil).Release(); err != nil {
		t.Fatal(err)
	}
}

// TestLockFileIsSafe: the lock file is created 0600 whatever the umask (a
// readable one would let any user hold the host lock), and a symlink
// planted at its path, or as its directory, is refused, its target
// untouched.
func TestLockFileIsSafe(t *testing.T) {
	pathstest.Umask(t, 0o077)
	path := filepath.Join(t.TempDir(), "run", "lock")
	l, err := Acquire(path, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	l.Release()
	if st, err := os.Stat(path); err != nil || st.Mode().Perm() != FileMode {
		t.Fatalf("lock mode %v (%v), want %04o", st.Mode().Perm(), err, FileMode)
	}
	if st, err := os.Stat(filepath.Dir(path)); err != nil || st.Mode().Perm() != 0o755 {
		t.Fatalf("run dir mode %v (%v), want 0755", st.Mode().Perm(), err)
	}

	v := pathstest.NewVictim(t)
	link := filepath.Join(t.TempDir(), "lock")
	pathstest.Plant(t, v.Path, link)
	var ue *paths.UnsafeError
	if _, err := Acquire(link, time.Second); !errors.As(err, &ue) || !strings.Contains(err.Error(), "symbolic link") {
		t.Fatalf("Acquire through a symlink: %v, want a refusal", err)
	}
	dirLink := filepath.Join(t.TempDir(), "run")
	pathstest.Plant(t, filepath.Dir(v.Path), dirLink)
	if _, err := Acquire(filepath.Join(dirLink, "lock"), time.Second); !errors.As(err, &ue) || ue.Path != dirLink {
		t.Fatalf("Acquire in a symlinked directory: %v, want a refusal of the directory", err)
	}
	v.Unchanged(t)
	if ents, _ := os.ReadDir(filepath.Dir(v.Path)); len(ents) != 1 {
		t.Errorf("files created next to the victim: %v", ents)
	}
}

// TestTimeoutNamesTheHolder: a wait that times out says which pid holds
// the lock (here this very process, through another open of the file).
func TestTimeoutNamesTheHolder(t *testing.T) {
	path := filepath.Join(t.TempDir(), "lock")
	a, err := Acquire(path, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Release()
	_, err = Acquire(path, 20*time.Millisecond)
	want := fmt.Sprintf("held by pid %d", os.Getpid())
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), path) {
		t.Fatalf("%v, want a timeout naming %s and %q", err, path, want)
	}
}

// TestWaitEndsWithCtx: the wait for a busy lock ends with its context —
// at its deadline (the hook's hook_timeout), and at once when it is
// cancelled (a daemon's SIGTERM) — with an error naming the lock and its
// holder; meanwhile the context's Activity says what the wait is for.
func TestWaitEndsWithCtx(t *testing.T) {
	path := filepath.Join(t.TempDir(), "lock")
	a, err := Acquire(path, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Release()
	holder := fmt.Sprintf("the host lock %s held by pid %d", path, os.Getpid())

	ctx, cancel := deadline.Within(context.Background(), time.Now(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err = AcquireUntil(ctx, path)
	t.Logf("deadline: %v after %v", err, time.Since(start))
	var de *deadline.Error
	if !errors.As(err, &de) || !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), holder) ||
		!strings.HasSuffix(err.Error(), ": timed out") {
		t.Fatalf("%v, want a *deadline.Error naming %q that timed out", err, holder)
	}
	if d := time.Since(start); d > 30*time.Second {
		t.Fatalf("waited %v with a deadline 100 ms away", d)
	}

	ctx, cancel = context.WithCancel(context.Background())
	ctx, act := deadline.WithActivity(ctx)
	done := make(chan error, 1)
	go func() {
		_, err := AcquireUntil(ctx, path)
		done <- err
	}()
	waitFor(t, func() bool { return strings.Contains(act.Current(), "waiting for "+holder) })
	t.Logf("while waiting: %s", act.Current())
	start = time.Now()
	cancel()
	select {
	case err := <-done:
		t.Logf("cancelled: %v after %v", err, time.Since(start))
		if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), holder) || !strings.HasSuffix(err.Error(), ": stopped") {
			t.Fatalf("%v, want a stop naming %q", err, holder)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the wait went on 30 s after its context was cancelled")
	}
	if act.Current() != "" {
		t.Fatalf("the Activity still says %q after the wait", act.Current())
	}
}

// waitFor polls cond with a generous deadline.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for end := time.Now().Add(30 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatal("condition not met within 30 s")
		}
	}
}

func TestFlockHolder(t *testing.T) {
	locks := "1: POSIX  ADVISORY  WRITE 99 08:01:77 0 EOF\n" +
		"2: FLOCK  ADVISORY  WRITE 4242 00:1a:77 0 EOF\n" +
		"2: -> FLOCK  ADVISORY  WRITE 5151 00:1a:77 0 EOF\n" +
		"3: FLOCK  ADVISORY  WRITE 6000 00:1a:78 0 EOF\n"
	if got := flockHolder([]byte(locks), unix.Mkdev(0, 0x1a), 77); got != 4242 {
		t.Fatalf("holder %d, want 4242", got)
	}
	if got := flockHolder([]byte(locks), unix.Mkdev(8, 1), 77); got != 0 {
		t.Fatalf("a POSIX lock taken for a flock: %d", got)
	}
}
