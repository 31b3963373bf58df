package eventd

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"libvirt.org/go/libvirt"

	"github.com/virtbridge/virtbridge/internal/events"
)

func TestBackoff(t *testing.T) {
	b := backoff{min: 500 * time.Millisecond, max: 10 * time.Second}
	var got []string
	for range 8 {
		got = append(got, b.next().String())
	}
	b.reset()
	got = append(got, b.next().String())
	want := "500ms 1s 2s 4s 8s 10s 10s 10s 500ms"
	if strings.Join(got, " ") != want {
		t.Errorf("backoff = %s, want %s", strings.Join(got, " "), want)
	}
}

func TestOptionsDefaults(t *testing.T) {
	if _, err := (Options{}).withDefaults(); err == nil {
		t.Error("Options without a Handler accepted")
	}
	o, err := Options{Handler: newRecorder(), BackoffMin: 3 * time.Second, BackoffMax: time.Second}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	got := fmt.Sprintf("%s %v %v %v %v %v", o.URI, o.FirewallRecheck, o.Debounce, o.BackoffMin, o.BackoffMax, o.RetryMax)
	if want := "qemu:///system 30s 200ms 3s 3s 1m0s"; got != want {
		t.Errorf("defaults = %s, want %s", got, want)
	}
}

func TestLifecycleOp(t *testing.T) {
	for _, tc := range []struct {
		ev   libvirt.DomainEventLifecycle
		want string
	}{
		{libvirt.DomainEventLifecycle{Event: libvirt.DOMAIN_EVENT_STARTED, Detail: int(libvirt.DOMAIN_EVENT_STARTED_BOOTED)}, "started/booted"},
		{libvirt.DomainEventLifecycle{Event: libvirt.DOMAIN_EVENT_STARTED, Detail: int(libvirt.DOMAIN_EVENT_STARTED_RESTORED)}, "started/restored"},
		{libvirt.DomainEventLifecycle{Event: libvirt.DOMAIN_EVENT_STARTED, Detail: int(libvirt.DOMAIN_EVENT_STARTED_MIGRATED)}, "started/migrated"},
		{libvirt.DomainEventLifecycle{Event: libvirt.DOMAIN_EVENT_STOPPED, Detail: int(libvirt.DOMAIN_EVENT_STOPPED_DESTROYED)}, "stopped/destroyed"},
		{libvirt.DomainEventLifecycle{Event: libvirt.DOMAIN_EVENT_STOPPED, Detail: int(libvirt.DOMAIN_EVENT_STOPPED_SHUTDOWN)}, "stopped/shutdown"},
		{libvirt.DomainEventLifecycle{Event: libvirt.DOMAIN_EVENT_STOPPED, Detail: 99}, "stopped/detail-99"},
		{libvirt.DomainEventLifecycle{Event: libvirt.DOMAIN_EVENT_DEFINED}, "ignored"},
		{libvirt.DomainEventLifecycle{Event: libvirt.DOMAIN_EVENT_SUSPENDED}, "ignored"},
		{libvirt.DomainEventLifecycle{Event: libvirt.DOMAIN_EVENT_RESUMED}, "ignored"},
		{libvirt.DomainEventLifecycle{Event: libvirt.DOMAIN_EVENT_SHUTDOWN}, "ignored"},
	} {
		got := "ignored"
		if op, sub, ok := lifecycleOp(&tc.ev); ok {
			got = string(op) + "/" + sub
		}
		if got != tc.want {
			t.Errorf("lifecycleOp(%v) = %s, want %s", tc.ev, got, tc.want)
		}
	}
}

// TestStoppedEvent: a stopped event is built from what the callback copied
// (the XML of a stopped domain names no taps), and dropped when the domain
// already runs again, so that a late event cannot detach a new run's
// ports. libvirt's built-in test driver plays libvirtd: its default node
// has the running domain "test".
func TestStoppedEvent(t *testing.T) {
	c, err := libvirt.NewConnect("test:///default")
	if err != nil {
		t.Skipf("skipped: libvirt's test driver is not available: %v", err)
	}
	defer c.Close()
	s := &conn{c: c}
	ev, ok, err := s.liveEvent(rawEvent{op: events.OpStopped, subOp: "destroyed", domain: "vm1", uuid: "00000000-0000-4000-8000-00000000dead"})
	if err != nil || !ok {
		t.Fatalf("liveEvent(stopped, domain gone) = %v, %v", ok, err)
	}
	want := `{"source":"eventd","op":"stopped","subop":"destroyed","domain":"vm1","uuid":"00000000-0000-4000-8000-00000000dead","nics":null}`
	if got := jsonText(t, ev); got != want {
		t.Errorf("liveEvent(stopped) =\n%s\nwant\n%s", got, want)
	}
	d, err := c.LookupDomainByName("test")
	if err != nil {
		t.Fatal(err)
	}
	defer d.Free()
	uuid, err := d.GetUUIDString()
	if err != nil {
		t.Fatal(err)
	}
	if _, ok, err := s.liveEvent(rawEvent{op: events.OpStopped, domain: "test", uuid: uuid}); err != nil || ok {
		t.Fatalf("liveEvent(stopped, domain running again) = %v, %v; want it dropped", ok, err)
	}
}

// TestEnqueueNeverBlocks: libvirt's callbacks run on its event loop; a
// full queue drops the event and asks for a full reconcile instead.
func TestEnqueueNeverBlocks(t *testing.T) {
	o, _ := Options{Handler: newRecorder()}.withDefaults()
	d := newDaemon(o)
	done := make(chan struct{})
	go func() {
		for range rawQueue + 10 {
			d.enqueue(rawEvent{op: events.OpStarted})
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(2 * time.Second):
		t.Fatal("enqueue blocked on a full queue")
	}
	if len(d.raw) != rawQueue || !d.overflow.Load() {
		t.Errorf("queue %d, overflow %v; want %d and true", len(d.raw), d.overflow.Load(), rawQueue)
	}
}

func TestLibvirtErrorMessage(t *testing.T) {
	le := libvirt.Error{Code: libvirt.ERR_NO_DOMAIN, Message: "Domain not found: no domain with matching uuid"}
	err := fmt.Errorf("looking up domain u-1: %w", lv(le))
	if got := err.Error(); got != "looking up domain u-1: Domain not found: no domain with matching uuid" {
		t.Errorf("message %q", got)
	}
	if !errors.Is(err, libvirt.ERR_NO_DOMAIN) {
		t.Errorf("errors.Is does not reach the libvirt code")
	}
	plain := errors.New("not libvirt")
	if lv(plain) != plain {
		t.Errorf("lv changed a non-libvirt error")
	}
}

// TestRunWithoutLibvirtd: with libvirtd unreachable the daemon still makes
// the host match the configuration (EnsureHost, retried after a failure)
// and says READY=1 once that is done: libvirtd is ordered after it and may
// be waiting for it. It keeps running, pings the watchdog, says why libvirt
// is not reached, calls no Handler method but CheckFirewall after that,
// and stops within 2 s. Needs no privileges.
func TestRunWithoutLibvirtd(t *testing.T) {
	rec := newRecorder()
	rec.failHosts = 1
	uri := socketURI(filepath.Join(t.TempDir(), "no-sock"))
	stop := runDaemon(t, Options{URI: uri, Handler: rec, Log: testLog(t), NoLinkWatch: true,
		Notify: rec.notify, Watchdog: 20 * time.Millisecond, FirewallRecheck: 100 * time.Millisecond,
		BackoffMin: 50 * time.Millisecond, BackoffMax: 100 * time.Millisecond})
	_, i := rec.waitFor(t, 0, 5*time.Second, "a second EnsureHost", isHost)
	second, _ := rec.waitFor(t, i+1, 5*time.Second, "a second EnsureHost", isHost)
	if gap := second.at.Sub(rec.snapshot()[i].at); gap < retryMin {
		t.Errorf("EnsureHost retried after %v, want at least %v", gap, retryMin)
	}
	time.Sleep(700 * time.Millisecond)
	stop()
	var watchdog, unreachable, ready, stopping int
	rec.mu.Lock()
	for _, s := range rec.states {
		switch {
		case s.state == "WATCHDOG=1":
			watchdog++
		case strings.HasPrefix(s.state, "STATUS=libvirtd at "+uri+" unreachable"):
			unreachable++
		case strings.Contains(s.state, "READY=1"):
			ready++
		case strings.HasPrefix(s.state, "STOPPING=1"):
			stopping++
		}
	}
	rec.mu.Unlock()
	if watchdog < 10 || unreachable < 3 || ready != 1 || stopping != 1 {
		t.Errorf("WATCHDOG=1 ×%d, unreachable ×%d, READY=1 ×%d, STOPPING=1 ×%d; want ≥10, ≥3, 1, 1", watchdog, unreachable, ready, stopping)
	}
	rec.checkReady(t)
	calls := rec.snapshot()
	if calls[0].kind != "host start" || calls[1].kind != "host start" {
		t.Errorf("first calls %v, want EnsureHost(start) twice (the first fails)", calls[:2])
	}
	for _, c := range calls[2:] {
		if c.kind != "firewall" {
			t.Errorf("Handler called without libvirtd: %s", c)
		}
	}
	if n := len(calls) - 2; n < 3 {
		t.Errorf("CheckFirewall called %d times in 700 ms at a 100 ms period, want it to go on without libvirtd", n)
	}
}

// TestReadyWhenRefused: a start-up EnsureHost refused until the host or
// the configuration changes (*Refused) does not hold libvirt back: the
// daemon says READY=1 at once, with the refusal in STATUS=, and does not
// retry it on a timer (link changes and reloads do). Needs no privileges.
func TestReadyWhenRefused(t *testing.T) {
	rec := newRecorder()
	rec.refuseHosts = true
	stop := runDaemon(t, Options{URI: socketURI(filepath.Join(t.TempDir(), "no-sock")), Handler: rec, Log: testLog(t),
		NoLinkWatch: true, Notify: rec.notify, FirewallRecheck: 50 * time.Millisecond,
		BackoffMin: 50 * time.Millisecond, BackoffMax: 100 * time.Millisecond})
	rec.waitFor(t, 0, 5*time.Second, "EnsureHost at start", isHost)
	time.Sleep(time.Second) // ten retry periods of a failure that waits
	stop()
	var hosts int
	for _, c := range rec.snapshot() {
		if isHost(c) {
			hosts++
		}
	}
	if hosts != 1 {
		t.Errorf("EnsureHost called %d times in a second, want once: a refusal is not retried on a timer", hosts)
	}
	var ready, refused int
	rec.mu.Lock()
	for _, s := range rec.states {
		if strings.Contains(s.state, "READY=1") {
			ready++
		}
		if strings.HasPrefix(s.state, "STATUS=host does not match the configuration, refused") &&
			strings.Contains(s.state, `making bridge "br0": refused on purpose`) {
			refused++
		}
	}
	rec.mu.Unlock()
	if ready != 1 || refused != 1 {
		t.Errorf("READY=1 ×%d, STATUS= with the refusal ×%d; want 1, 1", ready, refused)
	}
}

// TestReloadWithoutLibvirtd: a reload request re-reads the configuration
// and makes the host match it, between RELOADING=1 and READY=1; a refused
// configuration is logged with its error, keeps the daemon running, makes
// nothing, and still ends the reload with READY=1. Needs no privileges.
func TestReloadWithoutLibvirtd(t *testing.T) {
	rec := newRecorder()
	rec.failReloads = 1
	reload := make(chan os.Signal, 1)
	logs := &lockedBuilder{b: &strings.Builder{}}
	log := slog.New(slog.NewTextHandler(logs, nil))
	stop := runDaemon(t, Options{URI: socketURI(filepath.Join(t.TempDir(), "no-sock")), Handler: rec, Log: log,
		NoLinkWatch: true, Notify: rec.notify, Reload: reload, BackoffMin: time.Second, BackoffMax: time.Second})
	_, i := rec.waitFor(t, 0, 5*time.Second, "EnsureHost at start", isHost)
	reload <- syscall.SIGHUP
	_, i = rec.waitFor(t, i+1, 5*time.Second, "the refused reload", func(c call) bool { return c.kind == "reload" })
	reload <- syscall.SIGHUP
	_, i = rec.waitFor(t, i+1, 5*time.Second, "the second reload", func(c call) bool { return c.kind == "reload" })
	rec.waitFor(t, i+1, 5*time.Second, "EnsureHost after the reload", func(c call) bool { return c.kind == "host reload" })
	time.Sleep(100 * time.Millisecond)
	stop()
	var got []string
	for _, c := range rec.snapshot() {
		if c.kind != "firewall" {
			got = append(got, c.kind)
		}
	}
	if want := "host start,reload,reload,host reload"; strings.Join(got, ",") != want {
		t.Errorf("calls %q, want %q", got, want)
	}
	var seq []string
	rec.mu.Lock()
	for _, s := range rec.states {
		for _, line := range strings.Split(s.state, "\n") {
			switch {
			case line == "READY=1", line == "RELOADING=1":
				seq = append(seq, line)
			case strings.HasPrefix(line, "STATUS=reload refused"):
				seq = append(seq, "refused")
			}
		}
	}
	rec.mu.Unlock()
	if want := "READY=1 RELOADING=1 refused READY=1 RELOADING=1 READY=1"; strings.Join(seq, " ") != want {
		t.Errorf("told the service manager %q, want %q", strings.Join(seq, " "), want)
	}
	if !strings.Contains(logs.String(), "reload refused") || !strings.Contains(logs.String(), "c.yaml:3: reload failed on purpose") {
		t.Errorf("the refused reload is not logged with its error:\n%s", logs.String())
	}
}

// TestSdNotify sends to a NOTIFY_SOCKET as systemd makes it and reads the
// watchdog period from the environment.
func TestSdNotify(t *testing.T) {
	p := filepath.Join(tempSocketDir(t), "notify")
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: p, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	t.Setenv("NOTIFY_SOCKET", p)
	if err := sdNotify("READY=1\nSTATUS=hello"); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 512)
	_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
	n, err := c.Read(buf)
	if err != nil || string(buf[:n]) != "READY=1\nSTATUS=hello" {
		t.Errorf("read %q, %v", buf[:n], err)
	}

	for _, tc := range []struct {
		usec, pid string
		want      time.Duration
		err       bool
	}{
		{"", "", 0, false},
		{"200000", "", 100 * time.Millisecond, false},
		{"200000", fmt.Sprint(os.Getpid()), 100 * time.Millisecond, false},
		{"200000", "1", 0, false}, // meant for another process
		{"soon", "", 0, true},
	} {
		t.Setenv("WATCHDOG_USEC", tc.usec)
		t.Setenv("WATCHDOG_PID", tc.pid)
		got, err := watchdogFromEnv()
		if got != tc.want || (err != nil) != tc.err {
			t.Errorf("WATCHDOG_USEC=%q WATCHDOG_PID=%q: %v, %v; want %v, error %v", tc.usec, tc.pid, got, err, tc.want, tc.err)
		}
	}
}

// lockedBuilder is a strings.Builder safe for the daemon's goroutines and
// the test's.
type lockedBuilder struct {
	mu sync.Mutex
	b  *strings.Builder
}

func (w *lockedBuilder) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func (w *lockedBuilder) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}
