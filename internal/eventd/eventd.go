// Package eventd is virtbridged: the daemon that keeps a hypervisor's
// networking right between hook calls. The qemu hook sees VM starts and
// stops, but not what happens later: a NIC hot-plugged with `virsh
// attach-interface` calls no hook, and someone may delete a bridge or pull
// an uplink out of it while VMs run. The daemon listens to libvirt's domain
// events (lifecycle, device-added, device-removed) and to the kernel's link
// changes, and hands what it learns to a Handler (internal/engine), the same
// code path the hook uses.
//
// Events are hints; libvirt and the kernel are the truth. Every event is
// turned into an events.Event from the domain's live XML, read after the
// event (never inside libvirt's callback); when the connection to libvirtd
// drops, events sent meanwhile are lost, so the daemon reconnects with
// capped exponential backoff and asks the Handler to Reconcile every running
// domain. A change of links (debounced) also leads to a Reconcile.
//
// The daemon never locks the host itself: the Handler shares the host lock
// with the hook.
package eventd

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"time"

	"github.com/vishvananda/netns"

	"github.com/virtbridge/virtbridge/internal/events"
	"github.com/virtbridge/virtbridge/internal/metrics"
)

// Handler acts on what the daemon learns. Implemented by internal/engine.
//
// The daemon calls it from one goroutine only, one call at a time, so an
// implementation needs no locking against the daemon (it still shares the
// host lock with the hook). Every call gets the daemon's context, cancelled
// on shutdown: a call should return promptly when it ends.
type Handler interface {
	// Handle acts on one event, built with events.FromDomainXML from the
	// domain's live XML read after libvirt reported it, with Source
	// events.SourceEventd:
	//
	//   - events.OpStarted, SubOp libvirt's detail ("booted", "restored",
	//     "migrated", ...): every NIC of the domain, with its tap.
	//   - events.OpStopped, SubOp the detail ("destroyed", "shutdown",
	//     ...): Domain and UUID only, NICs empty. The XML of a stopped
	//     domain has no taps any more (a transient one has no XML), and by
	//     the time the event is read the domain may run again with new
	//     taps. Detach whatever the store holds for the UUID.
	//   - events.OpDeviceAdded, Extra the device alias ("net1"): the
	//     hot-plugged NIC only (alias, MAC, tap, bridge, model). Devices
	//     that are not NICs are not reported.
	//   - events.OpDeviceRemoved, Extra the alias of the removed device:
	//     NICs holds the NICs the domain still has, from its live XML. The
	//     removed NIC is no longer there to describe, and its alias is
	//     reused by the next hot-plug at once (seen: net1 removed, the next
	//     attach is net1 again), so detach the store's ports of the UUID
	//     whose MAC is not among NICs. libvirt reports removals of every
	//     device kind; after a disk's, every NIC is still present and
	//     nothing is detached.
	//
	// Events of a domain that no longer runs when the daemon reads it are
	// dropped (a stopped event follows). An error is logged and followed by
	// a Reconcile after a backoff.
	Handle(ctx context.Context, ev events.Event) error
	// Reconcile makes the host match the configuration (what EnsureHost
	// does: a bridge deleted under nobody's VM comes back) and the policy
	// for all running domains (their live XML as events with Op
	// events.OpReconnect, sorted by domain name) and records detaches for
	// domains no longer running. Called after every (re)connection to libvirtd, after link
	// changes (drift) and, with backoff, after a failed call. listed is
	// when libvirt was asked for running: a VM that started after it is
	// missing from running but not gone.
	Reconcile(ctx context.Context, running []events.Event, listed time.Time) error
	// CheckFirewall re-verifies the firewall (called on a timer).
	CheckFirewall(ctx context.Context) error
	// EnsureHost makes the host match the configuration whatever VMs run:
	// every bridge made at start, with its uplink, the sysctls and the
	// firewall (engine.EnsureHost). op names the occasion for the journal
	// ("start", "reload", "reconcile"). Called at start-up, before READY=1
	// and before libvirt is contacted (libvirtd may be waiting for this
	// daemon to be ready), until it succeeds; and, while libvirtd is
	// unreachable, after a reload or link changes (Reconcile covers it
	// otherwise). An error that waiting will not cure (a bridge refused
	// until the host or the configuration changes) is wrapped in
	// *Refused: the daemon then says READY=1 all the same, with the
	// refusal in STATUS=, instead of holding libvirt back and failing its
	// unit's start.
	EnsureHost(ctx context.Context, op string) error
	// Reload re-reads the configuration (SIGHUP, `systemctl reload`). An
	// invalid one is refused with an error naming its file:line problems,
	// and the running one is kept. The daemon then makes the host match
	// the configuration in force.
	Reload(ctx context.Context) error
}

// DefaultURI is the libvirt connection URI used when Options.URI is empty.
const DefaultURI = "qemu:///system"

// Defaults for the zero fields of Options.
const (
	DefaultFirewallRecheck = 30 * time.Second
	DefaultDebounce        = 200 * time.Millisecond
	DefaultBackoffMin      = 500 * time.Millisecond
	DefaultBackoffMax      = 10 * time.Second
	// DefaultRetryMax caps the backoff between Reconcile retries after a
	// failed Handle or Reconcile.
	DefaultRetryMax = time.Minute
)

// Options configures Run and Once. Only Handler is required.
type Options struct {
	// URI is the libvirt connection URI; empty means DefaultURI.
	URI string
	// Handler acts on events. Required.
	Handler Handler
	// Log receives structured logs; nil uses slog.Default().
	Log *slog.Logger

	// FirewallRecheck is the period of Handler.CheckFirewall (the
	// configuration's daemon.firewall_recheck); 0 means
	// DefaultFirewallRecheck.
	FirewallRecheck time.Duration
	// Debounce is how long link changes must be quiet before the drift
	// Reconcile; 0 means DefaultDebounce. A steady stream of changes is
	// reconciled at least every 10 × Debounce.
	Debounce time.Duration
	// BackoffMin and BackoffMax bound the exponential backoff between
	// attempts to reach libvirtd; 0 means DefaultBackoffMin/Max.
	BackoffMin, BackoffMax time.Duration
	// RetryMax caps the backoff of Reconcile retries; 0 means
	// DefaultRetryMax.
	RetryMax time.Duration

	// LinkNetns is the network namespace whose links are watched for
	// drift; nil watches the daemon's own. Tests point it at a namespace
	// of their own.
	LinkNetns *netns.NsHandle
	// NoLinkWatch turns the drift watcher off.
	NoLinkWatch bool
	// Reload delivers reload requests (SIGHUP); nil never reloads.
	Reload <-chan os.Signal

	// Notify sends a state to the service manager (sd_notify(3) lines such
	// as "READY=1"); nil sends to $NOTIFY_SOCKET, or nowhere when unset.
	// It may be called from more than one goroutine.
	Notify func(state string) error
	// Metrics counts libvirt (re)connections and holds the "connected"
	// gauge; nil counts nothing. Handle's context carries the time of the
	// libvirt event (metrics.EventTime).
	Metrics *metrics.Metrics

	// Watchdog is the period of "WATCHDOG=1"; 0 means half of
	// $WATCHDOG_USEC when that is set (and $WATCHDOG_PID, if set, is this
	// process), otherwise no watchdog pings.
	Watchdog time.Duration
}

// withDefaults returns opts with zero fields filled in.
func (o Options) withDefaults() (Options, error) {
	if o.Handler == nil {
		return o, errors.New("eventd: Options.Handler is nil")
	}
	if o.URI == "" {
		o.URI = DefaultURI
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&o.FirewallRecheck, DefaultFirewallRecheck)
	def(&o.Debounce, DefaultDebounce)
	def(&o.BackoffMin, DefaultBackoffMin)
	def(&o.BackoffMax, DefaultBackoffMax)
	def(&o.RetryMax, DefaultRetryMax)
	if o.BackoffMax < o.BackoffMin {
		o.BackoffMax = o.BackoffMin
	}
	if o.Notify == nil {
		o.Notify = sdNotify
	}
	return o, nil
}

// backoff is a capped exponential backoff: 0.5 s, 1 s, 2 s, ... max.
type backoff struct {
	min, max, cur time.Duration
}

// next returns the delay before the next attempt and doubles it.
func (b *backoff) next() time.Duration {
	if b.cur < b.min {
		b.cur = b.min
	}
	d := b.cur
	b.cur = min(2*b.cur, b.max)
	return d
}

// reset makes the next delay the minimum again.
func (b *backoff) reset() { b.cur = 0 }

// Refused is an error of Handler.EnsureHost that waiting will not cure:
// every part of it is a refusal (a bridge whose uplink holds a DHCP
// client's lease, a wireless or busy uplink, a policy refusal) that stays
// until the operator changes the host or the configuration. At start the
// daemon is ready with it (READY=1, the refusal in STATUS=): holding
// libvirt back until the unit's start times out would only delay every
// other VM and have systemd restart the daemon over and over; the VMs on
// the refused bridge are refused by the hook with the same message. It is
// retried after link changes and reloads.
type Refused struct{ Err error }

func (r *Refused) Error() string { return r.Err.Error() }
func (r *Refused) Unwrap() error { return r.Err }
