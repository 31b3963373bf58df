package apply

import (
	"context"
	"errors"
	"fmt"

	"github.com/virtbridge/virtbridge/internal/change"
	"github.com/virtbridge/virtbridge/internal/desired"
	"github.com/virtbridge/virtbridge/internal/revert"
)

// PortError is the failure of one port when ports are checked one by one
// (ActionPorts): the caller learns which ports did not get into their
// bridge.
type PortError struct {
	Port desired.Port
	Err  error
}

func (e *PortError) Error() string { return e.Err.Error() }
func (e *PortError) Unwrap() error { return e.Err }

// FailedPorts returns the ports of the PortErrors in err's tree whose error
// matches one of targets (errors.Is).
func FailedPorts(err error, targets ...error) []desired.Port {
	var out []desired.Port
	var walk func(error)
	walk = func(err error) {
		if pe, ok := err.(*PortError); ok {
			for _, target := range targets {
				if errors.Is(pe.Err, target) {
					out = append(out, pe.Port)
					break
				}
			}
			return
		}
		switch u := err.(type) {
		case interface{ Unwrap() []error }:
			for _, e := range u.Unwrap() {
				walk(e)
			}
		case interface{ Unwrap() error }:
			walk(u.Unwrap())
		}
	}
	walk(err)
	return out
}

// Host is the set of backends that change one host (or one network
// namespace).
type Host struct {
	Links    Links
	Sysctls  Sysctls
	Firewall Firewall // nil when the firewall backend is "none"
	// Owners hands a bridge to the manager owning its uplink; nil: the
	// kernel path (Links) makes every bridge.
	Owners Owners
}

// Apply makes the host match d, as its Action asks, in one transaction: if a
// step fails, every change this call made is undone and the error returned
// says what failed (and what could not be undone, if anything). alias names
// the VM for each port's interface alias. At ActionPorts each port is a
// transaction of its own (ApplyPorts): the changes kept for the ports that
// succeeded are returned with the error, which joins one *PortError per
// failed port. Apply is idempotent: on a host that already matches, it
// changes nothing and returns no changes. The backends' waits (iptables)
// end with ctx; undoing a failed transaction is not cut short by a cancel.
func (h *Host) Apply(ctx context.Context, d desired.Desired, alias string) ([]change.Change, error) {
	if d.Action == desired.ActionPorts {
		var changes []change.Change
		var errs []error
		for _, pr := range h.ApplyPorts(ctx, d, alias) {
			changes = append(changes, pr.Changes...)
			if pr.Err != nil {
				errs = append(errs, &PortError{Port: pr.Port, Err: pr.Err})
			}
		}
		return changes, errors.Join(errs...)
	}
	var rv revert.Reverter
	var changes []change.Change
	step := func(cs []change.Change, err error) error {
		changes = append(changes, cs...)
		return err
	}
	if err := h.applyHost(ctx, d, alias, &rv, step); err != nil {
		return nil, withUndo(err, rv.Fail())
	}
	rv.Success()
	return changes, nil
}

// PortResult is what ApplyPorts did for one port: the changes it made and
// kept, or why the port is not right (Err, which also says what could not
// be undone of this port's changes).
type PortResult struct {
	Port    desired.Port
	Changes []change.Change // nil when Err is set: they were undone
	Err     error
}

// ApplyPorts checks and fixes each port of d that has a tap on its own (the
// taps exist; libvirt put them in their bridges): one broken tap must not
// keep the others from being checked, nor undo what was done for them. It
// returns one result per port with a tap, in d's order. Idempotent.
func (h *Host) ApplyPorts(ctx context.Context, d desired.Desired, alias string) []PortResult {
	var out []PortResult
	for _, p := range d.Ports {
		if p.Tap == "" {
			continue
		}
		var rv revert.Reverter
		cs, err := h.Links.EnsurePort(ctx, p, alias, &rv)
		if err != nil {
			out = append(out, PortResult{Port: p, Err: withUndo(err, rv.Fail())})
			continue
		}
		rv.Success()
		out = append(out, PortResult{Port: p, Changes: cs})
	}
	return out
}

// withUndo adds to err that undoing the changes failed too, when it did.
func withUndo(err, undoErr error) error {
	if undoErr == nil {
		return err
	}
	return fmt.Errorf("%w (and undoing the changes made so far failed too: %v; the host may need a manual look)", err, undoErr)
}

func (h *Host) applyHost(ctx context.Context, d desired.Desired, alias string, rv *revert.Reverter, step func([]change.Change, error) error) error {
	if d.Action != desired.ActionHost {
		return nil
	}
	for _, b := range d.Bridges {
		if err := step(h.ensureBridge(ctx, b, rv)); err != nil {
			return err
		}
	}
	for _, s := range d.Sysctls {
		if err := step(h.Sysctls.Ensure(ctx, s, rv)); err != nil {
			return err
		}
	}
	if d.Firewall != nil && h.Firewall != nil {
		if err := step(h.Firewall.Ensure(ctx, *d.Firewall, rv)); err != nil {
			return err
		}
	}
	// At reconnect and hot-plug the taps already exist; at prepare a
	// NIC's <target dev> names a tap libvirt has not made yet.
	for _, p := range d.Ports {
		if p.Tap != "" && d.TapsExist() {
			if err := step(h.Links.EnsurePort(ctx, p, alias, rv)); err != nil {
				return err
			}
		}
	}
	return nil
}

// ensureBridge makes bridge b through the manager owning its uplink, or
// the kernel path when nobody does.
func (h *Host) ensureBridge(ctx context.Context, b desired.Bridge, rv *revert.Reverter) ([]change.Change, error) {
	if h.Owners != nil {
		cs, handled, err := h.Owners.EnsureBridge(ctx, b, rv)
		if handled || err != nil {
			return cs, err
		}
	}
	return h.Links.EnsureBridge(ctx, b, rv)
}
