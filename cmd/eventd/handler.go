package main

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"sync/atomic"
	"time"

	"github.com/virtbridge/virtbridge/internal/change"
	"github.com/virtbridge/virtbridge/internal/config"
	"github.com/virtbridge/virtbridge/internal/desired"
	"github.com/virtbridge/virtbridge/internal/engine"
	"github.com/virtbridge/virtbridge/internal/eventd"
	"github.com/virtbridge/virtbridge/internal/events"
	"github.com/virtbridge/virtbridge/internal/journal"
	"github.com/virtbridge/virtbridge/internal/links"
	"github.com/virtbridge/virtbridge/internal/metrics"
	"github.com/virtbridge/virtbridge/internal/owner/lease"
	"github.com/virtbridge/virtbridge/internal/paths"
	"github.com/virtbridge/virtbridge/internal/policy"
)

// lockWait stays well under the watchdog interval: the daemon's worker
// must not block on the hook's lock long enough to be killed. Within it,
// the wait ends with the call's context: SIGTERM is not held up by a hook
// holding the lock.
const lockWait = 5 * time.Second

// handler hands the daemon's events to the engine: the hook's code path.
type handler struct {
	eng *engine.Engine
	log *slog.Logger
	m   *metrics.Metrics // nil: metrics off
	// cfg is the configuration in force, for scrapes: they run on the
	// HTTP server's goroutines while Reload swaps eng.Config.
	cfg   *atomic.Pointer[config.Config]
	ports *portsCache
	// keepers keep the leases of the bridges with manager: virtbridged.
	keepers *lease.Keepers
}

var (
	_ eventd.Handler = handler{}
	_ metrics.State  = handler{}
)

func newHandler(cfg *config.Config, m *metrics.Metrics) (eventd.Handler, func(), error) {
	eng := engine.ForHost(cfg, lockWait)
	eng.Source = events.SourceEventd
	engine.KeepLeases(eng)
	log := slog.New(journal.LogHandler("virtbridged", os.Stderr))
	h := handler{eng: eng, log: log, m: m,
		cfg: new(atomic.Pointer[config.Config]), ports: &portsCache{}}
	h.keepers = lease.NewKeepers(paths.RunDir(), func(ctx context.Context, cs []change.Change) {
		if err := eng.Journal.HostChanges(ctx, journal.VM{Op: "lease", Source: string(events.SourceEventd)}, cs); err != nil {
			log.Warn("journaling", "err", err)
		}
	}, log)
	h.cfg.Store(cfg)
	return h, h.keepers.Close, nil
}

func (h handler) Handle(ctx context.Context, ev events.Event) error {
	res, err := h.eng.Handle(ctx, ev)
	h.report(ev.Domain, res, err)
	var pe *engine.PolicyError
	var he *engine.HostError
	switch {
	case errors.As(err, &pe):
		h.m.Refused(metrics.ReasonPolicy)
	case errors.As(err, &he):
		h.m.Refused(metrics.ReasonHost)
	case err == nil && ev.Op == events.OpDeviceAdded && len(res.Desired.Ports) > 0:
		if at, ok := metrics.EventTime(ctx); ok {
			h.m.HotplugWiredAfter(time.Since(at))
		}
	}
	if pe != nil || he != nil {
		// Journaled; a running VM's NIC cannot be refused after the fact,
		// and a retry would not change the answer.
		return nil
	}
	return err
}

func (h handler) Reconcile(ctx context.Context, running []events.Event, listed time.Time) error {
	bs := h.atStart()
	h.keepers.Sync(ctx, bs)
	before := h.keepers.Before(bs)
	res, err := h.eng.Reconcile(ctx, running, listed)
	err = errors.Join(err, h.keepers.After(ctx, bs, before))
	h.report("", res, err)
	h.m.Reconciled(err)
	h.m.Repaired(res.Changes)
	// A running VM the policy refuses, and a bridge refused until the host
	// or the configuration changes, are journaled and logged; retrying
	// with backoff would only say the same refusal again (link changes and
	// reloads still bring a new try).
	return engine.Retryable(err)
}

func (h handler) CheckFirewall(ctx context.Context) error {
	changes, err := h.eng.CheckFirewall(ctx)
	h.m.Repaired(changes)
	return err
}

// EnsureHost makes the host match the configuration, then keeps the
// leases of the bridges with manager: virtbridged it made: what their
// uplinks held is read before the kernel path moves it. Before that, the
// keepers of bridges the configuration no longer gives manager:
// virtbridged stop, and those of bridges made again wait to resume
// (Reconcile likewise).
func (h handler) EnsureHost(ctx context.Context, op string) error {
	bs := h.atStart()
	h.keepers.Sync(ctx, bs)
	before := h.keepers.Before(bs)
	res, err := h.eng.EnsureHost(ctx, op)
	err = errors.Join(err, h.keepers.After(ctx, bs, before))
	h.report("", res, err)
	if op != "start" {
		// Bridges made at start are no repair; made again later, they are.
		h.m.Repaired(res.Changes)
	}
	if err != nil && engine.Retryable(err) == nil {
		return &eventd.Refused{Err: err}
	}
	return err
}

// atStart are the bridges the configuration makes at start; the keepers
// follow them (lease.Keepers.Sync) before each pass.
func (h handler) atStart() []desired.Bridge {
	var bs []desired.Bridge
	for _, d := range policy.AtStart(h.eng.Config) {
		bs = append(bs, d.Bridges...)
	}
	return bs
}

// Reload re-reads the configuration from where it was loaded; the engine
// keeps the running one when the new one does not load. Only the daemon's
// goroutine calls the handler, so the swap needs no lock.
func (h handler) Reload(context.Context) error {
	cfg, err := config.Load(h.eng.Config.Path)
	if err == nil {
		err = cfg.CheckUplinks(links.NameByMAC)
	}
	if err != nil {
		return err
	}
	h.eng.Config = cfg
	h.cfg.Store(cfg)
	return nil
}

func (h handler) report(domain string, res engine.Result, err error) {
	for _, c := range res.Changes {
		h.log.Info("host changed", "domain", domain, "change", c.String())
	}
	for _, w := range res.Warnings {
		h.log.Warn("problem", "domain", domain, "err", w)
	}
	if err != nil {
		h.log.Error("failed", "domain", domain, "err", err)
	}
}
