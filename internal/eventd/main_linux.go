package eventd

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"syscall"

	"github.com/virtbridge/virtbridge/internal/config"
	"github.com/virtbridge/virtbridge/internal/journal"
	"github.com/virtbridge/virtbridge/internal/links"
	"github.com/virtbridge/virtbridge/internal/metrics"
)

// Exit codes of virtbridged.
const (
	ExitOK      = 0
	ExitFailure = 1 // configuration, handler or (with --once) reconcile failed
	ExitUsage   = 2 // bad flags
)

// NewHandlerFunc builds the daemon's Handler from the configuration. m,
// nil when metrics are off, is where the Handler counts what it does; a
// Handler that also implements metrics.State is what scrapes read. The
// returned func releases what the Handler holds; Main calls it once the
// daemon has stopped.
type NewHandlerFunc func(cfg *config.Config, m *metrics.Metrics) (Handler, func(), error)

const usage = `usage: virtbridged [--config FILE] [--uri URI] [--once]

virtbridged keeps a libvirt/KVM host's VM networking right between hook
calls. At start it makes every managed bridge of the configuration (unless
it says create: on_demand), whether or not a VM uses it: the bridge with
its settings, the uplink enslaved with the host's addresses and routes
moved to the bridge, the sysctls and the firewall, under the host lock and
journaled; so bridges exist before libvirt starts any VM and before anyone
hot-plugs a NIC onto them. Then it listens to libvirt's domain events (VM
started or stopped, NIC hot-plugged or unplugged, which calls no hook) and
to the kernel's link changes, and for each makes the host match the
configuration, as the virtbridge qemu hook does at VM start.

For a bridge with manager: virtbridged (an uplink whose lease a DHCP
client without a manager holds) it moves the address to the bridge, stops
that client (by pid, journaled) and keeps the lease itself with a DHCP
client of its own on the bridge: same MAC, same client identifier, same
address, renewed at T1, rebound at T2, the address's lifetime kept equal to
the lease's; its state is in /run/virtbridge/lease-BRIDGE.json. On stop it
leaves the address with its remaining lifetime.

When the connection to libvirtd drops it reconnects (0.5 s to 10 s apart)
and reconciles every running VM, since events sent meanwhile are lost; it
keeps running while libvirtd is down. It also reconciles when links change
(a bridge deleted, even one no VM uses, an uplink pulled out), and
re-checks the firewall every daemon.firewall_recheck (30 s by default).

SIGHUP (systemctl reload virtbridged) re-reads the configuration: an
invalid one is refused, its file:line errors logged, and the running one
kept; a valid one is in force at once (a bridge added to it is made then).
daemon.firewall_recheck and daemon.metrics_listen changes take effect at
the next start.

With daemon.metrics_listen set (off by default; ":9473" binds localhost
only) it serves Prometheus metrics on http://ADDR/metrics: the VMs' ports
(virtbridge_port_info), the managed bridges' health, reconciles, repairs,
refusals, libvirt reconnects and the hot-plug-to-wired latency.

Under systemd (Type=notify) it sends READY=1 once the host matches the
configuration (the bridges made at start, their uplinks, sysctls and
firewall; it retries until then, without contacting libvirt, which is
ordered after it; a bridge refused until the host or the configuration
changes does not hold READY=1 back, its refusal is in STATUS=), RELOADING=1 and READY=1 around a reload, STATUS=
lines, WATCHDOG=1 when WatchdogSec= is set, and STOPPING=1 on SIGTERM or
SIGINT, then exits within a second or two. Logs go to stderr as text or,
when systemd connects stderr to the journal, to journald as structured
entries (SYSLOG_IDENTIFIER=virtbridged, one VIRTBRIDGE_<KEY> field per
detail). The host lock it shares with the hook is
taken by the engine.

With --once it makes the bridges made at start and reconciles every
running VM once, and exits: 0 when the host matches the configuration, 1
otherwise (for cron, CI and operators). Without libvirt, use
virtbridge apply.

Flags:
`

// Main is virtbridged's main function: it parses args (without the
// program name), loads the configuration, builds the Handler with
// newHandler and runs the daemon until SIGTERM or SIGINT (or, with --once,
// reconciles once). Logs go to stderr, or to journald under systemd. It
// returns the exit code.
func Main(args []string, stderr io.Writer, newHandler NewHandlerFunc) int {
	fs := flag.NewFlagSet("virtbridged", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgPath := fs.String("config", config.PathFromEnv(), "configuration `file` ($"+config.EnvPath+" overrides the default)")
	uri := fs.String("uri", DefaultURI, "libvirt connection `URI`")
	once := fs.Bool("once", false, "make the bridges made at start, reconcile every running VM once, and exit")
	fs.Usage = func() {
		fmt.Fprint(stderr, usage)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return ExitOK
		}
		return ExitUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "virtbridged: unexpected argument %q\n", fs.Arg(0))
		fs.Usage()
		return ExitUsage
	}
	// SIGHUP from here on reloads; before, its default action would kill
	// the daemon.
	reload := make(chan os.Signal, 1)
	if !*once {
		signal.Notify(reload, syscall.SIGHUP)
		defer signal.Stop(reload)
	}
	log := slog.New(slog.NewTextHandler(stderr, nil))
	if f, ok := stderr.(*os.File); ok {
		// Under systemd: structured journald entries.
		log = slog.New(journal.LogHandler("virtbridged", f))
	}

	cfg, err := config.Load(*cfgPath)
	if err == nil {
		err = cfg.CheckUplinks(links.NameByMAC)
	}
	if err != nil {
		log.Error("loading configuration; check it with `virtbridge check-config`", "err", err)
		return ExitFailure
	}
	var m *metrics.Metrics
	var ml net.Listener
	if cfg.Daemon.MetricsListen != "" && !*once {
		if ml, err = metrics.Listen(cfg.Daemon.MetricsListen); err != nil {
			log.Error("setting up metrics; change daemon.metrics_listen or stop what holds the port", "err", err)
			return ExitFailure
		}
		defer ml.Close()
		m = metrics.New()
	}
	h, release, err := newHandler(cfg, m)
	if err != nil {
		log.Error("setting up", "err", err)
		return ExitFailure
	}
	if release != nil {
		defer release()
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	// After the first signal the default action is back: a second one
	// kills a daemon that does not stop.
	context.AfterFunc(ctx, stop)
	if m != nil {
		if st, ok := h.(metrics.State); ok {
			m.SetState(st)
		}
		go m.Serve(ctx, ml, log)
	}
	opts := Options{URI: *uri, Handler: h, Log: log, FirewallRecheck: cfg.Daemon.FirewallRecheck, Reload: reload, Metrics: m}
	if *once {
		err = Once(ctx, opts)
	} else {
		err = Run(ctx, opts)
	}
	if err != nil {
		log.Error("virtbridged failed", "err", err)
		return ExitFailure
	}
	return ExitOK
}
