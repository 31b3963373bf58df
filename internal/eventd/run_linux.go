package eventd

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"libvirt.org/go/libvirt"

	"github.com/virtbridge/virtbridge/internal/events"
	"github.com/virtbridge/virtbridge/internal/metrics"
)

// rawQueue bounds the events waiting for the worker. libvirt's callbacks
// never block on it: when it is full the event is dropped and the worker
// reconciles everything instead.
const rawQueue = 1024

// closeLimit bounds how long shutdown waits for libvirt to close.
const closeLimit = time.Second

// retryMin is the first delay before a Reconcile retry.
const retryMin = time.Second

// Run is the daemon: it has opts.Handler make the host match the
// configuration (EnsureHost, retried until it succeeds), tells the service
// manager READY=1, then connects to libvirtd, reconciles, and hands every
// domain event and link change to opts.Handler until ctx ends, reconnecting
// (and reconciling) whenever the connection drops. It keeps running while
// libvirtd is down. READY=1 does not wait for libvirt: the unit is ordered
// before libvirtd, which waits for it. On opts.Reload it re-reads the
// configuration (RELOADING=1, then READY=1) and makes the host match it. It
// keeps STATUS= current, pings the watchdog and says
// STOPPING=1 as soon as ctx ends; it then deregisters its callbacks, closes
// the connection and returns within about a second. It returns nil when
// ctx ends and an error only when it cannot start. Everything it does on
// the host goes through the Handler, whose calls must be idempotent: events
// are hints that may repeat what a Reconcile already did.
func Run(ctx context.Context, opts Options) error {
	o, err := opts.withDefaults()
	if err != nil {
		return err
	}
	if err := startEventLoop(); err != nil {
		return err
	}
	if o.Watchdog <= 0 {
		wd, err := watchdogFromEnv()
		if err != nil {
			o.Log.Warn("ignoring the service manager's watchdog setting", "err", err)
		}
		o.Watchdog = wd
	}
	d := newDaemon(o)
	// STOPPING=1 goes out as soon as ctx ends, even while a Handler call
	// is still running, and for sure before Run returns.
	var stopping sync.Once
	sayStopping := func() { stopping.Do(func() { d.notify("STOPPING=1\nSTATUS=stopping") }) }
	context.AfterFunc(ctx, sayStopping)
	defer sayStopping()

	var wg sync.WaitGroup
	if !o.NoLinkWatch {
		w := newLinkWatcher(o, d.requestDrift)
		wg.Go(func() { w.run(ctx) })
	}
	fw := time.NewTicker(o.FirewallRecheck)
	defer fw.Stop()
	d.firewall = fw.C
	if o.Watchdog > 0 {
		wd := time.NewTicker(o.Watchdog)
		defer wd.Stop()
		d.watchdog = wd.C
		d.notify("WATCHDOG=1")
	}
	o.Log.Info("virtbridged starting", "uri", o.URI, "firewall_recheck", o.FirewallRecheck,
		"watchdog", o.Watchdog, "link_watch", !o.NoLinkWatch)
	if d.prepare(ctx) {
		d.loop(ctx)
	}
	wg.Wait()
	o.Log.Info("virtbridged stopped")
	return nil
}

// Once connects to libvirtd, calls opts.Handler.Reconcile once with every
// running domain and returns its error: for cron, CI and operators. It
// registers no callbacks and sends nothing to the service manager. It is
// as idempotent as the Handler's Reconcile.
func Once(ctx context.Context, opts Options) error {
	o, err := opts.withDefaults()
	if err != nil {
		return err
	}
	c, err := libvirt.NewConnect(o.URI)
	if err != nil {
		return fmt.Errorf("connecting to libvirt %q: %w", o.URI, lv(err))
	}
	defer c.Close()
	running, listed, err := runningDomains(c, o.Log)
	if err != nil {
		return err
	}
	begin := time.Now()
	if err := o.Handler.Reconcile(ctx, running, listed); err != nil {
		return fmt.Errorf("reconciling %d running domains: %w", len(running), err)
	}
	o.Log.Info("reconciled", "domains", len(running), "took", time.Since(begin))
	return nil
}

// daemon is the state of one Run. Everything but raw, overflow and drift
// belongs to the goroutine running loop.
type daemon struct {
	o   Options
	log *slog.Logger

	raw      chan rawEvent // from libvirt's callbacks
	overflow atomic.Bool   // raw was full: an event was dropped
	drift    chan struct{} // from the link watcher; one pending request is enough

	firewall <-chan time.Time
	watchdog <-chan time.Time // nil without watchdog

	retry      *time.Timer // pending Reconcile retry, or nil
	retryDelay backoff
	ready      bool // READY=1 said
	// connections counts the connections made to libvirtd: all but the
	// first are reconnects.
	connections int
}

func newDaemon(o Options) *daemon {
	return &daemon{
		o:          o,
		log:        o.Log,
		raw:        make(chan rawEvent, rawQueue),
		drift:      make(chan struct{}, 1),
		retryDelay: backoff{min: retryMin, max: o.RetryMax},
	}
}

// enqueue runs on libvirt's event loop: it must never block.
func (d *daemon) enqueue(ev rawEvent) {
	select {
	case d.raw <- ev:
	default:
		d.overflow.Store(true)
	}
}

// requestDrift asks for a Reconcile; requests coalesce.
func (d *daemon) requestDrift() {
	select {
	case d.drift <- struct{}{}:
	default:
	}
}

func (d *daemon) notify(state string) {
	if err := d.o.Notify(state); err != nil {
		d.log.Warn("notifying the service manager", "state", state, "err", err)
	}
}

// status says STATUS=, on one line: a newline would end the field (joined
// errors, a configuration's errors, have several).
func (d *daemon) status(format string, args ...any) {
	d.notify("STATUS=" + strings.ReplaceAll(fmt.Sprintf(format, args...), "\n", "; "))
}

// loop connects, runs a session until the connection drops, and again,
// until ctx ends.
func (d *daemon) loop(ctx context.Context) {
	bo := backoff{min: d.o.BackoffMin, max: d.o.BackoffMax}
	d.status("connecting to libvirt at %s", d.o.URI)
	for ctx.Err() == nil {
		s, err := openConn(d.o.URI, d.enqueue)
		if err != nil {
			delay := bo.next()
			d.log.Warn("libvirtd unreachable; retrying", "uri", d.o.URI, "err", err, "retry_in", delay)
			d.status("libvirtd at %s unreachable, retrying in %v: %v", d.o.URI, delay, err)
			d.idle(ctx, delay)
			continue
		}
		bo.reset()
		d.log.Info("connected to libvirtd", "uri", d.o.URI)
		d.o.Metrics.Connected(true, d.connections > 0)
		d.connections++
		d.session(ctx, s)
		d.o.Metrics.Connected(false, false)
		s.close(d.log, closeLimit)
	}
}

// idle waits for delay while keeping what needs no libvirt running: the
// timers, reloads, and the bridges made again after link changes (the next
// session reconciles the VMs first).
func (d *daemon) idle(ctx context.Context, delay time.Duration) {
	t := time.NewTimer(delay)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			return
		case <-d.firewall:
			d.checkFirewall(ctx)
		case <-d.watchdog:
			d.notify("WATCHDOG=1")
		case <-d.drift:
			// No libvirt to list VMs: the bridges at least.
			d.ensureHost(ctx, "reconcile")
		case <-d.o.Reload:
			if d.reload(ctx) {
				d.ensureHost(ctx, "reload")
			}
			d.notify("READY=1")
		}
	}
}

// session serves one connection: reconcile, then events, until the
// connection drops or ctx ends.
func (d *daemon) session(ctx context.Context, s *conn) {
	// A drift request or retry from before is covered by this reconcile.
	select {
	case <-d.drift:
	default:
	}
	d.stopRetry()
	d.reconcile(ctx, s, "connected")
	for {
		select {
		case <-ctx.Done():
			return
		case r := <-s.closed:
			d.log.Warn("connection to libvirtd lost; reconnecting", "uri", d.o.URI, "reason", closeReason(r))
			d.status("connection to libvirtd at %s lost (%s), reconnecting", d.o.URI, closeReason(r))
			return
		case raw := <-d.raw:
			d.handle(ctx, s, raw)
		case <-d.drift:
			d.reconcile(ctx, s, "links changed")
		case <-d.retryC():
			d.retry = nil
			d.reconcile(ctx, s, "retry")
		case <-d.firewall:
			d.checkFirewall(ctx)
		case <-d.watchdog:
			d.notify("WATCHDOG=1")
		case <-d.o.Reload:
			if d.reload(ctx) {
				d.reconcile(ctx, s, "reload")
			}
			d.notify("READY=1")
		}
		if d.overflow.Swap(false) {
			d.drainRaw()
			d.log.Warn("event queue full, events dropped; reconciling everything instead", "queue", rawQueue)
			d.reconcile(ctx, s, "event queue overflow")
		}
	}
}

func (d *daemon) drainRaw() {
	for {
		select {
		case <-d.raw:
		default:
			return
		}
	}
}

// reconcile hands every running domain to the Handler.
func (d *daemon) reconcile(ctx context.Context, s *conn, why string) {
	begin := time.Now()
	running, listed, err := runningDomains(s.c, d.log)
	if err != nil {
		d.log.Warn("reading running domains", "why", why, "err", err)
		d.scheduleRetry()
		return
	}
	err = d.o.Handler.Reconcile(ctx, running, listed)
	if ctx.Err() != nil {
		return
	}
	if err != nil {
		d.log.Error("reconcile failed", "why", why, "domains", len(running), "err", err)
		d.status("reconcile failed (%s): %v", why, err)
		d.scheduleRetry()
		return
	}
	d.stopRetry()
	d.retryDelay.reset()
	d.log.Info("reconciled", "why", why, "domains", len(running), "took", time.Since(begin))
	d.status("connected to %s, %d running domains reconciled at %s",
		d.o.URI, len(running), time.Now().Format(time.TimeOnly))
}

// handle reads what raw refers to and hands it to the Handler.
func (d *daemon) handle(ctx context.Context, s *conn, raw rawEvent) {
	ev, ok, err := s.liveEvent(raw)
	if err != nil {
		d.log.Warn("reading domain after event; reconciling later", "op", raw.op, "domain", raw.domain, "err", err)
		d.scheduleRetry()
		return
	}
	if !ok {
		d.log.Debug("event has nothing to act on", "op", raw.op, "domain", raw.domain, "alias", raw.alias)
		return
	}
	queued := time.Since(raw.at)
	begin := time.Now()
	err = d.o.Handler.Handle(metrics.WithEventTime(ctx, raw.at), ev)
	if ctx.Err() != nil {
		return
	}
	attrs := []any{"op", ev.Op, "subop", ev.SubOp, "alias", ev.Extra, "domain", ev.Domain, "uuid", ev.UUID,
		"nics", nicSummary(ev.NICs), "event_to_handle", queued, "took", time.Since(begin)}
	if err != nil {
		d.log.Error("handling event failed; reconciling later", append(attrs, "err", err)...)
		d.scheduleRetry()
		return
	}
	d.log.Info("handled event", attrs...)
}

func (d *daemon) checkFirewall(ctx context.Context) {
	if err := d.o.Handler.CheckFirewall(ctx); err != nil && ctx.Err() == nil {
		d.log.Error("firewall check failed", "err", err)
		return
	}
	d.log.Debug("firewall checked")
}

// scheduleRetry arms a Reconcile retry unless one is pending.
func (d *daemon) scheduleRetry() {
	if d.retry != nil {
		return
	}
	delay := d.retryDelay.next()
	d.retry = time.NewTimer(delay)
	d.log.Info("reconcile scheduled", "in", delay)
}

func (d *daemon) stopRetry() {
	if d.retry != nil {
		d.retry.Stop()
		d.retry = nil
	}
}

func (d *daemon) retryC() <-chan time.Time {
	if d.retry == nil {
		return nil
	}
	return d.retry.C
}

// nicSummary renders NICs for a log line: alias=tap@bridge/mac each.
func nicSummary(nics []events.NIC) []string {
	out := make([]string, 0, len(nics))
	for _, n := range nics {
		out = append(out, fmt.Sprintf("%s=%s@%s/%s", n.Alias, n.Tap, n.Bridge, n.MAC))
	}
	return out
}
