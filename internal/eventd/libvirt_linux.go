package eventd

import (
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"libvirt.org/go/libvirt"

	"github.com/virtbridge/virtbridge/internal/events"
)

// Keepalive settings: a ping every 5 s, the connection is declared dead
// after 3 unanswered ones (about 20 s for a libvirtd that hangs; one that
// exits closes the socket and is noticed at once).
const (
	keepaliveInterval = 5
	keepaliveCount    = 3
)

var (
	loopOnce sync.Once
	loopErr  error
)

// startEventLoop registers libvirt's default event loop, which must happen
// before the first connection is opened, and runs it on a goroutine for the
// rest of the process (libvirt offers no way to stop it). Keepalive, the
// close callback and domain events are all driven by this loop. It is
// idempotent.
func startEventLoop() error {
	loopOnce.Do(func() {
		if err := libvirt.EventRegisterDefaultImpl(); err != nil {
			loopErr = fmt.Errorf("registering libvirt's event loop: %w", lv(err))
			return
		}
		go func() {
			for {
				if err := libvirt.EventRunDefaultImpl(); err != nil {
					// Not a Run's logger: the loop outlives every Run.
					slog.Error("libvirt event loop iteration failed", "err", err)
					time.Sleep(100 * time.Millisecond) // do not spin
				}
			}
		}()
	})
	return loopErr
}

// lvError shows a libvirt error by its message ("Failed to connect socket
// to '...': No such file or directory") rather than the binding's
// "virError(Code=38, Domain=7, Message='...')"; errors.Is and errors.As
// still reach the libvirt.Error beneath.
type lvError struct{ err libvirt.Error }

func (e lvError) Error() string { return e.err.Message }
func (e lvError) Unwrap() error { return e.err }

// lv wraps a libvirt error as an lvError.
func lv(err error) error {
	var le libvirt.Error
	if errors.As(err, &le) && le.Message != "" {
		return lvError{le}
	}
	return err
}

// rawEvent is what a libvirt callback copies out of its arguments: names
// and strings only, since the domain object belongs to libvirt and is freed
// when the callback returns.
type rawEvent struct {
	op     events.Op
	subOp  string
	domain string
	uuid   string
	alias  string    // device events
	at     time.Time // when the callback ran
}

// conn is one connection to libvirtd with the daemon's callbacks on it.
type conn struct {
	uri    string
	c      *libvirt.Connect
	ids    []int                           // domain event callback ids
	closed chan libvirt.ConnectCloseReason // the close callback's report
}

// openConn connects to uri, turns keepalive on and registers the close
// callback and the domain event callbacks, which pass every event to
// enqueue. The event loop must run.
func openConn(uri string, enqueue func(rawEvent)) (*conn, error) {
	c, err := libvirt.NewConnect(uri)
	if err != nil {
		return nil, fmt.Errorf("connecting to libvirt %q: %w", uri, lv(err))
	}
	s := &conn{uri: uri, c: c, closed: make(chan libvirt.ConnectCloseReason, 1)}
	if err := s.register(enqueue); err != nil {
		s.close(nil, time.Second)
		return nil, fmt.Errorf("connecting to libvirt %q: %w", uri, err)
	}
	return s, nil
}

func (s *conn) register(enqueue func(rawEvent)) error {
	if err := s.c.SetKeepAlive(keepaliveInterval, keepaliveCount); err != nil {
		return fmt.Errorf("enabling keepalive: %w", lv(err))
	}
	// Runs on the event loop: never block it.
	err := s.c.RegisterCloseCallback(func(_ *libvirt.Connect, r libvirt.ConnectCloseReason) {
		select {
		case s.closed <- r:
		default:
		}
	})
	if err != nil {
		return fmt.Errorf("registering close callback: %w", lv(err))
	}
	id, err := s.c.DomainEventLifecycleRegister(nil, func(_ *libvirt.Connect, d *libvirt.Domain, e *libvirt.DomainEventLifecycle) {
		if op, sub, ok := lifecycleOp(e); ok {
			enqueue(copyEvent(d, op, sub, ""))
		}
	})
	if err != nil {
		return fmt.Errorf("registering lifecycle events: %w", lv(err))
	}
	s.ids = append(s.ids, id)
	id, err = s.c.DomainEventDeviceAddedRegister(nil, func(_ *libvirt.Connect, d *libvirt.Domain, e *libvirt.DomainEventDeviceAdded) {
		enqueue(copyEvent(d, events.OpDeviceAdded, "", e.DevAlias))
	})
	if err != nil {
		return fmt.Errorf("registering device-added events: %w", lv(err))
	}
	s.ids = append(s.ids, id)
	id, err = s.c.DomainEventDeviceRemovedRegister(nil, func(_ *libvirt.Connect, d *libvirt.Domain, e *libvirt.DomainEventDeviceRemoved) {
		enqueue(copyEvent(d, events.OpDeviceRemoved, "", e.DevAlias))
	})
	if err != nil {
		return fmt.Errorf("registering device-removed events: %w", lv(err))
	}
	s.ids = append(s.ids, id)
	// The connection may have died before the close callback was there to
	// hear it.
	alive, err := s.c.IsAlive()
	if err != nil {
		return fmt.Errorf("checking connection: %w", lv(err))
	}
	if !alive {
		return errors.New("connection closed while registering callbacks")
	}
	return nil
}

// copyEvent copies what the daemon needs out of a callback's arguments.
// GetName and GetUUIDString read the domain object in memory; they make no
// call to libvirtd.
func copyEvent(d *libvirt.Domain, op events.Op, subOp, alias string) rawEvent {
	ev := rawEvent{op: op, subOp: subOp, alias: alias, at: time.Now()}
	ev.domain, _ = d.GetName()
	ev.uuid, _ = d.GetUUIDString()
	return ev
}

// lifecycleOp maps a lifecycle event to the op the Handler gets. Only
// starts and stops change a VM's ports; the rest (defined, suspended,
// resumed, ...) are ignored.
func lifecycleOp(e *libvirt.DomainEventLifecycle) (events.Op, string, bool) {
	switch e.Event {
	case libvirt.DOMAIN_EVENT_STARTED:
		return events.OpStarted, startedDetail(libvirt.DomainEventStartedDetailType(e.Detail)), true
	case libvirt.DOMAIN_EVENT_STOPPED:
		return events.OpStopped, stoppedDetail(libvirt.DomainEventStoppedDetailType(e.Detail)), true
	}
	return "", "", false
}

func startedDetail(d libvirt.DomainEventStartedDetailType) string {
	switch d {
	case libvirt.DOMAIN_EVENT_STARTED_BOOTED:
		return "booted"
	case libvirt.DOMAIN_EVENT_STARTED_MIGRATED:
		return "migrated"
	case libvirt.DOMAIN_EVENT_STARTED_RESTORED:
		return "restored"
	case libvirt.DOMAIN_EVENT_STARTED_FROM_SNAPSHOT:
		return "from-snapshot"
	case libvirt.DOMAIN_EVENT_STARTED_WAKEUP:
		return "wakeup"
	case libvirt.DOMAIN_EVENT_STARTED_RECREATED:
		return "recreated"
	}
	return fmt.Sprintf("detail-%d", int(d))
}

func stoppedDetail(d libvirt.DomainEventStoppedDetailType) string {
	switch d {
	case libvirt.DOMAIN_EVENT_STOPPED_SHUTDOWN:
		return "shutdown"
	case libvirt.DOMAIN_EVENT_STOPPED_DESTROYED:
		return "destroyed"
	case libvirt.DOMAIN_EVENT_STOPPED_CRASHED:
		return "crashed"
	case libvirt.DOMAIN_EVENT_STOPPED_MIGRATED:
		return "migrated"
	case libvirt.DOMAIN_EVENT_STOPPED_SAVED:
		return "saved"
	case libvirt.DOMAIN_EVENT_STOPPED_FAILED:
		return "failed"
	case libvirt.DOMAIN_EVENT_STOPPED_FROM_SNAPSHOT:
		return "from-snapshot"
	case libvirt.DOMAIN_EVENT_STOPPED_RECREATED:
		return "recreated"
	}
	return fmt.Sprintf("detail-%d", int(d))
}

// close deregisters the callbacks and closes the connection. On a dead
// connection the deregistrations fail after libvirt has dropped the
// callbacks locally, which is all that matters. A libvirtd that hangs
// could hold the calls until keepalive gives up; after limit close returns
// and leaves them to finish on their own, so shutdown stays fast.
func (s *conn) close(log *slog.Logger, limit time.Duration) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		for _, id := range s.ids {
			_ = s.c.DomainEventDeregister(id)
		}
		_ = s.c.UnregisterCloseCallback()
		if _, err := s.c.Close(); err != nil && log != nil {
			log.Debug("closing libvirt connection", "uri", s.uri, "err", err)
		}
	}()
	select {
	case <-done:
	case <-time.After(limit):
		if log != nil {
			log.Warn("closing the libvirt connection takes too long; leaving it behind", "uri", s.uri, "waited", limit)
		}
	}
}

// liveEvent turns raw into the event the Handler gets, reading the live XML
// where the event needs it. ok is false when there is nothing to hand on:
// the domain is gone or no longer running (a stopped event follows), or the
// added device is not a NIC.
func (s *conn) liveEvent(raw rawEvent) (ev events.Event, ok bool, err error) {
	base := events.Event{Source: events.SourceEventd, Op: raw.op, SubOp: raw.subOp, Extra: raw.alias, Domain: raw.domain, UUID: raw.uuid}
	if raw.op == events.OpStopped {
		// A stopped event read after the domain already runs again (a
		// quick restart) is stale: detaching now would drop the new run's
		// ports; its started event records the new taps.
		running, err := s.active(raw.uuid)
		return base, !running, err
	}
	xml, ok, err := s.liveXML(raw.uuid)
	if err != nil || !ok {
		return base, false, err
	}
	ev, err = events.FromDomainXML(events.SourceEventd, raw.op, []byte(xml))
	if err != nil {
		return base, false, fmt.Errorf("reading live XML of domain %q: %w", raw.domain, err)
	}
	ev.SubOp, ev.Extra = raw.subOp, raw.alias
	if raw.op == events.OpDeviceAdded {
		i := slices.IndexFunc(ev.NICs, func(n events.NIC) bool { return n.Alias == raw.alias })
		if i < 0 {
			return ev, false, nil
		}
		ev.NICs = []events.NIC{ev.NICs[i]}
	}
	return ev, true, nil
}

// active reports whether the domain with that UUID exists and runs.
func (s *conn) active(uuid string) (bool, error) {
	d, err := s.running(uuid)
	if d != nil {
		d.Free()
	}
	return d != nil, err
}

// running returns the domain with that UUID if it exists and runs, nil
// otherwise; the caller frees it.
func (s *conn) running(uuid string) (*libvirt.Domain, error) {
	d, err := s.c.LookupDomainByUUIDString(uuid)
	if errors.Is(err, libvirt.ERR_NO_DOMAIN) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("looking up domain %s: %w", uuid, lv(err))
	}
	active, err := d.IsActive()
	if errors.Is(err, libvirt.ERR_NO_DOMAIN) || (err == nil && !active) {
		d.Free()
		return nil, nil
	}
	if err != nil {
		d.Free()
		return nil, fmt.Errorf("reading state of domain %s: %w", uuid, lv(err))
	}
	return d, nil
}

// liveXML returns the live XML of the running domain with that UUID; ok is
// false when it does not exist or does not run.
func (s *conn) liveXML(uuid string) (string, bool, error) {
	d, err := s.running(uuid)
	if d == nil {
		return "", false, err
	}
	defer d.Free()
	xml, err := d.GetXMLDesc(0)
	if errors.Is(err, libvirt.ERR_NO_DOMAIN) {
		return "", false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("reading live XML of domain %s: %w", uuid, lv(err))
	}
	return xml, true, nil
}

// runningDomains returns every running domain as an event with Op
// reconnect, sorted by name, and when libvirt was asked (a domain started
// later is missing). A domain that stops while it is listed is left out.
// A domain whose XML cannot be represented (an events.InputError) is left
// out too, with an error logged: the hook would refuse it the same way.
func runningDomains(c *libvirt.Connect, log *slog.Logger) ([]events.Event, time.Time, error) {
	listed := time.Now()
	doms, err := c.ListAllDomains(libvirt.CONNECT_LIST_DOMAINS_ACTIVE)
	if err != nil {
		return nil, listed, fmt.Errorf("listing running domains: %w", lv(err))
	}
	defer func() {
		for i := range doms {
			_ = doms[i].Free()
		}
	}()
	var out []events.Event
	for i := range doms {
		xml, err := doms[i].GetXMLDesc(0)
		if errors.Is(err, libvirt.ERR_NO_DOMAIN) {
			continue
		}
		if err != nil {
			name, _ := doms[i].GetName()
			return nil, listed, fmt.Errorf("reading live XML of domain %q: %w", name, lv(err))
		}
		ev, err := events.FromDomainXML(events.SourceEventd, events.OpReconnect, []byte(xml))
		var ie *events.InputError
		if errors.As(err, &ie) {
			name, _ := doms[i].GetName()
			log.Error("leaving a running domain out of the reconcile: its XML cannot be represented", "domain", name, "err", err)
			continue
		}
		if err != nil {
			return nil, listed, err
		}
		out = append(out, ev)
	}
	slices.SortFunc(out, func(a, b events.Event) int { return strings.Compare(a.Domain, b.Domain) })
	return out, listed, nil
}

// closeReason names why libvirt closed a connection.
func closeReason(r libvirt.ConnectCloseReason) string {
	switch r {
	case libvirt.CONNECT_CLOSE_REASON_ERROR:
		return "error"
	case libvirt.CONNECT_CLOSE_REASON_EOF:
		return "eof"
	case libvirt.CONNECT_CLOSE_REASON_KEEPALIVE:
		return "keepalive"
	case libvirt.CONNECT_CLOSE_REASON_CLIENT:
		return "client"
	}
	return fmt.Sprintf("reason-%d", int(r))
}
