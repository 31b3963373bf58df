package hook

import (
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
// allows. Ending mid-apply is no worse than a kill -9, which every step
// survives (atomic store, host lock released by the kernel, changes that
// the next run converges).
type watchdog struct {
	mu     sync.Mutex // held for good once the watchdog fires
	done   bool
	timer  *time.Timer
	start  time.Time
	limit  time.Duration
	env    Env // with the real Stderr
	op     events.Op
	domain string
}

// startWatchdog arms the deadline at start + limit, for the process
// (package deadline) and for the hook, and returns the watchdog and the
// Stderr that Run must use from now on: writes to it wait for, and are
// dropped by, a firing watchdog, so that its line is the last one.
func startWatchdog(env Env, op events.Op, limit time.Duration) (*watchdog, io.Writer) {
	w := &watchdog{start: env.Start, env: env, op: op, limit: limit}
	if w.start.IsZero() {
		w.start = time.Now()
	}
	if w.env.Exit == nil {
		w.env.Exit = os.Exit
	}
	if len(env.Args) > 0 {
		w.domain = env.Args[0]
	}
	deadline.Set(w.start.Add(limit))
	w.timer = time.AfterFunc(time.Until(w.start.Add(limit)), w.fire)
	return w, guarded{w}
}

// reset moves the deadline to start + limit: the configured hook_timeout
// replaces the default once the config is read.
func (w *watchdog) reset(limit time.Duration) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.done {
		return
	}
	w.limit = limit
	deadline.Set(w.start.Add(limit))
	w.timer.Reset(time.Until(w.start.Add(limit)))
}

// finish disarms the watchdog; a firing one keeps the process from
// getting past this.
func (w *watchdog) finish() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.done = true
	w.timer.Stop()
}

func (w *watchdog) fire() {
	w.mu.Lock() // never unlocked: the process ends here
	if w.done {
		w.mu.Unlock()
		return
	}
	code := refuse(w.env, w.op, w.domain, &DeadlineError{Limit: w.limit, Doing: deadline.Current(), ConfigPath: w.env.ConfigPath})
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
