package engine

import (
	"context"
	"errors"
	"fmt"

	"github.com/virtbridge/virtbridge/internal/apply"
	"github.com/virtbridge/virtbridge/internal/change"
	"github.com/virtbridge/virtbridge/internal/desired"
	"github.com/virtbridge/virtbridge/internal/journal"
	"github.com/virtbridge/virtbridge/internal/policy"
	"github.com/virtbridge/virtbridge/internal/revert"
)

// OpRelease: `virtbridge release`.
const OpRelease = "release"

// ReleaseResult is what Release did.
type ReleaseResult struct {
	Changes []change.Change
	// Kept are the ports (VM taps) still in the bridge, which therefore
	// stays; none when the bridge was deleted.
	Kept []string
	// InConfig: the configuration still declares the bridge, so the
	// daemon or the next VM start on it makes it again.
	InConfig bool
	// AtStart: it is declared without create: on_demand, so virtbridged
	// makes it again at once (at start, on drift, on reload).
	AtStart bool
}

// OwnerReleaser is the owners' side of a release: handled when a manager
// (NetworkManager, systemd-networkd) made bridge b, which then gives the
// uplink back to its own configuration.
type OwnerReleaser interface {
	ReleaseBridge(ctx context.Context, b desired.Bridge, rv *revert.Reverter) (cs []change.Change, kept []string, handled bool, err error)
}

// Release gives bridge name's uplink back (`virtbridge release`): through
// the manager that made the bridge when one did, else the kernel path
// moves what the bridge carries back to the uplink and takes it out; the
// bridge is deleted unless a VM tap is still in it. Under the host lock;
// every change is journaled with op release. On failure the changes made
// are undone. The uplink is the configuration's when it declares the
// bridge, else the bridge's one port that is no tap.
func (e *Engine) Release(ctx context.Context, name string) (ReleaseResult, error) {
	var r ReleaseResult
	b := desired.Bridge{Name: name}
	if cb, ok := e.Config.Bridge(name); ok {
		b, r.InConfig, r.AtStart = policy.Bridge(cb), true, cb.AtStart()
	}
	l, err := e.lock(ctx)
	if err != nil {
		return r, err
	}
	defer l.Release()
	host, closeHost, err := e.OpenHost()
	if err != nil {
		return r, err
	}
	defer closeHost()
	var rv revert.Reverter
	r.Changes, r.Kept, err = release(ctx, host, b, &rv)
	if err != nil {
		if uerr := rv.Fail(); uerr != nil {
			err = fmt.Errorf("%w; undoing the changes made failed too: %v", err, uerr)
		}
		return ReleaseResult{InConfig: r.InConfig, AtStart: r.AtStart}, err
	}
	rv.Success()
	vm := journal.VM{Op: OpRelease, Source: string(e.source())}
	return r, e.Journal.HostChanges(ctx, vm, r.Changes)
}

// release asks the owners, then the kernel path.
func release(ctx context.Context, host *apply.Host, b desired.Bridge, rv *revert.Reverter) ([]change.Change, []string, error) {
	if o, ok := host.Owners.(OwnerReleaser); ok && host.Owners != nil {
		cs, kept, handled, err := o.ReleaseBridge(ctx, b, rv)
		if handled || err != nil {
			return cs, kept, err
		}
	}
	k, ok := host.Links.(apply.Releaser)
	if !ok {
		return nil, nil, errors.New("releasing bridge " + b.Name + ": the link backend cannot release bridges")
	}
	return k.ReleaseBridge(ctx, b, rv)
}
