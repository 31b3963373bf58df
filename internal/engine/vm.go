package engine

import (
	"context"
	"errors"
	"slices"
	"strings"

	"github.com/virtbridge/virtbridge/internal/apply"
	"github.com/virtbridge/virtbridge/internal/change"
	"github.com/virtbridge/virtbridge/internal/desired"
	"github.com/virtbridge/virtbridge/internal/events"
	"github.com/virtbridge/virtbridge/internal/journal"
	"github.com/virtbridge/virtbridge/internal/links"
	"github.com/virtbridge/virtbridge/internal/lock"
	"github.com/virtbridge/virtbridge/internal/policy"
)

// PolicyError is a VM operation refused because of the VM's own
// configuration or XML (a NIC the policy forbids, a bridge that is no
// bridge, a <target dev> naming a host link): nothing was changed. It is
// journaled. on_failure: warn does not apply to it.
type PolicyError struct{ Err error }

func (e *PolicyError) Error() string { return e.Err.Error() }
func (e *PolicyError) Unwrap() error { return e.Err }

// HostError is a VM operation the host could not be made right for (a
// backend failed, an uplink is missing, a tap is not the NIC's): what the
// failed step changed was rolled back. It is journaled. With on_failure:
// warn the hook lets the VM go on without it.
type HostError struct{ Err error }

func (e *HostError) Error() string { return e.Err.Error() }
func (e *HostError) Unwrap() error { return e.Err }

// pass is the host as one Handle or Reconcile sees it: the host lock,
// taken on first need (a Reconcile takes it at once, for the whole pass),
// the backends and the mapping store, opened on first use. finish saves
// the store and releases the rest.
type pass struct {
	e         *Engine
	lock      *lock.Lock
	host      *apply.Host
	closeHost func()
	m         *mapping
}

// acquire takes the host lock, if the pass does not hold it yet.
func (p *pass) acquire(ctx context.Context) error {
	if p.lock != nil {
		return nil
	}
	l, err := p.e.lock(ctx)
	if err != nil {
		return err
	}
	p.lock = l
	return nil
}

// lock takes the host lock, waiting until ctx ends, and at most LockWait.
func (e *Engine) lock(ctx context.Context) (*lock.Lock, error) {
	if e.LockWait > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, e.LockWait)
		defer cancel()
	}
	return lock.AcquireUntil(ctx, e.LockPath)
}

// backends opens the backends once per pass; the lock must be held.
func (p *pass) backends() (*apply.Host, error) {
	if p.host == nil {
		h, closeHost, err := p.e.OpenHost()
		if err != nil {
			return nil, err
		}
		p.host, p.closeHost = h, closeHost
	}
	return p.host, nil
}

// store loads the mapping store once per pass (openStore: caught up from
// the journal if a save failed); the lock must be held. A nil mapping is
// an error; otherwise err holds the warnings of the first load.
func (p *pass) store(ctx context.Context) (*mapping, error) {
	if p.m != nil {
		return p.m, nil
	}
	m, err := p.e.openStore(ctx)
	p.m = m
	return m, err
}

// finish saves the store if the pass loaded it (saveStore), closes the
// backends and releases the lock. It returns the save's error.
func (p *pass) finish() error {
	var err error
	if p.m != nil {
		err = p.e.saveStore(p.m)
	}
	if p.closeHost != nil {
		p.closeHost()
	}
	if p.lock != nil {
		p.lock.Release()
	}
	return err
}

// handleVM is the one path of a VM's event, for Handle (the hook's and the
// daemon's events) and for each running VM of a Reconcile: the policy
// decides, with the refusals that read the host (refusals); a refusal is a
// *PolicyError, journaled, and changes nothing. Otherwise, under the
// pass's lock, the host is made right for the VM (applyVM: a host failure
// is a *HostError, rolled back and journaled) and the mapping store and
// journal record the VM's ports (record). Where the taps exist, each port
// is checked on its own, the same at started as at reconnect or reconcile:
// a tap that is missing (the VM is going away) or is no tap of the NIC is
// not recorded, and the VM's other ports are. Such a port is a warning
// where the VM runs already (started, and a missing tap anywhere) and an
// error where the host must be ready for the VM (reconnect, reconcile,
// attach, a hot-plug).
func (e *Engine) handleVM(ctx context.Context, ev events.Event, p *pass) (Result, error) {
	r := Result{Desired: policy.Decide(e.Config, ev)}
	r.Desired.Errors = append(r.Desired.Errors, e.refusals(ev, r.Desired)...)
	d := r.Desired
	vm := vmOf(ev)
	if len(d.Errors) > 0 {
		err := &PolicyError{Err: errors.New(strings.Join(d.Errors, "; "))}
		r.warn(e.Journal.Refused(ctx, vm, err.Error()))
		return r, err
	}
	gone := ev.Op.Ends() || ev.Op == events.OpDeviceRemoved
	if d.Action == desired.ActionNone && !gone {
		return r, nil
	}
	if gone && p.lock == nil && !e.storeHolds(ev.UUID) {
		return r, nil // nothing of this VM was recorded: nothing to detach
	}
	if err := p.acquire(ctx); err != nil {
		return r, err
	}
	var ports portFailures
	if d.Action == desired.ActionHost || d.Action == desired.ActionPorts {
		var err error
		if ports, err = e.applyVM(ctx, ev, vm, p, &r); err != nil {
			return r, err
		}
		// After start the taps exist whatever happened: record them even
		// if one could not be checked — except a tap that does not exist
		// (the VM is gone: the daemon read its started event just before
		// it was destroyed, and its stopped call has detached it) and a
		// link that is not the NIC's tap (another VM's, the host's): those
		// map nothing of this VM, and recording them would attach a
		// stopped VM again or name the wrong owner.
		if d.Ports = withoutPorts(d.Ports, ports.drop); len(ports.drop) > 0 && len(d.Ports) == 0 {
			return r, ports.verdict(ev.Op, &r)
		}
	}
	r.warn(e.record(ctx, ev, vm, d, p))
	return r, ports.verdict(ev.Op, &r)
}

// refusals are the policy's checks that read the host (read-only): at the
// ops that make the host ready, an unmanaged bridge that is a host link
// of another kind (notBridges); before the taps exist, a <target dev>
// naming an existing link (takenTaps).
func (e *Engine) refusals(ev events.Event, d desired.Desired) []string {
	var errs []string
	if ev.Op.NeedsHost() {
		errs = append(errs, e.notBridges(d.Skipped)...)
	}
	if ev.Op.BeforeTaps() {
		errs = append(errs, e.takenTaps(ev.NICs, d.Ports)...)
	}
	return errs
}

// portFailures are the failures of a VM's ports checked one by one.
type portFailures struct {
	err  error          // one *apply.PortError per failed port, joined; nil if none
	drop []desired.Port // the ports not to record: their tap is missing or is no tap of the NIC
	// missingOnly: every failed port's tap is missing (the VM is going
	// away; its stopped event follows).
	missingOnly bool
}

// verdict turns the ports' failures into handleVM's answer: warnings at
// started (the VM runs; libvirt made its taps) and when only taps are
// missing, a *HostError where the host must be ready for the VM.
func (f portFailures) verdict(op events.Op, r *Result) error {
	if f.err == nil {
		return nil
	}
	if op == events.OpStarted || f.missingOnly {
		r.warn(f.err)
		return nil
	}
	return &HostError{Err: f.err}
}

// applyVM makes the host right for the VM: at ActionHost its bridges,
// uplinks, sysctls and firewall in one transaction (a failure is a
// *HostError: rolled back, journaled as a refusal); then, where the taps
// exist (started, reconnect, reconcile, a hot-plug), each port on its own
// (apply.ApplyPorts): the changes made for the ports that are right are
// kept and journaled, and the others' failures, journaled as a refusal,
// come back as portFailures.
func (e *Engine) applyVM(ctx context.Context, ev events.Event, vm journal.VM, p *pass, r *Result) (portFailures, error) {
	var f portFailures
	host, err := p.backends()
	if err != nil {
		return f, err
	}
	alias := journal.Alias(ev.Domain, ev.UUID)
	d := r.Desired
	if d.Action == desired.ActionHost {
		hd := d
		hd.Ports = nil // checked one by one below, where the taps exist
		changes, err := host.Apply(ctx, hd, alias)
		r.Changes = append(r.Changes, changes...)
		e.journalChanges(ctx, vm, changes, r)
		if err != nil {
			err = &HostError{Err: e.withConfigPath(err)}
			r.warn(e.Journal.Refused(ctx, vm, err.Error()))
			return f, err
		}
		if !d.TapsExist() {
			return f, nil
		}
	}
	var changes []change.Change
	var errs []error
	f.missingOnly = true
	for _, pr := range host.ApplyPorts(ctx, d, alias) {
		changes = append(changes, pr.Changes...)
		if pr.Err == nil {
			continue
		}
		errs = append(errs, &apply.PortError{Port: pr.Port, Err: e.withConfigPath(pr.Err)})
		if errors.Is(pr.Err, links.ErrTapMissing) || errors.Is(pr.Err, links.ErrNotTap) {
			f.drop = append(f.drop, pr.Port)
		}
		f.missingOnly = f.missingOnly && errors.Is(pr.Err, links.ErrTapMissing)
	}
	r.Changes = append(r.Changes, changes...)
	r.warn(e.Journal.HostChanges(ctx, vm, changes))
	if f.err = errors.Join(errs...); f.err != nil {
		r.warn(e.Journal.Refused(ctx, vm, f.err.Error()))
	}
	return f, nil
}

// Retryable returns err without its refusals, anywhere in an errors.Join
// tree: what a retry could change. A refusal is a policy refusal
// (*PolicyError) or one of the links backend's refusals that stay until
// the host or the configuration changes (refusals); it is journaled, and
// asking again gives the same answer until the configuration, the VM or
// the links change, each of which brings its own pass. Nil when nothing
// else is left.
func Retryable(err error) error {
	if err == nil || refused(err) {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var keep []error
		for _, e := range j.Unwrap() {
			if e = Retryable(e); e != nil {
				keep = append(keep, e)
			}
		}
		return errors.Join(keep...)
	}
	return err
}

// refusals are the links backend's refusals that stay until the host or
// the configuration changes; a missing uplink (not renamed by udev yet),
// a gateway that did not answer after a handoff, netlink or D-Bus
// failures may pass.
var refusals = []error{links.ErrNotBridge, links.ErrUplinkAmbiguous, links.ErrUplinkBusy,
	links.ErrUplinkWireless, links.ErrUnmovable, links.ErrDynamicAddress}

// refused reports whether every part of err, down its wrapping and its
// joins, is a refusal: a *PolicyError or one of refusals.
func refused(err error) bool {
	if err == nil {
		return false
	}
	if _, ok := err.(*PolicyError); ok || slices.Contains(refusals, err) {
		return true
	}
	switch u := err.(type) {
	case interface{ Unwrap() []error }:
		es := u.Unwrap()
		for _, e := range es {
			if !refused(e) {
				return false
			}
		}
		return len(es) > 0
	case interface{ Unwrap() error }:
		return refused(u.Unwrap())
	}
	return false
}
