// Package metrics is virtbridged's Prometheus metrics: what the daemon did
// (reconciles, repairs, refusals, libvirt reconnects, the event-to-wired
// latency of hot-plugged NICs) counted as it happens, and what the host
// is (the ports of VMs, the managed bridges' health) read from a State at
// scrape time. Metric names are fixed here; values from VM XML (domain
// names, taps, MACs, bridges) only ever appear as label values.
package metrics

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/virtbridge/virtbridge/internal/change"
)

// Metric names served by virtbridged; Names lists them all.
const (
	PortInfo             = "virtbridge_port_info"
	BridgeUp             = "virtbridge_bridge_up"
	BridgeUplinkEnslaved = "virtbridge_bridge_uplink_enslaved"
	BridgeHostAddress    = "virtbridge_bridge_host_address"
	StateErrors          = "virtbridge_state_read_errors_total"
	Reconciles           = "virtbridge_reconciles_total"
	ReconcileFailures    = "virtbridge_reconcile_failures_total"
	Repairs              = "virtbridge_repairs_total"
	Refusals             = "virtbridge_refusals_total"
	LibvirtReconnects    = "virtbridge_libvirt_reconnects_total"
	LibvirtConnected     = "virtbridge_libvirt_connected"
	HotplugWired         = "virtbridge_hotplug_wired_seconds"
)

// Names are the metric families virtbridged serves (a histogram's
// _bucket, _sum and _count series belong to its family).
var Names = []string{PortInfo, BridgeUp, BridgeUplinkEnslaved, BridgeHostAddress, StateErrors,
	Reconciles, ReconcileFailures, Repairs, Refusals, LibvirtReconnects, LibvirtConnected, HotplugWired}

// Refusal reasons (the reason label of virtbridge_refusals_total).
const (
	ReasonPolicy = "policy" // the VM's configuration or XML is refused; nothing changed
	ReasonHost   = "host"   // the host could not be made right; rolled back
)

// Port is one VM NIC's port, as the mapping store holds it.
type Port struct {
	Domain, UUID, Tap, MAC, Bridge string
}

// Bridge is one managed bridge and its health.
type Bridge struct {
	Name                            string
	Uplink                          string // "" when the bridge has none
	Up, UplinkEnslaved, HostAddress bool
}

// State is what a scrape reads: the daemon's own view of the host. Its
// methods are called from the HTTP server's goroutines, concurrently with
// the daemon.
type State interface {
	Ports() ([]Port, error)
	Bridges() ([]Bridge, error)
}

// Metrics holds virtbridged's metrics. A nil *Metrics counts nothing, so
// code paths without metrics need no checks.
type Metrics struct {
	reg        *prometheus.Registry
	reconciles prometheus.Counter
	failures   prometheus.Counter
	repairs    *prometheus.CounterVec
	refusals   *prometheus.CounterVec
	reconnects prometheus.Counter
	connected  prometheus.Gauge
	hotplug    prometheus.Histogram
	state      *stateCollector
}

// New returns the daemon's metrics. Ports and bridges are read at every
// scrape from the State given to SetState (none until then).
func New() *Metrics {
	m := &Metrics{
		reg:        prometheus.NewRegistry(),
		reconciles: prometheus.NewCounter(prometheus.CounterOpts{Name: Reconciles, Help: "Reconciles of every running VM and the managed bridges (after a connection to libvirtd, link changes, a reload or a failure)."}),
		failures:   prometheus.NewCounter(prometheus.CounterOpts{Name: ReconcileFailures, Help: "Reconciles that failed (retried with backoff)."}),
		repairs:    prometheus.NewCounterVec(prometheus.CounterOpts{Name: Repairs, Help: "Host changes made to repair drift, by kind (bridge_recreated, uplink_reenslaved, tap_reattached, firewall_rule_restored, ...)."}, []string{"kind"}),
		refusals:   prometheus.NewCounterVec(prometheus.CounterOpts{Name: Refusals, Help: "VM events refused, by reason: policy (the VM's configuration or XML is refused) or host (the host could not be made right)."}, []string{"reason"}),
		reconnects: prometheus.NewCounter(prometheus.CounterOpts{Name: LibvirtReconnects, Help: "Connections to libvirtd made again after the first (after it dropped or was unreachable)."}),
		connected:  prometheus.NewGauge(prometheus.GaugeOpts{Name: LibvirtConnected, Help: "1 while virtbridged is connected to libvirtd, 0 otherwise."}),
		hotplug: prometheus.NewHistogram(prometheus.HistogramOpts{Name: HotplugWired, Help: "Time from libvirt's device-added event of a hot-plugged NIC to its tap wired into the bridge.",
			Buckets: []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30}}),
		state: newStateCollector(),
	}
	m.reg.MustRegister(m.reconciles, m.failures, m.repairs, m.refusals, m.reconnects, m.connected, m.hotplug, m.state)
	for _, r := range []string{ReasonPolicy, ReasonHost} {
		m.refusals.WithLabelValues(r) // present at 0 from the start
	}
	return m
}

// SetState makes scrapes read ports and bridges from st. Call it before
// Serve.
func (m *Metrics) SetState(st State) { m.state.st = st }

// Registry is where the metrics are registered (for tests and handlers).
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Reconciled counts one reconcile; err non-nil counts it failed too.
func (m *Metrics) Reconciled(err error) {
	if m == nil {
		return
	}
	m.reconciles.Inc()
	if err != nil {
		m.failures.Inc()
	}
}

// Repaired counts the changes a reconcile, a re-check of the firewall or
// the bridges' re-making after drift made, by kind.
func (m *Metrics) Repaired(changes []change.Change) {
	if m == nil {
		return
	}
	for _, c := range changes {
		if k := RepairKind(c.Kind); k != "" {
			m.repairs.WithLabelValues(k).Inc()
		}
	}
}

// RepairKind names a change as a repair ("" for a change that repairs
// nothing, like a note about a foreign bridge). The kinds are a fixed set.
func RepairKind(k change.Kind) string {
	switch k {
	case change.BridgeCreated:
		return "bridge_recreated"
	case change.BridgeUpdated:
		return "bridge_setting_restored"
	case change.UplinkEnslaved:
		return "uplink_reenslaved"
	case change.AddressMoved, change.RouteMoved:
		return "address_moved"
	case change.PortAttached:
		return "tap_reattached"
	case change.AliasSet:
		return "alias_restored"
	case change.SysctlChanged:
		return "sysctl_restored"
	case change.RuleAdded, change.ChainCreated:
		return "firewall_rule_restored"
	case change.RuleRemoved, change.ChainRemoved:
		return "firewall_rule_removed"
	}
	return ""
}

// Refused counts a refused VM event (ReasonPolicy or ReasonHost).
func (m *Metrics) Refused(reason string) {
	if m == nil {
		return
	}
	m.refusals.WithLabelValues(reason).Inc()
}

// Connected says whether virtbridged is connected to libvirtd; every
// connection after the first counts as a reconnect.
func (m *Metrics) Connected(up bool, reconnect bool) {
	if m == nil {
		return
	}
	if up {
		m.connected.Set(1)
		if reconnect {
			m.reconnects.Inc()
		}
		return
	}
	m.connected.Set(0)
}

// HotplugWiredAfter records the time from a hot-plug event to its NIC wired.
func (m *Metrics) HotplugWiredAfter(d time.Duration) {
	if m == nil {
		return
	}
	m.hotplug.Observe(d.Seconds())
}

// Listen binds addr for Serve: called before the daemon says it is ready,
// so that a taken port fails the start with a message naming it.
func Listen(addr string) (net.Listener, error) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listening for metrics on %s (daemon.metrics_listen): %w", addr, err)
	}
	return l, nil
}

// Serve serves /metrics on l until ctx ends, then closes it.
func (m *Metrics) Serve(ctx context.Context, l net.Listener, log *slog.Logger) {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{ErrorLog: slogPrinter{log}}))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	context.AfterFunc(ctx, func() {
		sctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	})
	log.Info("serving metrics", "addr", l.Addr().String(), "path", "/metrics")
	if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Error("serving metrics failed", "addr", l.Addr().String(), "err", err)
	}
}

type slogPrinter struct{ log *slog.Logger }

func (p slogPrinter) Println(v ...any) { p.log.Warn("metrics scrape", "err", fmt.Sprint(v...)) }

type eventTimeKey struct{}

// WithEventTime returns ctx carrying when libvirt reported the event being
// handled (the daemon's callback ran), for HotplugWiredAfter.
func WithEventTime(ctx context.Context, at time.Time) context.Context {
	return context.WithValue(ctx, eventTimeKey{}, at)
}

// EventTime returns the time WithEventTime put in ctx, if any.
func EventTime(ctx context.Context) (time.Time, bool) {
	at, ok := ctx.Value(eventTimeKey{}).(time.Time)
	return at, ok
}
