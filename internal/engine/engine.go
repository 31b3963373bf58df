// Package engine is the one path from an event to the host: policy decides,
// apply changes the host under the host lock, the mapping store and the
// journal record it. The hook and the event daemon both go through it.
package engine

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/virtbridge/virtbridge/internal/apply"
	"github.com/virtbridge/virtbridge/internal/change"
	"github.com/virtbridge/virtbridge/internal/config"
	"github.com/virtbridge/virtbridge/internal/events"
	"github.com/virtbridge/virtbridge/internal/journal"
	"github.com/virtbridge/virtbridge/internal/links"
	"github.com/virtbridge/virtbridge/internal/lock"
	"github.com/virtbridge/virtbridge/internal/policy"
	"github.com/virtbridge/virtbridge/internal/store"
)

// Engine handles events for one host.
type Engine struct {
	Config    *config.Config
	Journal   *journal.Writer
	StorePath string
	LockPath  string
	LockWait  time.Duration
	// Stop, when closed, ends a wait for the host lock early: a daemon
	// that shuts down does not wait LockWait for a hook. Nil never does.
	Stop <-chan struct{}
	// OpenHost opens the backends; called only when the host must change,
	// with the lock held. The returned func closes them.
	OpenHost func() (*apply.Host, func(), error)
	// LinkKind returns the kind of the host link called name ("bridge",
	// "veth", "device" for a NIC, ...), "" when there is none. Read-only;
	// called once per unmanaged bridge a VM names, at the ops that make
	// the host ready. Nil skips that check.
	LinkKind func(name string) (string, error)
}

// RefusedError is a VM operation the policy or the host refused.
type RefusedError struct{ Err error }

func (e *RefusedError) Error() string { return e.Err.Error() }
func (e *RefusedError) Unwrap() error { return e.Err }

// Result is what Handle did.
type Result struct {
	Desired policy.Desired
	Changes []change.Change
	// Warnings are problems that did not fail the event: journal or store
	// trouble, a tap that could not be checked after start.
	Warnings []error
}

// Handle makes the host right for ev and records what changed. A refusal
// (a NIC the policy forbids, a host that cannot be made right) is a
// *RefusedError, journaled; the host is left as it was. Handle is
// idempotent: the same event twice changes nothing the second time.
func (e *Engine) Handle(ev events.Event) (Result, error) {
	r := Result{Desired: policy.Decide(e.Config, ev)}
	if ev.Op.NeedsHost() {
		r.Desired.Errors = append(r.Desired.Errors, e.notBridges(r.Desired.Skipped)...)
	}
	if ev.Op.BeforeTaps() {
		r.Desired.Errors = append(r.Desired.Errors, e.takenTaps(ev.NICs, r.Desired.Ports)...)
	}
	d := r.Desired
	vm := journal.VMOf(ev)
	if len(d.Errors) > 0 {
		err := &RefusedError{Err: errors.New(strings.Join(d.Errors, "; "))}
		r.warn(e.Journal.Refused(vm, err.Error()))
		return r, err
	}
	gone := ev.Op.Ends() || ev.Op == events.OpDeviceRemoved
	if d.Action == policy.ActionNone && !gone {
		return r, nil
	}
	if gone && !e.storeHolds(ev.UUID) {
		return r, nil // nothing of this VM was recorded: nothing to detach
	}
	l, err := lock.AcquireUntil(e.LockPath, e.LockWait, e.Stop)
	if err != nil {
		return r, err
	}
	defer l.Release()
	if d.Action == policy.ActionHost || d.Action == policy.ActionPorts {
		err := e.applyHost(ev, vm, &r)
		if err != nil && d.Action == policy.ActionHost {
			return r, err
		}
		// After start the taps exist whatever happened: record them even
		// if one could not be checked — except a tap that does not exist
		// (the VM is gone: the daemon read its started event just before
		// it was destroyed, and its stopped call has detached it) and a
		// link that is not the NIC's tap (another VM's, the host's): those
		// map nothing of this VM, and recording them would attach a
		// stopped VM again or name the wrong owner.
		r.warn(err)
		failed := apply.FailedPorts(err, links.ErrTapMissing, links.ErrNotTap)
		if d.Ports = withoutPorts(d.Ports, failed); len(failed) > 0 && len(d.Ports) == 0 {
			return r, nil
		}
	}
	r.warn(e.record(ev, vm, d))
	return r, nil
}

// withoutPorts returns ports less those in drop (by MAC), in a new slice.
func withoutPorts(ports, drop []policy.Port) []policy.Port {
	if len(drop) == 0 {
		return ports
	}
	out := make([]policy.Port, 0, len(ports))
	for _, p := range ports {
		if !slices.ContainsFunc(drop, func(d policy.Port) bool { return d.MAC == p.MAC }) {
			out = append(out, p)
		}
	}
	return out
}

// notBridges refuses NICs on unmanaged bridges whose name is a host link
// of another kind: a VM naming eth0, the default-route NIC or a veth as
// its bridge is told so at once, instead of libvirt failing later or the
// tap joining something that is no bridge. It changes nothing, and costs
// nothing when every NIC is on a managed bridge.
func (e *Engine) notBridges(skipped []policy.Skipped) []string {
	if e.LinkKind == nil {
		return nil
	}
	var errs []string
	kinds := map[string]string{}
	for _, s := range skipped {
		if s.Unmanaged == "" {
			continue
		}
		kind, seen := kinds[s.Unmanaged]
		if !seen {
			var err error
			if kind, err = e.LinkKind(s.Unmanaged); err != nil {
				errs = append(errs, fmt.Sprintf("NIC %s: checking what %q is on this host: %v", s.MAC, s.Unmanaged, err))
				continue
			}
			kinds[s.Unmanaged] = kind
		}
		if kind != "" && kind != "bridge" {
			errs = append(errs, fmt.Sprintf("NIC %s names %q as its bridge, but %s is a %s on this host, not a bridge; "+
				"point the NIC at a bridge (the managed ones are under bridges: in %s)", s.MAC, s.Unmanaged, s.Unmanaged, links.KindText(kind), e.Config.Path))
		}
	}
	return errs
}

// takenTaps refuses, before the taps exist (Op.BeforeTaps), a NIC on a
// managed bridge whose <target dev> names a link the host already has:
// libvirt would refuse to start the VM on it, and it is never this VM's
// tap (eth0, a container's veth, a VPN's tap0). Read-only.
func (e *Engine) takenTaps(nics []events.NIC, ports []policy.Port) []string {
	if e.LinkKind == nil {
		return nil
	}
	var errs []string
	for _, n := range nics {
		if n.Tap == "" || !slices.ContainsFunc(ports, func(p policy.Port) bool { return p.MAC == n.MAC }) {
			continue
		}
		kind, err := e.LinkKind(n.Tap)
		switch {
		case err != nil:
			errs = append(errs, fmt.Sprintf("NIC %s: checking whether %q exists on this host: %v", n.MAC, n.Tap, err))
		case kind != "":
			errs = append(errs, fmt.Sprintf("NIC %s names <target dev='%s'/>, but %s already exists on this host (a %s), "+
				"so it cannot be the tap libvirt makes for this VM and is left alone; remove the <target> element "+
				"and let libvirt name the tap", n.MAC, n.Tap, n.Tap, links.KindText(kind)))
		}
	}
	return errs
}

// storeHolds reports whether the store has entries of the VM, reading it
// without the lock: the hook's stop path stays cheap for unmanaged VMs.
func (e *Engine) storeHolds(uuid string) bool {
	s, err := store.Read(e.StorePath)
	if err != nil {
		return true // let the locked path load, recover and report it
	}
	return len(s.ByVM(uuid)) > 0
}

func (e *Engine) applyHost(ev events.Event, vm journal.VM, r *Result) error {
	host, closeHost, err := e.OpenHost()
	if err != nil {
		return err
	}
	defer closeHost()
	changes, err := host.Apply(r.Desired, journal.Alias(ev.Domain, ev.UUID))
	r.Changes = changes
	r.warn(e.Journal.HostChanges(vm, changes))
	// Changes to a bridge someone else made are said where the operator
	// looks (the hook's stderr, which virsh start shows; the daemon's log),
	// not only in the journal.
	for _, c := range changes {
		if c.Kind == change.ForeignBridge {
			r.warn(errors.New(c.After))
		}
	}
	if err != nil {
		err = &RefusedError{Err: err}
		r.warn(e.Journal.Refused(vm, err.Error()))
		return err
	}
	return nil
}

// record brings the mapping store in line with the event and journals the
// difference: ports with a tap are attached; at stop every port of the VM
// is detached; after an unplug, the VM's ports whose MAC left its live XML.
func (e *Engine) record(ev events.Event, vm journal.VM, d policy.Desired) error {
	s, err := journal.OpenStore(e.Journal, e.StorePath)
	if s == nil {
		return fmt.Errorf("loading the mapping store: %w", err)
	}
	errs := []error{err}
	switch {
	case ev.Op.Ends():
		errs = append(errs, journal.DetachVM(e.Journal, s, vm))
	case ev.Op == events.OpDeviceRemoved:
		present := map[string]bool{}
		for _, n := range ev.NICs {
			present[n.MAC] = true
		}
		var gone []string
		for _, x := range s.ByVM(ev.UUID) {
			if !present[x.MAC] {
				gone = append(gone, x.MAC)
			}
		}
		errs = append(errs, journal.DetachNICs(e.Journal, s, vm, gone))
	default:
		errs = append(errs, journal.AttachPorts(e.Journal, s, vm, d.Ports, time.Now().UTC()))
	}
	if err := s.Save(); err != nil {
		errs = append(errs, fmt.Errorf("saving the mapping store: %w", err))
	}
	return errors.Join(errs...)
}

func (r *Result) warn(err error) {
	if err != nil {
		r.Warnings = append(r.Warnings, err)
	}
}
