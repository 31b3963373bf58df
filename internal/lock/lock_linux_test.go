package lock

import (
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
	if _, err := Acquire(path, 30*time.Millisecond); !errors.Is(err, ErrTimeout) {
		t.Fatalf("second Acquire while held = %v, want ErrTimeout", err)
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
	if !errors.Is(err, ErrTimeout) || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), path) {
		t.Fatalf("%v, want a timeout naming %s and %q", err, path, want)
	}
}

// TestWaitBoundedByProcessDeadline: a long wait is cut to the time left
// before the process deadline.
func TestWaitBoundedByProcessDeadline(t *testing.T) {
	path := filepath.Join(t.TempDir(), "lock")
	a, err := Acquire(path, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Release()
	deadline.Set(time.Now().Add(100 * time.Millisecond))
	t.Cleanup(func() { deadline.Set(time.Time{}) })
	start := time.Now()
	if _, err := Acquire(path, time.Hour); !errors.Is(err, ErrTimeout) {
		t.Fatalf("%v, want ErrTimeout", err)
	}
	if d := time.Since(start); d > 30*time.Second {
		t.Fatalf("waited %v with a deadline 100 ms away", d)
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
