package eventd

import (
	"context"
	"errors"
	"fmt"
	"time"

	"golang.org/x/sys/unix"
)

// prepare has the Handler make the host match the configuration, retrying
// with backoff (sooner after link changes or a reload) until it succeeds,
// then says READY=1; a *Refused error, which no retry cures, ends it
// too, with READY=1 and the refusal in STATUS=. It contacts no libvirt: at boot libvirtd is ordered
// after this daemon and waits for READY=1. It returns false when ctx ends
// first.
func (d *daemon) prepare(ctx context.Context) bool {
	d.status("making the host match the configuration")
	op := "start"
	for ctx.Err() == nil {
		begin := time.Now()
		err := d.o.Handler.EnsureHost(ctx, op)
		if ctx.Err() != nil {
			return false
		}
		if err == nil {
			d.ready = true
			d.retryDelay.reset()
			d.log.Info("host matches the configuration", "op", op, "took", time.Since(begin))
			d.notify("READY=1")
			d.status("host matches the configuration; connecting to libvirt at %s", d.o.URI)
			return true
		}
		if r := (*Refused)(nil); errors.As(err, &r) {
			d.ready = true
			d.retryDelay.reset()
			d.log.Error("the host does not match the configuration: refused until the host or the configuration changes "+
				"(retried after link changes and reloads)", "op", op, "err", err)
			d.notify("READY=1")
			d.status("host does not match the configuration, refused (fix it, then systemctl reload virtbridged): %v; "+
				"connecting to libvirt at %s", err, d.o.URI)
			return true
		}
		delay := d.retryDelay.next()
		d.log.Error("making the host match the configuration failed; retrying", "op", op, "err", err, "retry_in", delay)
		d.status("host does not match the configuration (retrying in %v): %v", delay, err)
		op = d.waitRetry(ctx, delay)
	}
	return false
}

// waitRetry waits before the next attempt of prepare: delay, or until links
// change or a reload comes. It returns the op of the next attempt.
func (d *daemon) waitRetry(ctx context.Context, delay time.Duration) string {
	t := time.NewTimer(delay)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return "start"
		case <-t.C:
			return "start"
		case <-d.drift:
			return "reconcile"
		case <-d.o.Reload:
			d.reload(ctx)
			return "reload"
		case <-d.watchdog:
			d.notify("WATCHDOG=1")
		}
	}
}

// ensureHost has the Handler make the host match the configuration when
// there is no libvirt to reconcile with; a failure is retried at the next
// link change, reload or reconnect.
func (d *daemon) ensureHost(ctx context.Context, op string) {
	begin := time.Now()
	err := d.o.Handler.EnsureHost(ctx, op)
	if ctx.Err() != nil {
		return
	}
	if err != nil {
		d.log.Error("making the host match the configuration failed", "op", op, "err", err)
		d.status("host does not match the configuration: %v", err)
		return
	}
	d.log.Info("host matches the configuration", "op", op, "took", time.Since(begin))
}

// reload has the Handler re-read the configuration and reports whether it
// did. Once READY=1 was said it tells the service manager RELOADING=1; the
// caller says READY=1 when the host is made to match. A refused
// configuration is logged with its file:line errors and the running one
// stays in force.
func (d *daemon) reload(ctx context.Context) bool {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err == nil && d.ready {
		d.notify(fmt.Sprintf("RELOADING=1\nMONOTONIC_USEC=%d", ts.Nano()/1000))
	}
	d.log.Info("reloading the configuration")
	if err := d.o.Handler.Reload(ctx); err != nil {
		d.log.Error("reload refused: the configuration does not load; keeping the running one "+
			"(check it with `virtbridge check-config`)", "err", err)
		d.status("reload refused, running configuration kept: %v", err)
		return false
	}
	d.log.Info("configuration reloaded")
	return true
}
