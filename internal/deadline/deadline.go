// Package deadline holds the process's overall deadline and a one-line
// account of what the process is doing, for the hook: libvirtd waits for
// the hook, so the hook must give up in time and then say what it was
// waiting for. Layers below the hook (the host lock, external commands)
// bound their waits with Remaining and say what they do with Doing. A
// process that sets no deadline (the daemon, the CLI) has none: Remaining
// then returns its fallback.
package deadline

import (
	"fmt"
	"sync"
	"time"
)

var (
	mu    sync.Mutex
	at    time.Time // zero: no deadline
	doing string
)

// Set makes t the process's deadline; the zero time removes it.
func Set(t time.Time) {
	mu.Lock()
	defer mu.Unlock()
	at = t
}

// Get returns the process's deadline; ok is false when there is none.
func Get() (t time.Time, ok bool) {
	mu.Lock()
	defer mu.Unlock()
	return at, !at.IsZero()
}

// Remaining returns the time left before the deadline, less margin, and
// never more than fallback; without a deadline it returns fallback. It
// never returns less than zero.
func Remaining(fallback, margin time.Duration) time.Duration {
	t, ok := Get()
	if !ok {
		return fallback
	}
	return max(min(time.Until(t)-margin, fallback), 0)
}

// Doing records what the process is doing now, as a phrase that follows
// "while": "waiting for the host lock /run/virtbridge/lock held by pid 42".
// It returns a func that puts the previous phrase back.
func Doing(format string, args ...any) (restore func()) {
	mu.Lock()
	defer mu.Unlock()
	prev := doing
	doing = fmt.Sprintf(format, args...)
	return func() {
		mu.Lock()
		defer mu.Unlock()
		doing = prev
	}
}

// Current returns the phrase last recorded by Doing ("" if none).
func Current() string {
	mu.Lock()
	defer mu.Unlock()
	return doing
}
