package engine

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/virtbridge/virtbridge/internal/apply"
	"github.com/virtbridge/virtbridge/internal/change"
	"github.com/virtbridge/virtbridge/internal/deadline"
	"github.com/virtbridge/virtbridge/internal/desired"
	"github.com/virtbridge/virtbridge/internal/events"
	"github.com/virtbridge/virtbridge/internal/journal"
	"github.com/virtbridge/virtbridge/internal/policy"
	"github.com/virtbridge/virtbridge/internal/revert"
	"github.com/virtbridge/virtbridge/internal/sysctl"
)

// Reconcile makes the host match the configuration (EnsureHost: every
// bridge made at start, whether or not a VM uses it, re-created if someone
// deleted it) and the policy for every running domain (the daemon passes
// their live XML), each through the per-VM path of Handle (handleVM, at op
// reconcile: refused and journaled like a hook call would be), all under
// one hold of the host lock, and brings the mapping store in line:
// ports of running VMs are attached, taps put back into bridges that were
// deleted and re-created, and the entries of VMs (or NICs) that went away
// while nobody watched are journaled as detached. One VM's failure does not
// stop the pass: errors are joined. Idempotent: a host that matches
// changes nothing and journals nothing. Its waits end with ctx, like
// Handle's; a ctx that ends stops the pass before the next VM (errors say
// so), and the VMs it did not reach are not judged gone.
//
// listed is when running was read from libvirt. A store entry recorded
// after it (a VM started, or a NIC plugged, while the list was read or the
// host lock awaited: a boot storm) is not judged by a list that could not
// know it; the hook or the VM's own event recorded it, and the next pass
// judges it. The zero time judges every entry.
func (e *Engine) Reconcile(ctx context.Context, running []events.Event, listed time.Time) (Result, error) {
	var r Result
	p := &pass{e: e}
	if err := p.acquire(ctx); err != nil {
		return r, err
	}
	host, err := p.backends()
	if err != nil {
		p.finish()
		return r, err
	}
	m, err := p.store(ctx)
	if m == nil {
		p.finish()
		return r, err
	}
	r.warn(err)
	errs := []error{e.ensureHost(ctx, host, string(events.OpReconcile), &r)}
	alive := map[string]map[string]bool{} // uuid → MACs of its NICs
	for _, ev := range running {
		if err := deadline.Ended(ctx, "reconciling %d running domains", len(running)); err != nil {
			// Stopped (SIGTERM) or out of time: judge no VM by a pass
			// that did not see them all.
			errs = append(errs, err)
			p.finish()
			return r, errors.Join(errs...)
		}
		ev.Op = events.OpReconcile
		macs := map[string]bool{}
		for _, n := range ev.NICs {
			macs[n.MAC] = true
		}
		alive[ev.UUID] = macs
		vr, err := e.handleVM(ctx, ev, p)
		r.Changes = append(r.Changes, vr.Changes...)
		for _, w := range vr.Warnings {
			r.warn(fmt.Errorf("domain %q: %w", ev.Domain, w))
		}
		if err != nil {
			// A running VM cannot be refused; say so once per pass.
			errs = append(errs, fmt.Errorf("domain %q: %w", ev.Domain, err))
		}
	}
	gone := journal.VM{Op: string(events.OpReconcile), Source: string(e.source())}
	for _, x := range m.All() {
		if !listed.IsZero() && x.Since.After(listed) {
			continue
		}
		if macs, ok := alive[x.UUID]; !ok || !macs[x.MAC] {
			gone.Name, gone.UUID = x.VM, x.UUID
			r.warn(detachNICs(ctx, e.Journal, m.Store, gone, []string{x.MAC}))
		}
	}
	errs = append(errs, p.finish())
	return r, errors.Join(errs...)
}

// CheckFirewall re-applies the sysctls the configuration forces and its
// firewall intent: a setting changed behind virtbridge's back, or a rule
// someone deleted, comes back, journaled (op firewall-check). That is what
// keeps bridge-nf-call-iptables/ip6tables as configured when br_netfilter
// is loaded after boot (the module starts them at 1): while it is not
// loaded there is nothing to hold, and the first check after it loads
// sets them. On nf_tables hosts an unchanged ruleset costs one netlink
// round trip; the sysctls cost one read each. Idempotent. It returns the
// changes made (the repairs). Its waits end with ctx.
func (e *Engine) CheckFirewall(ctx context.Context) ([]change.Change, error) {
	fw := policy.FirewallIntent(e.Config)
	sysctls := policy.HostSysctls(e.Config)
	if fw == nil && len(sysctls) == 0 || len(e.Config.Bridges) == 0 {
		return nil, nil
	}
	l, err := e.lock(ctx)
	if err != nil {
		return nil, err
	}
	defer l.Release()
	host, closeHost, err := e.OpenHost()
	if err != nil {
		return nil, err
	}
	defer closeHost()
	changes, errs := checkSysctls(ctx, host, sysctls)
	if fw != nil && host.Firewall != nil {
		var rv revert.Reverter
		cs, err := host.Firewall.Ensure(ctx, *fw, &rv)
		if err != nil {
			errs = append(errs, e.withConfigPath(err), rv.Fail())
		} else {
			rv.Success()
			changes = append(changes, cs...)
		}
	}
	errs = append(errs, e.Journal.HostChanges(ctx, journal.VM{Op: "firewall-check", Source: string(events.SourceEventd)}, changes))
	return changes, errors.Join(errs...)
}

// checkSysctls sets each sysctl that differs; a net.bridge.* one while
// br_netfilter is not loaded is skipped (it does not exist yet).
func checkSysctls(ctx context.Context, host *apply.Host, sysctls []desired.Sysctl) ([]change.Change, []error) {
	var changes []change.Change
	var errs []error
	for _, s := range sysctls {
		var rv revert.Reverter
		cs, err := host.Sysctls.Ensure(ctx, s, &rv)
		rv.Success()
		if errors.Is(err, sysctl.ErrBridgeNetfilter) {
			continue
		}
		changes = append(changes, cs...)
		errs = append(errs, err)
	}
	return changes, errs
}
