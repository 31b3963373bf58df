// Package hook is the libvirt qemu hook: libvirtd runs it as
// /etc/libvirt/hooks/qemu with `<domain> <op> <subop> <extra>` and the domain
// XML on stdin, and waits for it. It never writes to stdout (at migrate and
// restore libvirt would take that as a replacement domain XML), never calls
// the libvirt API (libvirtd would deadlock) and never runs a shell.
package hook

import (
	"errors"
	"fmt"
	"io"
	"slices"

	"github.com/virtbridge/virtbridge/internal/config"
	"github.com/virtbridge/virtbridge/internal/engine"
	"github.com/virtbridge/virtbridge/internal/events"
	"github.com/virtbridge/virtbridge/internal/policy"
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
	// Engine builds the engine that acts on the event under cfg.
	Engine func(cfg *config.Config) *engine.Engine
}

// Run handles one hook call and returns the process exit code.
func Run(env Env) int {
	op := events.Op("")
	if len(env.Args) > 1 {
		op = events.Op(env.Args[1])
	}
	ev, err := events.ParseHook(env.Args, env.Stdin)
	if err != nil {
		return refuse(env, op, "", err)
	}
	events.ResolveNetworks(&ev, env.NetworkDirs)
	cfg, err := config.Load(env.ConfigPath)
	if err != nil {
		return refuse(env, op, ev.Domain, fmt.Errorf("%w\n(fix the config, then check it with `virtbridge check-config %s`)", err, env.ConfigPath))
	}
	res, err := env.Engine(cfg).Handle(ev)
	for _, w := range res.Warnings {
		fmt.Fprintf(env.Stderr, "virtbridge: domain %q (%s): warning: %v\n", ev.Domain, op, w)
	}
	if err == nil {
		return ExitOK
	}
	var re *engine.RefusedError
	hostFailure := errors.As(err, &re) && len(res.Desired.Errors) == 0 && res.Desired.Action == policy.ActionHost
	if cfg.OnFailure == "warn" && hostFailure {
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
