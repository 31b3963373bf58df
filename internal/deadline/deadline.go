// Package deadline bounds waiting with one context.Context and says what
// was being waited for when it ends. libvirtd waits for the hook, so the
// hook's run has a context that ends at hook_timeout counted from process
// start (Within); the daemon's ends at SIGTERM; the CLI's bounds nothing
// but its own waits. Every wait below — the host lock, external commands,
// journald sends — ends with that context and returns an *Error naming
// what it waited for.
//
// A context may also carry an *Activity (WithActivity): steps record on
// it what the run is doing (Doing), and the hook's watchdog reports it
// when the deadline passes, e.g. "waiting for the host lock
// /run/virtbridge/lock held by pid 4242". Nothing here is process-global.
package deadline

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"
)

// Activity is what a run is doing now, as a phrase that follows "while".
// It is safe for concurrent use: the hook's watchdog reads it from its own
// goroutine. A nil *Activity records nothing.
type Activity struct {
	mu    sync.Mutex
	doing string
}

// Current returns the phrase last recorded ("" if none).
func (a *Activity) Current() string {
	if a == nil {
		return ""
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.doing
}

func (a *Activity) swap(doing string) string {
	a.mu.Lock()
	defer a.mu.Unlock()
	prev := a.doing
	a.doing = doing
	return prev
}

type activityKey struct{}

// WithActivity returns a context carrying a new Activity, and the Activity.
func WithActivity(parent context.Context) (context.Context, *Activity) {
	a := &Activity{}
	return context.WithValue(parent, activityKey{}, a), a
}

// ActivityOf returns the Activity ctx carries, or nil.
func ActivityOf(ctx context.Context) *Activity {
	a, _ := ctx.Value(activityKey{}).(*Activity)
	return a
}

// Doing records on ctx's Activity what the run is doing now, as a phrase
// that follows "while": "waiting for the host lock /run/virtbridge/lock
// held by pid 42". It returns a func that puts the previous phrase back.
// Without an Activity it records nothing.
func Doing(ctx context.Context, format string, args ...any) (restore func()) {
	a := ActivityOf(ctx)
	if a == nil {
		return func() {}
	}
	prev := a.swap(fmt.Sprintf(format, args...))
	return func() { a.swap(prev) }
}

// Within returns a context that ends at start+limit: the hook's, with
// hook_timeout counted from process start. It carries parent's Activity,
// or a new one.
func Within(parent context.Context, start time.Time, limit time.Duration) (context.Context, context.CancelFunc) {
	if ActivityOf(parent) == nil {
		parent, _ = WithActivity(parent)
	}
	return context.WithDeadline(parent, start.Add(limit))
}

// Left returns the time left before ctx's deadline, less margin, and
// never more than fallback; without a deadline it returns fallback. It
// never returns less than zero.
func Left(ctx context.Context, margin, fallback time.Duration) time.Duration {
	t, ok := ctx.Deadline()
	if !ok {
		return fallback
	}
	return max(min(time.Until(t)-margin, fallback), 0)
}

// Uncancelled returns a context with ctx's values and deadline but not its
// cancellation, for what must still be done when a run is stopped:
// undoing the changes it made, and recording those it keeps. The
// deadline still bounds it. Call cancel when done.
func Uncancelled(ctx context.Context) (context.Context, context.CancelFunc) {
	u := context.WithoutCancel(ctx)
	if t, ok := ctx.Deadline(); ok {
		return context.WithDeadline(u, t)
	}
	return context.WithCancel(u)
}

// Error is a wait that ended before what it waited for came: its context
// ended (deadline or cancel), or its own time limit passed. errors.Is
// finds Err: context.DeadlineExceeded, context.Canceled or
// os.ErrDeadlineExceeded.
type Error struct {
	// Waiting says what was waited for, as a phrase: "waiting 1.5s for the
	// host lock /run/virtbridge/lock held by pid 4242", "running
	// [\"/usr/sbin/iptables\" ...]: no result within 10s".
	Waiting string
	Err     error
}

func (e *Error) Error() string {
	why := e.Err.Error()
	switch {
	case errors.Is(e.Err, context.DeadlineExceeded), errors.Is(e.Err, os.ErrDeadlineExceeded):
		why = "timed out"
	case errors.Is(e.Err, context.Canceled):
		why = "stopped"
	}
	return e.Waiting + ": " + why
}

func (e *Error) Unwrap() error { return e.Err }

// Ended returns an *Error for a wait that ctx ended, saying what it was
// waiting for; nil while ctx has not ended.
func Ended(ctx context.Context, format string, args ...any) error {
	if ctx.Err() == nil {
		return nil
	}
	return &Error{Waiting: fmt.Sprintf(format, args...), Err: ctx.Err()}
}
