package engine

import (
	"context"
	"errors"
	"time"

	"github.com/virtbridge/virtbridge/internal/desired"
	"github.com/virtbridge/virtbridge/internal/events"
	"github.com/virtbridge/virtbridge/internal/journal"
	"github.com/virtbridge/virtbridge/internal/store"
)

// This file is the mapping-store bookkeeping: which tap belongs to which
// VM NIC, kept in the store and journaled as attached and detached records
// when it changes. The engine decides what to record when; package
// journal only writes the records.

// vmOf returns the VM of a hook or daemon event, as its records name it:
// with libvirt's sub-operation when it says more than begin or end (the
// daemon's "migrated" makes a live migration's records unambiguous).
func vmOf(ev events.Event) journal.VM {
	vm := journal.VM{Name: ev.Domain, UUID: ev.UUID, Op: string(ev.Op), Source: string(ev.Source)}
	switch ev.SubOp {
	case "", "-", "begin", "end":
	default:
		vm.SubOp = ev.SubOp
	}
	return vm
}

// loadStore loads the mapping store for a writer (the caller holds the host
// lock) and journals a warning if it was corrupt and moved aside.
func loadStore(ctx context.Context, w *journal.Writer, path string) (*store.Store, error) {
	s, err := store.Load(path)
	if err != nil {
		return nil, err
	}
	if r := s.Recovered(); r != nil {
		return s, w.StoreRecovered(ctx, r.Path, r.MovedTo, r.Cause)
	}
	return s, nil
}

// attachPorts records the VM's ports that have a tap as attached: in the
// store, and in the journal when the mapping is new or changed, or at
// `reconnect` (libvirtd restarted: say again what is where). Taps released
// by the change (the NIC's old tap; a tap another VM held without a recorded
// stop) are journaled as detached first. The same mapping seen again (the
// daemon's started event after the hook's) keeps its Since and is not
// journaled again. Ports without a tap (prepare) are skipped.
//
// It journals before the caller saves the store (the caller holds the host
// lock and calls Save after): a crash in between repeats a record on the
// next call rather than losing one. Idempotent for the store; journals again
// only where said above. It keeps going past failures and returns them
// joined.
func attachPorts(ctx context.Context, w *journal.Writer, s *store.Store, vm journal.VM, ports []desired.Port, now time.Time) error {
	var errs []error
	for _, p := range ports {
		if p.Tap == "" {
			continue
		}
		// An identical mapping (the daemon's started event after the
		// hook's) keeps its Since and is not recorded again.
		displaced, changed, err := s.Attach(store.Entry{UUID: vm.UUID, VM: vm.Name, MAC: p.MAC, Tap: p.Tap, Bridge: p.Bridge, Since: now})
		if err != nil {
			errs = append(errs, err)
			continue
		}
		// displaced holds the NIC's previous tap, if it had another one,
		// and any other holder of this tap.
		for _, e := range displaced {
			errs = append(errs, w.Detached(ctx, portIn(s, vm, e)))
		}
		if changed || vm.Op == string(events.OpReconnect) {
			e, _ := s.ByTap(p.Tap)
			errs = append(errs, w.Attached(ctx, portIn(s, vm, e)))
		}
	}
	return errors.Join(errs...)
}

// portIn is the port of a store entry, as reported by vm's op, naming
// the store s.
func portIn(s *store.Store, vm journal.VM, e store.Entry) journal.Port {
	vm.Name, vm.UUID = e.VM, e.UUID
	return journal.Port{VM: vm, Tap: e.Tap, MAC: e.MAC, Bridge: e.Bridge, Store: s.Path()}
}

// detachVM records that all the VM's ports are gone (stopped, release):
// removes its entries from the store and journals each as detached. The
// XML at `stopped` names no taps; the store remembers them. Idempotent: at
// `release` after `stopped` nothing is left and nothing is journaled. The
// caller saves the store afterwards.
func detachVM(ctx context.Context, w *journal.Writer, s *store.Store, vm journal.VM) error {
	var errs []error
	for _, e := range s.DetachVM(vm.UUID) {
		errs = append(errs, w.Detached(ctx, portIn(s, vm, e)))
	}
	return errors.Join(errs...)
}

// detachNICs records that the VM's NICs with these MACs are gone (a NIC
// unplugged): like detachVM for those NICs only. Idempotent.
func detachNICs(ctx context.Context, w *journal.Writer, s *store.Store, vm journal.VM, macs []string) error {
	var errs []error
	for _, mac := range macs {
		if e, ok := s.Detach(vm.UUID, mac); ok {
			errs = append(errs, w.Detached(ctx, portIn(s, vm, e)))
		}
	}
	return errors.Join(errs...)
}
