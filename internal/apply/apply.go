package apply

import (
	"errors"
	"fmt"

	"github.com/virtbridge/virtbridge/internal/change"
	"github.com/virtbridge/virtbridge/internal/policy"
	"github.com/virtbridge/virtbridge/internal/revert"
)

// PortError is the failure of one port when ports are checked one by one
// (ActionPorts): the caller learns which ports did not get into their
// bridge.
type PortError struct {
	Port policy.Port
	Err  error
}

func (e *PortError) Error() string { return e.Err.Error() }
func (e *PortError) Unwrap() error { return e.Err }

// FailedPorts returns the ports of the PortErrors in err's tree whose error
// matches one of targets (errors.Is).
func FailedPorts(err error, targets ...error) []policy.Port {
	var out []policy.Port
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
}

// Apply makes the host match d, as its Action asks, in one transaction: if a
// step fails, every change this call made is undone and the error returned
// says what failed (and what could not be undone, if anything). alias names
// the VM for each port's interface alias. Apply is idempotent: on a host
// that already matches, it changes nothing and returns no changes.
func (h *Host) Apply(d policy.Desired, alias string) ([]change.Change, error) {
	var rv revert.Reverter
	var changes []change.Change
	step := func(cs []change.Change, err error) error {
		changes = append(changes, cs...)
		return err
	}
	err := h.apply(d, alias, &rv, step)
	if err != nil {
		if rerr := rv.Fail(); rerr != nil {
			err = fmt.Errorf("%w (and undoing the changes made so far failed too: %v; the host may need a manual look)", err, rerr)
		}
		return nil, err
	}
	rv.Success()
	return changes, nil
}

func (h *Host) apply(d policy.Desired, alias string, rv *revert.Reverter, step func([]change.Change, error) error) error {
	switch d.Action {
	case policy.ActionHost:
		for _, b := range d.Bridges {
			if err := step(h.Links.EnsureBridge(b, rv)); err != nil {
				return err
			}
		}
		for _, s := range d.Sysctls {
			if err := step(h.Sysctls.Ensure(s, rv)); err != nil {
				return err
			}
		}
		if d.Firewall != nil && h.Firewall != nil {
			if err := step(h.Firewall.Ensure(*d.Firewall, rv)); err != nil {
				return err
			}
		}
		// At reconnect and hot-plug the taps already exist; at prepare a
		// NIC's <target dev> names a tap libvirt has not made yet.
		for _, p := range d.Ports {
			if p.Tap != "" && d.TapsExist() {
				if err := step(h.Links.EnsurePort(p, alias, rv)); err != nil {
					return err
				}
			}
		}
		return nil
	case policy.ActionPorts:
		// The taps exist; libvirt put them in their bridges. Each port is
		// checked and fixed on its own: one broken tap must not keep the
		// others from being checked.
		var errs []error
		for _, p := range d.Ports {
			if p.Tap == "" {
				continue
			}
			var prv revert.Reverter
			if err := step(h.Links.EnsurePort(p, alias, &prv)); err != nil {
				errs = append(errs, &PortError{Port: p, Err: err})
				prv.Fail()
			}
		}
		return errors.Join(errs...)
	}
	return nil
}
