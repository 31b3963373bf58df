// Package lock serialises host changes between the hook, the event daemon
// and the CLI with one flock(2) on a lock file.
package lock

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/virtbridge/virtbridge/internal/deadline"
	"github.com/virtbridge/virtbridge/internal/paths"
)

// FileMode is the lock file's mode, whatever the umask: flock needs only
// an open descriptor, read-only will do, so a lock file others could open
// would let any user hold the host lock and stall every VM start.
const FileMode = 0o600

// Lock is a held host lock.
type Lock struct{ f *os.File }

// Acquire takes the exclusive lock on path, waiting at most wait
// (AcquireUntil with a context that ends after wait).
func Acquire(path string, wait time.Duration) (*Lock, error) {
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	return AcquireUntil(ctx, path)
}

// AcquireUntil takes the exclusive lock on path, creating the file and its
// directory if needed, waiting until ctx ends: at its deadline (the hook's
// hook_timeout) or when it is cancelled (a daemon shutting down), at once.
// A wait that ctx ended is a *deadline.Error naming the lock and its
// holder's pid (errors.Is finds context.DeadlineExceeded or
// context.Canceled); while it waits, ctx's Activity says so. The kernel
// drops the lock when the process dies, so a crashed holder never blocks
// the next one. The lock file and its directory must be safe
// (paths.OpenFile, paths.EnsureDir: no symlink, root's or ours, nobody
// else may write); a created file gets FileMode.
func AcquireUntil(ctx context.Context, path string) (*Lock, error) {
	if err := paths.EnsureDir(filepath.Dir(path)); err != nil {
		return nil, fmt.Errorf("opening lock %s: %w", path, err)
	}
	f, err := paths.OpenFile(path, os.O_RDWR|os.O_CREATE, FileMode)
	if err != nil {
		return nil, fmt.Errorf("opening lock %s: %w", path, err)
	}
	begin := time.Now()
	delay := time.Millisecond
	var restore func()
	defer func() {
		if restore != nil {
			restore()
		}
	}()
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			return &Lock{f: f}, nil
		}
		if !errors.Is(err, unix.EWOULDBLOCK) && !errors.Is(err, unix.EINTR) {
			f.Close()
			return nil, fmt.Errorf("locking %s: %w", path, err)
		}
		if restore == nil {
			restore = deadline.Doing(ctx, "waiting for the host lock %s%s", path, heldBy(f))
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			held := heldBy(f)
			f.Close()
			return nil, deadline.Ended(ctx, "waiting %v for the host lock %s%s (another virtbridge process; "+
				"`fuser -v %s` shows which)", time.Since(begin).Round(time.Millisecond), path, held, path)
		case <-t.C:
		}
		delay = min(2*delay, 50*time.Millisecond)
	}
}

// heldBy returns " held by pid N" for the process holding a flock on f's
// file, from /proc/locks, or "" when that cannot be told.
func heldBy(f *os.File) string {
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return ""
	}
	data, err := os.ReadFile("/proc/locks")
	if err != nil {
		return ""
	}
	if pid := flockHolder(data, st.Dev, st.Ino); pid > 0 {
		return " held by pid " + strconv.Itoa(pid)
	}
	return ""
}

// flockHolder finds, in /proc/locks text, the pid holding a FLOCK on the
// file (dev, ino); 0 if none is listed. Lines look like
// "1: FLOCK  ADVISORY  WRITE 4242 00:1a:5678 0 EOF" (device as hex
// major:minor); waiters' lines ("1: -> FLOCK ...") are skipped.
func flockHolder(data []byte, dev, ino uint64) int {
	id := fmt.Sprintf("%02x:%02x:%d", unix.Major(dev), unix.Minor(dev), ino)
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 6 || f[1] != "FLOCK" || f[5] != id {
			continue
		}
		if pid, err := strconv.Atoi(f[4]); err == nil {
			return pid
		}
	}
	return 0
}

// Release drops the lock. It is safe to call on a nil Lock.
func (l *Lock) Release() error {
	if l == nil || l.f == nil {
		return nil
	}
	err := l.f.Close() // closing the last descriptor releases the flock
	l.f = nil
	return err
}
