// Package engine is the one path from an event to the host: policy decides,
// apply changes the host under the host lock, the mapping store and the
// journal record it. The hook and the event daemon both go through it, and
// each VM of a Reconcile takes the same per-VM path (handleVM) as a hook
// call for it.
//
// The engine decides what is recorded when: the tap→VM bookkeeping of the
// mapping store and its attached and detached records (mapping.go), and a
// store that a failed save left stale caught up from the journal
// (stale.go, catchup.go). Package journal only writes the records, and
// package who reads them back.
package engine

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/virtbridge/virtbridge/internal/apply"
	"github.com/virtbridge/virtbridge/internal/change"
	"github.com/virtbridge/virtbridge/internal/config"
	"github.com/virtbridge/virtbridge/internal/desired"
	"github.com/virtbridge/virtbridge/internal/events"
	"github.com/virtbridge/virtbridge/internal/journal"
	"github.com/virtbridge/virtbridge/internal/links"
	"github.com/virtbridge/virtbridge/internal/store"
)

// Engine handles events for one host.
type Engine struct {
	Config    *config.Config
	Journal   *journal.Writer
	StorePath string
	LockPath  string
	// LockWait caps one wait for the host lock, within the context of the
	// call: the daemon's worker must not block long enough for systemd's
	// watchdog, the hook keeps time to report the holder before its
	// deadline. 0: the context alone bounds it.
	LockWait time.Duration
	// OpenHost opens the backends; called only when the host must change,
	// with the lock held. The returned func closes them.
	OpenHost func() (*apply.Host, func(), error)
	// LinkKind returns the kind of the host link called name ("bridge",
	// "veth", "device" for a NIC, ...), "" when there is none. Read-only;
	// called once per unmanaged bridge a VM names, at the ops that make
	// the host ready. Nil skips that check.
	LinkKind func(name string) (string, error)
	// StaleMarker says that a save of the store failed and since when the
	// store may lack records (store.MarkStale). Empty: store.StaleFile
	// beside LockPath, in the run directory.
	StaleMarker string
	// Source names who drives the engine in the records of changes made
	// for no VM (EnsureHost, Reconcile's host pass and detaches); empty
	// means events.SourceEventd.
	Source events.Source
}

// Result is what Handle did.
type Result struct {
	Desired desired.Desired
	Changes []change.Change
	// Warnings are problems that did not fail the event: journal or store
	// trouble, a tap that could not be checked after start.
	Warnings []error
}

// Handle makes the host right for ev and records what changed, through
// the one per-VM path (handleVM) a Reconcile takes for each running VM. A
// refusal is journaled and leaves the host as it was: a *PolicyError when
// the VM's configuration or XML is refused (nothing was changed), a
// *HostError when the host could not be made right (rolled back). Handle
// takes the host lock only when the host or the store must change, and
// is idempotent: the same event twice changes nothing the second time.
//
// Every wait ends with ctx: the host lock (also capped by LockWait), the
// backends' commands and the journal's sends, each with an error saying
// what it waited for (a *deadline.Error); ctx's Activity says what the
// call is doing meanwhile.
func (e *Engine) Handle(ctx context.Context, ev events.Event) (Result, error) {
	p := &pass{e: e}
	r, err := e.handleVM(ctx, ev, p)
	r.warn(p.finish())
	return r, err
}

// withoutPorts returns ports less those in drop (by MAC), in a new slice.
func withoutPorts(ports, drop []desired.Port) []desired.Port {
	if len(drop) == 0 {
		return ports
	}
	out := make([]desired.Port, 0, len(ports))
	for _, p := range ports {
		if !slices.ContainsFunc(drop, func(d desired.Port) bool { return d.MAC == p.MAC }) {
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
func (e *Engine) notBridges(skipped []desired.Skipped) []string {
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
func (e *Engine) takenTaps(nics []events.NIC, ports []desired.Port) []string {
	if e.LinkKind == nil {
		return nil
	}
	var errs []string
	for _, n := range nics {
		if n.Tap == "" || !slices.ContainsFunc(ports, func(p desired.Port) bool { return p.MAC == n.MAC }) {
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
// without the lock: the hook's stop path stays cheap for unmanaged VMs. A
// store marked stale may lack them: true.
func (e *Engine) storeHolds(uuid string) bool {
	if _, stale, _ := store.StaleSince(e.staleMarker()); stale {
		return true // the store may lack the VM: catch it up under the lock
	}
	s, err := store.Read(e.StorePath)
	if err != nil {
		return true // let the locked path load, recover and report it
	}
	return len(s.ByVM(uuid)) > 0
}

// record brings the mapping store in line with the event and journals the
// difference: ports with a tap are attached once the taps exist (not at
// prepare, where a <target dev> is only the name libvirt will give); at
// stop every port of the VM is detached; after an unplug, the VM's ports
// whose MAC left its live XML. A store that a failed save left stale is
// caught up from the journal first (openStore); the pass saves it.
func (e *Engine) record(ctx context.Context, ev events.Event, vm journal.VM, d desired.Desired, p *pass) error {
	m, err := p.store(ctx)
	if m == nil {
		return err
	}
	s, errs := m.Store, []error{err}
	switch {
	case ev.Op.Ends():
		errs = append(errs, detachVM(ctx, e.Journal, s, vm))
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
		errs = append(errs, detachNICs(ctx, e.Journal, s, vm, gone))
	case d.TapsExist():
		errs = append(errs, attachPorts(ctx, e.Journal, s, vm, d.Ports, time.Now().UTC()))
	}
	return errors.Join(errs...)
}

// journalChanges journals the host changes of vm and warns, besides, of
// each change to a bridge someone else made (change.ForeignBridge): it is
// said where the operator looks (the hook's stderr, which virsh start
// shows; the daemon's log), not only in the journal.
func (e *Engine) journalChanges(ctx context.Context, vm journal.VM, changes []change.Change, r *Result) {
	r.warn(e.Journal.HostChanges(ctx, vm, changes))
	for _, c := range changes {
		if c.Kind == change.ForeignBridge {
			r.warn(errors.New(c.After))
		}
	}
}

func (r *Result) warn(err error) {
	if err != nil {
		r.Warnings = append(r.Warnings, err)
	}
}
