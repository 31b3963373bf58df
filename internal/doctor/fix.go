package doctor

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/virtbridge/virtbridge/internal/change"
	"github.com/virtbridge/virtbridge/internal/config"
	"github.com/virtbridge/virtbridge/internal/engine"
	"github.com/virtbridge/virtbridge/internal/events"
)

// Engine is what Fix drives; *engine.Engine is one (engine.ForHost for
// the host: same backends, lock, store and journal as the hook).
type Engine interface {
	EnsureHost(ctx context.Context, op string) (engine.Result, error)
	Handle(ctx context.Context, ev events.Event) (engine.Result, error)
	Reconcile(ctx context.Context, running []events.Event, listed time.Time) (engine.Result, error)
}

var _ Engine = (*engine.Engine)(nil)

// FixResult is what Fix changed and what it could not fix.
type FixResult struct {
	Changes []change.Change `json:"changes"`
	// Errors are the engine's errors and warnings, as it said them.
	Errors []string `json:"errors"`
	// NotFixed is what Fix could not fix, why, and what to do first;
	// Report.AfterFix completes it from the report made after the fix.
	NotFixed []NotFixed `json:"not_fixed"`
	// Warnings are the engine's warnings (also in Errors).
	Warnings []string `json:"warnings"`
}

// NotFixed is one thing Fix could not fix.
type NotFixed struct {
	// Object is what was not fixed: "bridge br0", "running VMs", or a
	// finding's check and object.
	Object string `json:"object"`
	Reason string `json:"reason"`
	// Fix is what to do, when known.
	Fix string `json:"fix,omitempty"`
}

// Fix applies the fixes virtbridge owns, through the engine, so that each
// runs under the host lock, in one transaction, and is journaled:
//
//   - what `virtbridge apply` and virtbridged at start do
//     (engine.EnsureHost): every bridge made at start (create: at_start)
//     with its settings and enslaved uplink (addresses and routes moved),
//     the sysctls and the firewall rules of the config, each as at a VM's
//     prepare;
//   - each bridge made on demand (create: on_demand) that exists (exists
//     says so; nil: none does) is made right the same way, through a
//     prepare-like event of op reconcile from the CLI with one NIC on the
//     bridge and no tap; one that does not exist is left for the first VM
//     on it, as the configuration asks;
//   - when running is not nil (libvirt answered), the daemon's reconcile
//     over the running VMs: taps put back into their bridges, the mapping
//     store brought in line (entries of VMs gone journaled as detached).
//
// One bridge's failure does not stop the others; errors are collected.
// Idempotent: on a host that is right it changes nothing.
//
// listed is when running was read from libvirt: entries the store gained
// after it (a VM started meanwhile) are not judged by it. The engine's
// waits (the host lock, commands, journald) end with ctx.
func Fix(ctx context.Context, e Engine, cfg *config.Config, exists func(name string) bool, running []events.Event, listed time.Time) FixResult {
	res := FixResult{Changes: []change.Change{}, Errors: []string{}, NotFixed: []NotFixed{}, Warnings: []string{}}
	r, err := e.EnsureHost(ctx, engine.OpApply)
	res.add(r, nil, "")
	for _, err := range flatten(err) {
		if be := (*engine.BridgeError)(nil); errors.As(err, &be) {
			res.add(engine.Result{}, be.Err, "bridge "+be.Bridge)
		} else {
			res.add(engine.Result{}, err, "making the host match the configuration")
		}
	}
	for _, b := range cfg.Bridges {
		if b.AtStart() || exists == nil || !exists(b.Name) {
			continue
		}
		ev := events.Event{Source: events.SourceCLI, Op: events.OpReconcile,
			NICs: []events.NIC{{Type: "bridge", Bridge: b.Name}}}
		r, err := e.Handle(ctx, ev)
		res.add(r, err, "bridge "+b.Name)
	}
	if running != nil {
		for i := range running {
			running[i].Source = events.SourceCLI
		}
		r, err := e.Reconcile(ctx, running, listed)
		// Reconcile makes the bridges first, as EnsureHost above did: a
		// bridge it could not make is said once, above.
		var errs []error
		for _, err := range flatten(err) {
			if be := (*engine.BridgeError)(nil); !errors.As(err, &be) {
				errs = append(errs, err)
			}
		}
		res.add(r, errors.Join(errs...), "reconciling running VMs")
	}
	return res
}

// LinkExists returns a func telling whether ls has a link called name, for
// Fix; nil when ls cannot be read (then Fix treats every on_demand bridge
// as missing and leaves it alone).
func LinkExists(ls Links) func(name string) bool {
	if ls == nil {
		return nil
	}
	links, err := ls.Links()
	if err != nil {
		return nil
	}
	return func(name string) bool {
		_, ok := linkByName(links, name)
		return ok
	}
}

// flatten returns the errors joined in err (errors.Join, nested), nil for
// nil.
func flatten(err error) []error {
	j, ok := err.(interface{ Unwrap() []error })
	if !ok {
		if err == nil {
			return nil
		}
		return []error{err}
	}
	var out []error
	for _, e := range j.Unwrap() {
		out = append(out, flatten(e)...)
	}
	return out
}

func (res *FixResult) add(r engine.Result, err error, what string) {
	res.Changes = append(res.Changes, r.Changes...)
	if err != nil {
		res.Errors = append(res.Errors, fmt.Sprintf("%s: %v", what, err))
		res.NotFixed = append(res.NotFixed, NotFixed{Object: what, Reason: err.Error()})
	}
	for _, w := range r.Warnings {
		res.Errors = append(res.Errors, fmt.Sprintf("%s: warning: %v", what, w))
		res.Warnings = append(res.Warnings, fmt.Sprintf("%s: %v", what, w))
	}
}

// AfterFix makes r, the report made after res, and res agree. What a
// blocked bridge kept Fix from doing is said with the doctor's reason and
// the operator's step. A finding that said Fix fixes it and is still
// there was not fixed: its advice says so instead, and res lists it,
// with the engine's errors when there were any.
func (r *Report) AfterFix(res *FixResult) {
	for i, nf := range res.NotFixed {
		name, ok := strings.CutPrefix(nf.Object, "bridge ")
		if bl, blocked := r.blocked[name]; ok && blocked {
			res.NotFixed[i].Reason = bl.reason
			res.NotFixed[i].Fix = bl.step + ", then run `virtbridge doctor --fix` again"
		}
	}
	errs := "it reported no error: a defect of virtbridge's, please report it"
	if len(res.Errors) > 0 {
		errs = "see what it could not fix above"
	}
	for i := range r.Findings {
		f := &r.Findings[i]
		if f.Status == OK || !f.Fixable {
			continue
		}
		f.Fixable = false
		f.Fix = "`virtbridge doctor --fix` did not fix it (" + errs + ")"
		res.NotFixed = append(res.NotFixed, NotFixed{Object: f.Check + " " + f.Object, Reason: f.Message + ", still after the fix", Fix: f.Fix})
	}
}

// RunningEvents returns the running domains as events for Fix, from the
// domains Run saw, and when it read them; ok is false when libvirt could
// not be read.
func RunningEvents(s Sources) ([]events.Event, time.Time, bool) {
	listed := time.Now()
	vms, err := readVMs(s)
	if err != nil || s.Domains == nil {
		return nil, listed, false
	}
	out := []events.Event{}
	for _, v := range vms {
		if v.Active && v.evErr == nil {
			out = append(out, v.ev)
		}
	}
	return out, listed, true
}
