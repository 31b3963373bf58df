// Package lock serialises host changes between the hook, the event daemon
// and the CLI with one flock(2) on a lock file.
package lock

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"
)

// Lock is a held host lock.
type Lock struct{ f *os.File }

// ErrTimeout is returned when the lock stayed busy for the whole wait.
var ErrTimeout = errors.New("timed out")

// ErrStopped is returned when the wait for the lock was stopped.
var ErrStopped = errors.New("stopped")

// Acquire takes the exclusive lock on path, creating the file and its
// directory if needed, waiting at most wait. The kernel drops the lock when
// the process dies, so a crashed holder never blocks the next one.
func Acquire(path string, wait time.Duration) (*Lock, error) {
	return AcquireUntil(path, wait, nil)
}

// AcquireUntil is Acquire that also gives up, with ErrStopped, as soon as
// stop is closed (a daemon shutting down); a nil stop never is.
func AcquireUntil(path string, wait time.Duration, stop <-chan struct{}) (*Lock, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("creating lock directory: %w", err)
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("opening lock %s: %w", path, err)
	}
	deadline := time.Now().Add(wait)
	delay := time.Millisecond
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			return &Lock{f: f}, nil
		}
		if !errors.Is(err, unix.EWOULDBLOCK) && !errors.Is(err, unix.EINTR) {
			f.Close()
			return nil, fmt.Errorf("locking %s: %w", path, err)
		}
		if time.Now().After(deadline) {
			f.Close()
			return nil, fmt.Errorf("waiting %v for the host lock %s (held by another virtbridge process; "+
				"`fuser -v %s` shows which): %w", wait, path, path, ErrTimeout)
		}
		select {
		case <-stop:
			f.Close()
			return nil, fmt.Errorf("waiting for the host lock %s: %w", path, ErrStopped)
		case <-time.After(delay):
		}
		delay = min(2*delay, 50*time.Millisecond)
	}
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
