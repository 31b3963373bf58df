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
	"strings"
	"time"

	"github.com/virtbridge/virtbridge/internal/apply"
	"github.com/virtbridge/virtbridge/internal/config"
	"github.com/virtbridge/virtbridge/internal/events"
	"github.com/virtbridge/virtbridge/internal/lock"
	"github.com/virtbridge/virtbridge/internal/policy"
)

// Exit codes. libvirt aborts the operation on any non-zero exit where the op
// allows it.
const (
	ExitOK      = 0
	ExitRefused = 1 // the VM operation is refused: bad input, config, or a host that cannot be made right
)

// LockWait bounds how long the hook waits for the host lock.
const LockWait = 20 * time.Second

// Env is what the hook needs from its process: I/O and the way to reach
// the host. Tests fill it in; cmd/hook fills it with the real things.
type Env struct {
	Args       []string // argv without the program name
	Stdin      io.Reader
	Stderr     io.Writer
	ConfigPath string
	LockPath   string
	// Host opens the backends for cfg. Nil means the hook only decides.
	Host func(cfg *config.Config) (*apply.Host, func(), error)
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
	cfg, err := config.Load(env.ConfigPath)
	if err != nil {
		return refuse(env, op, ev.Domain, fmt.Errorf("%w\n(fix the config, then check it with `virtbridge check-config %s`)", err, env.ConfigPath))
	}
	d := policy.Decide(cfg, ev)
	if len(d.Errors) > 0 {
		return refuse(env, op, ev.Domain, errors.New(strings.Join(d.Errors, "; ")))
	}
	if d.Action == policy.ActionNone || env.Host == nil {
		return ExitOK
	}
	if err := applyDesired(env, cfg, d); err != nil {
		if cfg.OnFailure == "warn" && d.Action == policy.ActionHost {
			fmt.Fprintf(env.Stderr, "virtbridge: warning (on_failure: warn, domain %q starts anyway): %v\n", ev.Domain, err)
			return ExitOK
		}
		return refuse(env, op, ev.Domain, err)
	}
	return ExitOK
}

func applyDesired(env Env, cfg *config.Config, d policy.Desired) error {
	l, err := lock.Acquire(env.LockPath, LockWait)
	if err != nil {
		return err
	}
	defer l.Release()
	host, closeHost, err := env.Host(cfg)
	if err != nil {
		return err
	}
	defer closeHost()
	_, err = host.Apply(d, Alias(d.Domain, d.UUID))
	return err
}

// Alias is the interface alias given to a VM's taps, so `ip link show vnet3`
// names the VM.
func Alias(domain, uuid string) string {
	a := "vm:" + domain
	if uuid != "" {
		a += " uuid:" + uuid
	}
	if len(a) > 128 {
		a = a[:128]
	}
	return a
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
	unknownOp := errors.As(err, &ie) && !isHookOp(op)
	if op.MayFail() || unknownOp {
		fmt.Fprintf(env.Stderr, "%s: refused: %v\n", what, err)
		return ExitRefused
	}
	fmt.Fprintf(env.Stderr, "%s: %v (not failing the %s operation: libvirt cannot act on a failure here)\n", what, err, orUnknown(op))
	return ExitOK
}

func isHookOp(op events.Op) bool {
	for _, o := range events.HookOps {
		if o == op {
			return true
		}
	}
	return false
}

func orUnknown(op events.Op) string {
	if op == "" {
		return "unknown"
	}
	return string(op)
}
