package hook

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/virtbridge/virtbridge/internal/config"
	"github.com/virtbridge/virtbridge/internal/deadline"
	"github.com/virtbridge/virtbridge/internal/events"
)

// DeadlineError is the hook giving up at its overall deadline
// (hook_timeout): libvirtd waits for the hook with no limit of its own.
type DeadlineError struct {
	Limit      time.Duration
	Doing      string // what the hook was doing, after "while"
	ConfigPath string
}

func (e *DeadlineError) Error() string {
	doing := e.Doing
	if doing == "" {
		doing = "starting"
	}
	return fmt.Sprintf("gave up after %v (hook_timeout) while %s; raise hook_timeout in %s "+
		"or find out what holds it up", e.Limit, doing, e.ConfigPath)
}

// watchdog ends the process at the hook's deadline, counted from its
// start, with one line saying what it was doing and the exit code the op
// allows. The deadline is the hook's context's (deadline.Within): the
// context that bounds every wait of the run (the host lock, commands,
// journald) fires the watchdog when it expires, and its Activity is what
// the line reports. Ending mid-apply is no worse than a kill -9, which
// every step survives (atomic store, host lock released by the kernel,
// changes that the next run converges).
type watchdog struct {
	mu     sync.Mutex // held for good once the watchdog fires
	done   bool
	base   context.Context // carries act
	act    *deadline.Activity
	ctx    context.Context // ends at start + limit
	cancel context.CancelFunc
	stop   func() bool // disarms the watch on ctx
	start  time.Time
	limit  time.Duration
	env    Env // with the real Stderr
	op     events.Op
	domain string
}

// startWatchdog arms the deadline at start + limit and returns the
// watchdog and the Stderr that Run must use from now on: writes to it
// wait for, and are dropped by, a firing watchdog, so that its line is
// the last one.
func startWatchdog(env Env, op events.Op, limit time.Duration) (*watchdog, io.Writer) {
	w := &watchdog{start: env.Start, env: env, op: op}
	if w.start.IsZero() {
		w.start = time.Now()
	}
	if w.env.Exit == nil {
		w.env.Exit = os.Exit
	}
	if len(env.Args) > 0 {
		w.domain = env.Args[0]
	}
	w.base, w.act = deadline.WithActivity(context.Background())
	w.arm(limit)
	return w, guarded{w}
}

// arm makes the run's context end at start + limit, and fire the watchdog
// then. The caller holds mu, or is startWatchdog.
func (w *watchdog) arm(limit time.Duration) {
	if w.cancel != nil {
		w.stop()
		w.cancel()
	}
	w.limit = limit
	ctx, cancel := deadline.Within(w.base, w.start, limit)
	w.ctx, w.cancel = ctx, cancel
	w.stop = context.AfterFunc(ctx, func() {
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			w.fire(ctx)
		}
	})
}

// reset moves the deadline to start + limit: the configured hook_timeout
// replaces the default once the config is read. It returns the run's
// context from now on.
func (w *watchdog) reset(limit time.Duration) context.Context {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.arm(limit)
	}
	return w.ctx
}

// context returns the run's context: it ends at the deadline, and carries
// the Activity the watchdog reports.
func (w *watchdog) context() context.Context {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.ctx
}

// finish disarms the watchdog; a firing one keeps the process from
// getting past this.
func (w *watchdog) finish() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.done = true
	w.stop()
	w.cancel()
}

// fire ends the process, unless the run finished or ctx is no longer the
// run's (reset replaced it).
func (w *watchdog) fire(ctx context.Context) {
	w.mu.Lock() // never unlocked: the process ends here
	if w.done || ctx != w.ctx {
		w.mu.Unlock()
		return
	}
	code := refuse(w.env, w.op, w.domain, &DeadlineError{Limit: w.limit, Doing: w.act.Current(), ConfigPath: w.env.ConfigPath})
	w.env.Exit(code)
	select {} // an Exit that returns (a test's) must not let Run print
}

// guarded is Run's Stderr while the watchdog is armed.
type guarded struct{ w *watchdog }

func (g guarded) Write(p []byte) (int, error) {
	g.w.mu.Lock()
	defer g.w.mu.Unlock()
	return g.w.env.Stderr.Write(p)
}

// limitOf is the deadline a loaded config sets.
func limitOf(cfg *config.Config) time.Duration {
	if cfg.HookTimeout <= 0 {
		return config.DefaultHookTimeout
	}
	return cfg.HookTimeout
}
