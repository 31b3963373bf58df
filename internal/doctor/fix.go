package doctor

import (
	"fmt"
	"time"

	"github.com/virtbridge/virtbridge/internal/change"
	"github.com/virtbridge/virtbridge/internal/config"
	"github.com/virtbridge/virtbridge/internal/engine"
	"github.com/virtbridge/virtbridge/internal/events"
)

// Engine is what Fix drives; *engine.Engine is one (engine.ForHost for
// the host: same backends, lock, store and journal as the hook).
type Engine interface {
	EnsureHost(op string) (engine.Result, error)
	Handle(ev events.Event) (engine.Result, error)
	Reconcile(running []events.Event, listed time.Time) (engine.Result, error)
}

var _ Engine = (*engine.Engine)(nil)

// FixResult is what Fix changed and what it could not fix.
type FixResult struct {
	Changes []change.Change `json:"changes"`
	Errors  []string        `json:"errors"`
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
// after it (a VM started meanwhile) are not judged by it.
func Fix(e Engine, cfg *config.Config, exists func(name string) bool, running []events.Event, listed time.Time) FixResult {
	res := FixResult{Changes: []change.Change{}, Errors: []string{}}
	r, err := e.EnsureHost(engine.OpApply)
	res.add(r, err, "making the host match the configuration")
	for _, b := range cfg.Bridges {
		if b.AtStart() || exists == nil || !exists(b.Name) {
			continue
		}
		ev := events.Event{Source: events.SourceCLI, Op: events.OpReconcile,
			NICs: []events.NIC{{Type: "bridge", Bridge: b.Name}}}
		r, err := e.Handle(ev)
		res.add(r, err, "bridge "+b.Name)
	}
	if running != nil {
		for i := range running {
			running[i].Source = events.SourceCLI
		}
		r, err := e.Reconcile(running, listed)
		res.add(r, err, "reconciling running VMs")
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

func (res *FixResult) add(r engine.Result, err error, what string) {
	res.Changes = append(res.Changes, r.Changes...)
	if err != nil {
		res.Errors = append(res.Errors, fmt.Sprintf("%s: %v", what, err))
	}
	for _, w := range r.Warnings {
		res.Errors = append(res.Errors, fmt.Sprintf("%s: warning: %v", what, w))
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
