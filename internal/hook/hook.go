// Package hook is the libvirt qemu hook: libvirtd runs it as
// /etc/libvirt/hooks/qemu with `<domain> <op> <subop> <extra>` and the domain
// XML on stdin, and waits for it. It never writes to stdout (at migrate and
// restore libvirt would take that as a replacement domain XML), never calls
// the libvirt API (libvirtd would deadlock) and never runs a shell.
package hook

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"time"

	"github.com/virtbridge/virtbridge/internal/config"
	"github.com/virtbridge/virtbridge/internal/deadline"
	"github.com/virtbridge/virtbridge/internal/engine"
	"github.com/virtbridge/virtbridge/internal/events"
)

// Exit codes. libvirt aborts the operation on any non-zero exit where the op
// allows it.
const (
	ExitOK      = 0
	ExitRefused = 1 // the VM operation is refused: bad input, config, or a host that cannot be made right
)

// Env is what the hook needs from its process. Tests fill it in; cmd/hook
// fills it with the real things.
type Env struct {
	Args       []string // argv without the program name
	Stdin      io.Reader
	Stderr     io.Writer
	ConfigPath string
	// NetworkDirs hold libvirt's network definitions (events.NetworkDirs).
	NetworkDirs []string
	// UplinkByMAC names the link that owns a MAC ("" if none), for
	// config.CheckUplinks; nil skips that check.
	UplinkByMAC func(net.HardwareAddr) string
	// Engine builds the engine that acts on the event under cfg; ctx is
	// the run's (it ends at the deadline), for the engine's own limits.
	Engine func(ctx context.Context, cfg *config.Config) *engine.Engine
	// Start is when the process started: the deadline (hook_timeout) counts
	// from it. Zero means when Run is called.
	Start time.Time
	// Exit ends the process with a code when the deadline passes; nil
	// means os.Exit.
	Exit func(code int)
}

// Run handles one hook call and returns the process exit code. The whole
// run, from env.Start, has a deadline: config.DefaultHookTimeout until the
// config is read, then its hook_timeout. Every wait of the run ends with
// one context that expires then; past it the process ends through env.Exit
// with one line on stderr saying what it was doing (the context's
// deadline.Activity), with the exit code refuse picks for the op.
func Run(env Env) int {
	op := events.Op("")
	if len(env.Args) > 1 {
		op = events.Op(env.Args[1])
	}
	w, stderr := startWatchdog(env, op, config.DefaultHookTimeout)
	defer w.finish()
	env.Stderr = stderr
	return run(env, op, w)
}

// run reads the config before stdin, so that its hook_timeout bounds the
// wait for the domain XML too, but reports bad input before a bad config.
func run(env Env, op events.Op, w *watchdog) int {
	ctx := w.context()
	deadline.Doing(ctx, "reading the configuration %s", env.ConfigPath)
	cfg, cerr := config.Load(env.ConfigPath)
	if cerr == nil {
		ctx = w.reset(limitOf(cfg))
		if env.UplinkByMAC != nil {
			cerr = cfg.CheckUplinks(env.UplinkByMAC)
		}
	}
	deadline.Doing(ctx, "reading the domain XML on stdin")
	ev, err := events.ParseHook(env.Args, env.Stdin)
	if err != nil {
		return refuse(env, op, "", err)
	}
	if cerr != nil {
		return refuse(env, op, ev.Domain, fmt.Errorf("%w\n(fix the config, then check it with `virtbridge check-config %s`)", cerr, env.ConfigPath))
	}
	deadline.Doing(ctx, "reading libvirt's network definitions")
	events.ResolveNetworks(&ev, env.NetworkDirs)
	deadline.Doing(ctx, "handling the %s of domain %q", op, ev.Domain)
	res, err := env.Engine(ctx, cfg).Handle(ctx, ev)
	for _, w := range res.Warnings {
		fmt.Fprintf(env.Stderr, "virtbridge: domain %q (%s): warning: %v\n", ev.Domain, op, w)
	}
	if err == nil {
		return ExitOK
	}
	var hostFailure *engine.HostError // a *engine.PolicyError is refused whatever on_failure says
	if cfg.OnFailure == config.WarnOnFailure && errors.As(err, &hostFailure) {
		fmt.Fprintf(env.Stderr, "virtbridge: domain %q (%s): warning (on_failure: warn, the VM goes on without it): %v\n", ev.Domain, op, err)
		return ExitOK
	}
	return refuse(env, op, ev.Domain, err)
}

// refuse reports err on stderr, where libvirt shows it to the user, and
// picks the exit code the op allows: libvirt kills a running VM when the
// hook fails at reconnect, and nothing can be undone at stopped/release.
func refuse(env Env, op events.Op, domain string, err error) int {
	what := "virtbridge"
	if domain != "" {
		what = fmt.Sprintf("virtbridge: domain %q", domain)
	}
	if op != "" {
		what += fmt.Sprintf(" (%s)", op)
	}
	var ie *events.InputError
	unknownOp := errors.As(err, &ie) && !slices.Contains(events.HookOps, op)
	if op.MayFail() || unknownOp {
		fmt.Fprintf(env.Stderr, "%s: refused: %v\n", what, err)
		return ExitRefused
	}
	fmt.Fprintf(env.Stderr, "%s: %v (not failing the %s operation: libvirt cannot act on a failure here)\n", what, err, op)
	return ExitOK
}
