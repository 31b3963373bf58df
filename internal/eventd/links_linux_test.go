package eventd

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/virtbridge/virtbridge/internal/testenv/netnstest"
)

// startWatcher runs w until t ends and returns the times it fired.
func startWatcher(t *testing.T, w *linkWatcher) <-chan time.Time {
	t.Helper()
	fires := make(chan time.Time, 1000)
	w.fire = func() { fires <- time.Now() }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		w.run(ctx)
		close(done)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(2 * time.Second):
			t.Errorf("link watcher still running 2 s after its context ended")
		}
	})
	return fires
}

func watcherOptions(t *testing.T, o Options) Options {
	t.Helper()
	o.Handler = newRecorder()
	o.Log = testLog(t)
	o, err := o.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	return o
}

// TestLinkDrift changes links in a namespace of its own and checks which
// changes lead to a Reconcile, and that one comes a debounce after the
// change, once.
func TestLinkDrift(t *testing.T) {
	if testing.Short() {
		t.Skip("skipping: takes 7 s of debounces (-short)")
	}
	ns := netnstest.New(t, "vbed")
	ns.Script(t, `
		ip link add br0 type bridge
		ip tuntap add dev d0 mode tap
		ip link set d0 address fe:54:00:00:00:d0 master br0
		ip link set br0 up
		ip link set d0 up`)
	o := watcherOptions(t, Options{LinkNetns: &ns.Handle})
	w := newLinkWatcher(o, nil)
	subscribed := make(chan struct{}, 10)
	w.subscribe = func(ch chan<- netlink.LinkUpdate, done <-chan struct{}, so netlink.LinkSubscribeOptions) error {
		err := netlink.LinkSubscribeWithOptions(ch, done, so)
		subscribed <- struct{}{}
		return err
	}
	fires := startWatcher(t, w)
	select {
	case <-subscribed:
	case <-time.After(5 * time.Second):
		t.Fatal("no link subscription")
	}
	time.Sleep(100 * time.Millisecond) // let the seed finish

	quiet := 3 * o.Debounce
	for _, tc := range driftCases {
		changed := time.Now()
		ns.Script(t, tc.cmd)
		expectFires(t, fires, tc.what, changed, tc.drift, o.Debounce)
	}

	// A burst of changes is one Reconcile.
	changed := time.Now()
	for i := range 5 {
		ns.Script(t, fmt.Sprintf("ip link add burst%d type bridge", i))
	}
	select {
	case at := <-fires:
		t.Logf("burst of 5 links: Reconcile %v after the first", at.Sub(changed).Round(time.Millisecond))
	case <-time.After(2 * time.Second):
		t.Fatal("no Reconcile after a burst of link changes")
	}
	select {
	case <-fires:
		t.Errorf("a burst of changes gave more than one Reconcile")
	case <-time.After(quiet):
	}
}

// driftCases are link changes and whether each is drift.
var driftCases = []struct {
	what  string
	cmd   string
	drift bool
}{
	{"alias set (the hook names VMs in tap aliases)", "ip link set d0 alias vm1-net0", false},
	{"txqueuelen changed", "ip link set d0 txqueuelen 500", false},
	{"port pulled out of its bridge", "ip link set d0 nomaster", true},
	{"port put back", "ip link set d0 master br0", true},
	{"bridge set down", "ip link set br0 down", true},
	{"MTU changed", "ip link set d0 mtu 1400", true},
	{"link deleted", "ip link del d0", true},
	{"link added", "ip link add br1 type bridge", true},
}

// expectFires checks that a change made at changed leads to exactly one
// Reconcile, no sooner than the debounce, when drift is true, and to none
// otherwise.
func expectFires(t *testing.T, fires <-chan time.Time, what string, changed time.Time, drift bool, debounce time.Duration) {
	t.Helper()
	quiet := 3 * debounce
	if drift {
		select {
		case at := <-fires:
			d := at.Sub(changed)
			t.Logf("%s: Reconcile after %v", what, d.Round(time.Millisecond))
			if d < debounce {
				t.Errorf("%s: Reconcile after %v, before the %v debounce", what, d, debounce)
			}
		case <-time.After(2 * time.Second):
			t.Errorf("%s: no Reconcile within 2 s", what)
			return
		}
	}
	select {
	case at := <-fires:
		if drift {
			t.Errorf("%s: a second Reconcile for one change", what)
		} else {
			t.Errorf("%s: Reconcile %v later; it is not drift", what, at.Sub(changed))
		}
	case <-time.After(quiet):
	}
}

// TestLinkDebounceCap: changes that never stop for a debounce still lead
// to a Reconcile every maxDebounceFactor debounces.
func TestLinkDebounceCap(t *testing.T) {
	if testing.Short() {
		t.Skip("skipping: a 1.5 s storm of link changes (-short)")
	}
	ns := netnstest.New(t, "vbed")
	o := watcherOptions(t, Options{LinkNetns: &ns.Handle, Debounce: 100 * time.Millisecond})
	w := newLinkWatcher(o, nil)
	subscribed := make(chan struct{}, 10)
	w.subscribe = func(ch chan<- netlink.LinkUpdate, done <-chan struct{}, so netlink.LinkSubscribeOptions) error {
		err := netlink.LinkSubscribeWithOptions(ch, done, so)
		subscribed <- struct{}{}
		return err
	}
	fires := startWatcher(t, w)
	<-subscribed
	time.Sleep(100 * time.Millisecond)

	// Changes every Debounce/5 through a netlink handle (an `ip` process
	// per change can take longer than the debounce on a loaded machine,
	// which would let the debounce fire as it should).
	h, err := netlink.NewHandleAt(ns.Handle)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	tick := time.NewTicker(o.Debounce / 5)
	defer tick.Stop()
	limit := maxDebounceFactor * o.Debounce
	begin := time.Now()
	var first time.Time
	for i := 0; time.Since(begin) < limit+500*time.Millisecond; {
		select {
		case at := <-fires:
			if first.IsZero() {
				first = at
			}
		case <-tick.C:
			if err := h.LinkAdd(&netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: fmt.Sprintf("storm%d", i)}}); err != nil {
				t.Fatalf("adding link storm%d: %v", i, err)
			}
			i++
		}
	}
	if first.IsZero() {
		t.Fatalf("no Reconcile during %v of changes every %v (cap %v)", time.Since(begin), o.Debounce/5, limit)
	}
	if d := first.Sub(begin); d < limit-o.Debounce || d > limit+300*time.Millisecond {
		t.Errorf("first Reconcile %v into the storm, want about %v", d, limit)
	}
}

// fakeSub is one subscription made by a fake subscribe: the test sends
// updates and kills it the way vishvananda/netlink does, by closing ch.
type fakeSub struct {
	ch    chan<- netlink.LinkUpdate
	done  <-chan struct{}
	close func()
}

// TestLinkWatcherResubscribes: a failed subscribe is retried, a
// subscription that closes is replaced, and the replacement asks for a
// resync without waiting for an update, since changes in between were
// lost.
func TestLinkWatcherResubscribes(t *testing.T) {
	o := watcherOptions(t, Options{BackoffMin: 10 * time.Millisecond, BackoffMax: 20 * time.Millisecond})
	w := newLinkWatcher(o, nil)
	subs := make(chan fakeSub, 10)
	var mu sync.Mutex
	failures := 1
	w.subscribe = func(ch chan<- netlink.LinkUpdate, done <-chan struct{}, _ netlink.LinkSubscribeOptions) error {
		mu.Lock()
		defer mu.Unlock()
		if failures > 0 {
			failures--
			return errors.New("no netlink today")
		}
		var once sync.Once
		s := fakeSub{ch: ch, done: done, close: func() { once.Do(func() { close(ch) }) }}
		go func() {
			<-done
			s.close()
		}()
		subs <- s
		return nil
	}
	fires := startWatcher(t, w)
	var s1 fakeSub
	select {
	case s1 = <-subs:
	case <-time.After(2 * time.Second):
		t.Fatal("subscribe not retried after a failure")
	}
	s1.ch <- netlink.LinkUpdate{
		Header: unix.NlMsghdr{Type: unix.RTM_NEWLINK},
		Link:   &netlink.Dummy{LinkAttrs: netlink.LinkAttrs{Index: 1 << 30, Name: "ghost0"}},
	}
	select {
	case <-fires:
	case <-time.After(2 * time.Second):
		t.Fatal("no Reconcile for a new link")
	}

	s1.close() // a receive error
	select {
	case <-subs:
	case <-time.After(2 * time.Second):
		t.Fatal("no new subscription after the first one closed")
	}
	// Nothing is sent on the new subscription: a Reconcile now is the
	// resync.
	select {
	case <-fires:
	case <-time.After(2 * time.Second):
		t.Fatal("no resync Reconcile after resubscribing")
	}
	select {
	case <-s1.done:
	default:
		t.Error("the closed subscription's done channel was not closed")
	}
}
