// Package apply makes the host match a desired.Desired: it drives the link,
// sysctl and firewall backends in one transaction per VM, undoing what it
// did when a step fails.
package apply

import (
	"context"

	"github.com/virtbridge/virtbridge/internal/change"
	"github.com/virtbridge/virtbridge/internal/desired"
	"github.com/virtbridge/virtbridge/internal/revert"
)

// Links creates and configures bridges, enslaves uplinks and moves the host
// addresses to the bridge, and keeps VM taps in their bridges. Every method
// is idempotent: it reads, compares and changes only the difference, pushes
// an undo step on rv for each change, and returns the changes made.
type Links interface {
	// EnsureBridge makes b exist with its settings and, when it has an
	// uplink, enslaves it (moving addresses and routes if asked).
	EnsureBridge(ctx context.Context, b desired.Bridge, rv *revert.Reverter) ([]change.Change, error)
	// EnsurePort puts the tap p.Tap into bridge p.Bridge and sets its
	// interface alias to alias.
	EnsurePort(ctx context.Context, p desired.Port, alias string, rv *revert.Reverter) ([]change.Change, error)
}

// Sysctls reads and writes kernel settings, writing only on difference.
type Sysctls interface {
	Ensure(ctx context.Context, s desired.Sysctl, rv *revert.Reverter) ([]change.Change, error)
}

// Firewall keeps virtbridge's own chain and jumps as fw says; the commands
// it runs end with ctx.
type Firewall interface {
	Ensure(ctx context.Context, fw desired.Firewall, rv *revert.Reverter) ([]change.Change, error)
}

// Owners hands a bridge over to the manager that owns its uplink
// (NetworkManager, systemd-networkd), in place of the kernel path
// (Links.EnsureBridge). It detects the owner itself.
type Owners interface {
	// EnsureBridge makes b its uplink owner's own bridge when a manager
	// owns the uplink (handled), pushing on rv the step that gives the
	// uplink back; with handled false (nobody's, or a case the owners
	// leave to the kernel path) it changed nothing. Idempotent.
	EnsureBridge(ctx context.Context, b desired.Bridge, rv *revert.Reverter) (cs []change.Change, handled bool, err error)
}

// Releaser gives a bridge's uplink back (`virtbridge release`): what the
// bridge carries moves back to the uplink, the uplink leaves the bridge,
// and the bridge goes unless other ports (kept, VM taps) are in it. The
// kernel path (links.Manager) and the owners (handoff.Owners, handled
// when a manager made the bridge) implement it.
type Releaser interface {
	ReleaseBridge(ctx context.Context, b desired.Bridge, rv *revert.Reverter) (cs []change.Change, kept []string, err error)
}
