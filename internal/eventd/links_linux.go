package eventd

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// maxDebounceFactor bounds how long a steady stream of link changes can
// delay the drift Reconcile, in multiples of the debounce.
const maxDebounceFactor = 10

// subscribeFunc is netlink.LinkSubscribeWithOptions; tests replace it.
type subscribeFunc func(ch chan<- netlink.LinkUpdate, done <-chan struct{}, o netlink.LinkSubscribeOptions) error

// linkState is what of a link matters to virtbridge's policy. Changes of
// anything else (carrier, statistics, the alias the hook writes on taps)
// are not drift.
type linkState struct {
	name   string
	master int
	up     bool
	mtu    int
}

func stateOf(l netlink.Link) linkState {
	a := l.Attrs()
	return linkState{name: a.Name, master: a.MasterIndex, up: a.Flags&unix.IFF_UP != 0, mtu: a.MTU}
}

// linkWatcher reports drift: links appearing, disappearing, or changing
// name, master, up state or MTU. It subscribes to the kernel's link
// updates, and when the subscription closes (vishvananda/netlink closes
// the channel on any receive error) subscribes again and asks for a
// resync.
type linkWatcher struct {
	ns        *netns.NsHandle // nil: the daemon's own namespace
	debounce  time.Duration
	resub     backoff
	log       *slog.Logger
	subscribe subscribeFunc
	fire      func() // asks for a Reconcile; must not block

	links map[int]linkState // by index, as last seen
}

func newLinkWatcher(o Options, fire func()) *linkWatcher {
	return &linkWatcher{
		ns:        o.LinkNetns,
		debounce:  o.Debounce,
		resub:     backoff{min: o.BackoffMin, max: o.BackoffMax},
		log:       o.Log,
		subscribe: netlink.LinkSubscribeWithOptions,
		fire:      fire,
	}
}

// run watches until ctx ends.
func (w *linkWatcher) run(ctx context.Context) {
	first := true
	for ctx.Err() == nil {
		ch := make(chan netlink.LinkUpdate, 64)
		done := make(chan struct{})
		err := w.subscribe(ch, done, netlink.LinkSubscribeOptions{
			Namespace:     w.ns,
			ErrorCallback: func(err error) { w.log.Debug("link subscription", "err", err) },
		})
		if err != nil {
			close(done)
			delay := w.resub.next()
			w.log.Warn("subscribing to link changes; retrying", "err", err, "retry_in", delay)
			sleepCtx(ctx, delay)
			continue
		}
		w.seed()
		if !first {
			// Changes between the old subscription and the new one are
			// lost: resync.
			w.log.Info("link subscription restored; reconciling")
			w.fire()
		}
		first = false
		began := time.Now()
		w.consume(ctx, ch)
		close(done)
		for range ch { // the subscription closes ch once it sees done
		}
		if ctx.Err() != nil {
			return
		}
		if time.Since(began) > time.Minute {
			w.resub.reset()
		}
		delay := w.resub.next()
		w.log.Warn("link subscription closed; resubscribing", "in", delay)
		sleepCtx(ctx, delay)
	}
}

// seed records the links that exist now, so that updates which change
// nothing that matters can be told apart. Without it every first update of
// a link counts as drift, which is safe.
func (w *linkWatcher) seed() {
	w.links = map[int]linkState{}
	h, err := w.handle()
	if err != nil {
		w.log.Warn("listing links", "err", err)
		return
	}
	defer h.Close()
	links, err := h.LinkList()
	if err != nil {
		w.log.Warn("listing links", "err", err)
		return
	}
	for _, l := range links {
		w.links[l.Attrs().Index] = stateOf(l)
	}
}

func (w *linkWatcher) handle() (*netlink.Handle, error) {
	if w.ns == nil {
		return netlink.NewHandle(unix.NETLINK_ROUTE)
	}
	h, err := netlink.NewHandleAt(*w.ns, unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("opening netlink in namespace: %w", err)
	}
	return h, nil
}

// consume reads updates until ch closes or ctx ends, and fires once the
// relevant ones have been quiet for the debounce (or have gone on for
// maxDebounceFactor debounces). A pending fire is done before returning.
func (w *linkWatcher) consume(ctx context.Context, ch <-chan netlink.LinkUpdate) {
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	var pending bool
	var since time.Time // first change of the pending batch
	for {
		select {
		case <-ctx.Done():
			return
		case u, ok := <-ch:
			if !ok {
				if pending {
					w.fire()
				}
				return
			}
			why := w.relevant(u)
			if why == "" {
				continue
			}
			now := time.Now()
			if !pending {
				pending, since = true, now
				w.log.Debug("link drift", "link", u.Link.Attrs().Name, "change", why)
			}
			delay := w.debounce
			if left := since.Add(maxDebounceFactor * w.debounce).Sub(now); left < delay {
				delay = max(left, 0)
			}
			timer.Reset(delay)
		case <-timer.C:
			pending = false
			w.fire()
		}
	}
}

// relevant updates the known state with u and says what changed that
// matters, or "" when nothing did.
func (w *linkWatcher) relevant(u netlink.LinkUpdate) string {
	// AF_BRIDGE messages report a port's bridge attributes; the same change
	// also comes as an AF_UNSPEC message with the link's master.
	if u.Family == unix.AF_BRIDGE {
		return ""
	}
	idx := int(u.Index)
	if u.Header.Type == unix.RTM_DELLINK {
		delete(w.links, idx)
		return "deleted"
	}
	st := stateOf(u.Link)
	old, known := w.links[idx]
	w.links[idx] = st
	switch {
	case !known:
		return "new"
	case old.name != st.name:
		return "renamed"
	case old.master != st.master:
		return "master"
	case old.up != st.up:
		return "up/down"
	case old.mtu != st.mtu:
		return "mtu"
	}
	return ""
}

// sleepCtx waits for d or until ctx ends.
func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
