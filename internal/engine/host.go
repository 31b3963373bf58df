package engine

import (
	"context"
	"errors"
	"fmt"

	"github.com/virtbridge/virtbridge/internal/apply"
	"github.com/virtbridge/virtbridge/internal/events"
	"github.com/virtbridge/virtbridge/internal/journal"
	"github.com/virtbridge/virtbridge/internal/policy"
)

// Ops journaled for host changes made for no VM.
const (
	// OpStart: virtbridged making the host right at start-up.
	OpStart = "start"
	// OpReload: virtbridged after `systemctl reload` (SIGHUP).
	OpReload = "reload"
	// OpApply: `virtbridge apply`.
	OpApply = "apply"
)

// EnsureHost makes the host match the configuration whatever VMs run:
// every managed bridge made at start (create: at_start) exists with its
// settings and its uplink enslaved (addresses and routes moved), and the
// sysctls and firewall are as configured, each as a VM's prepare would make
// them (policy.AtStart, applied like a prepare). It runs under the host
// lock and journals each change with op as the operation and e.Source as
// the source. One bridge's failure does not stop the others: errors are
// joined, and each failed bridge is left as it was. Idempotent: a host that
// matches changes nothing and journals nothing; with no bridge made at
// start it does not even take the lock.
func (e *Engine) EnsureHost(ctx context.Context, op string) (Result, error) {
	var r Result
	if len(policy.AtStart(e.Config)) == 0 {
		return r, nil
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
	return r, e.ensureHost(ctx, host, op, &r)
}

// ensureHost is EnsureHost with the lock held and the host open.
func (e *Engine) ensureHost(ctx context.Context, host *apply.Host, op string, r *Result) error {
	vm := journal.VM{Op: op, Source: string(e.source())}
	var errs []error
	for _, d := range policy.AtStart(e.Config) {
		changes, err := host.Apply(ctx, d, "")
		r.Changes = append(r.Changes, changes...)
		e.journalChanges(ctx, vm, changes, r)
		switch {
		case err != nil && len(d.Bridges) > 0:
			errs = append(errs, &BridgeError{Bridge: d.Bridges[0].Name, Err: err})
		case err != nil:
			errs = append(errs, fmt.Errorf("making the sysctls and firewall: %w", err))
		}
	}
	return errors.Join(errs...)
}

// BridgeError is the failure to make one managed bridge of the
// configuration right (EnsureHost); the others were still made.
type BridgeError struct {
	Bridge string
	Err    error
}

func (e *BridgeError) Error() string { return fmt.Sprintf("making bridge %q: %v", e.Bridge, e.Err) }
func (e *BridgeError) Unwrap() error { return e.Err }

// source is who drives the engine, for records of no VM.
func (e *Engine) source() events.Source {
	if e.Source == "" {
		return events.SourceEventd
	}
	return e.Source
}
