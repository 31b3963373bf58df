package lease

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"

	"github.com/virtbridge/virtbridge/internal/change"
)

// Transport exchanges DHCP messages on the bridge.
type Transport interface {
	// Exchange sends req to the server to (invalid: broadcast) and returns
	// the ACK or NAK answering it.
	Exchange(ctx context.Context, req *dhcpv4.DHCPv4, to netip.Addr) (*dhcpv4.DHCPv4, error)
	// Acquire gets a new lease: DISCOVER, OFFER, REQUEST and the ACK.
	Acquire(ctx context.Context, mods ...dhcpv4.Modifier) (*dhcpv4.DHCPv4, error)
}

// Addresser keeps the lease's address on the bridge.
type Addresser interface {
	// Set puts addr on the bridge with valid and preferred lifetime life,
	// or gives it that lifetime when it is there. Idempotent.
	Set(addr netip.Prefix, life time.Duration) error
	// Remove deletes addr from the bridge; already gone is success.
	Remove(addr netip.Prefix) error
}

// Recorder is told what a Keeper does: host changes to journal, its state
// (for plan, status, doctor and the hook) and problems to log.
type Recorder interface {
	Change(ctx context.Context, c change.Change)
	State(s Status)
	Problem(err error)
}

// Status is a Keeper's state, as shown to people and other processes.
type Status struct {
	Bridge   string    `json:"bridge"`
	Uplink   string    `json:"uplink"`
	Phase    Phase     `json:"phase"`
	Addr     string    `json:"address,omitempty"`
	Server   string    `json:"server,omitempty"`
	Expires  time.Time `json:"expires,omitzero"`
	RenewAt  time.Time `json:"renew_at,omitzero"`
	RebindAt time.Time `json:"rebind_at,omitzero"`
	PID      int       `json:"pid,omitempty"`
	ClientID string    `json:"client_id,omitempty"` // hex
}

// Keeper keeps one bridge's lease. Fill every field but Now and Wait.
type Keeper struct {
	Bridge, Uplink string
	ID             Identity
	Transport      Transport
	Addr           Addresser
	Rec            Recorder
	// Routes are the bridge's routes that go with the address: when a
	// lost lease is followed by another, they follow it. Nil: left alone.
	Routes Routes
	// Now and Wait are the clock: nil is time.Now and a context deadline
	// (tests give a fake one).
	Now  func() time.Time
	Wait func(ctx context.Context, until time.Time) error

	// held are the routes that went with the address of lost, a lease
	// lost: they follow the next lease.
	held []Route
	lost Lease
}

// Run keeps the lease l (an address taken over, unconfirmed, or none)
// until ctx ends, then returns the lease it holds, leaving the address on
// the bridge with the lifetime it has.
func (k *Keeper) Run(ctx context.Context, l Lease) Lease {
	for ctx.Err() == nil {
		now := k.now()
		p, at := Next(l, now)
		k.Rec.State(k.status(l, p))
		if at.After(now) {
			k.wait(ctx, at)
			continue
		}
		next, err := k.step(ctx, l, p, now)
		if ctx.Err() != nil {
			return l
		}
		if err != nil {
			k.Rec.Problem(fmt.Errorf("keeping the lease of bridge %q (%s): %w", k.Bridge, p, err))
			k.wait(ctx, Retry(l, p, now))
			continue
		}
		l = next
	}
	return l
}

// step does what phase p asks of l at now and returns the lease then held.
func (k *Keeper) step(ctx context.Context, l Lease, p Phase, now time.Time) (Lease, error) {
	switch p {
	case Expired:
		return k.lose(ctx, l, "the lease ended unrenewed")
	case Init:
		ack, err := k.Transport.Acquire(ctx, k.ID.Modifiers()...)
		if err != nil {
			return l, fmt.Errorf("getting a new lease: %w", err)
		}
		return k.granted(ctx, l, ack, now, change.LeaseKept)
	}
	req, to, err := Request(k.ID, l, p)
	if err != nil {
		return l, err
	}
	ans, err := k.Transport.Exchange(ctx, req, to)
	if err != nil {
		return l, fmt.Errorf("asking for %s: %w", l.Addr, err)
	}
	if ans.MessageType() == dhcpv4.MessageTypeNak {
		return k.lose(ctx, l, fmt.Sprintf("server %s said NAK (%s)", ans.ServerIdentifier(), ans.Message()))
	}
	kind := change.LeaseRenewed
	if p == Rebooting {
		kind = change.LeaseKept
	}
	return k.granted(ctx, l, ans, now, kind)
}

// granted puts the lease ack grants on the bridge, with its lifetime, and
// takes an old address of another value off; journaled as kind.
func (k *Keeper) granted(ctx context.Context, old Lease, ack *dhcpv4.DHCPv4, sent time.Time, kind change.Kind) (Lease, error) {
	l, err := FromAck(ack, sent, old)
	if err != nil {
		return old, err
	}
	if err := k.Addr.Set(l.Addr, l.Remaining(k.now())); err != nil {
		return old, err
	}
	from, held := k.lost, k.held
	if old.Addr.IsValid() && old.Addr != l.Addr && k.Routes != nil {
		from = old
		var err error
		if held, err = k.Routes.Held(old.Addr); err != nil {
			k.Rec.Problem(err)
		}
	}
	if old.Addr.IsValid() && old.Addr != l.Addr {
		if err := k.Addr.Remove(old.Addr); err != nil {
			k.Rec.Problem(err)
		}
	}
	c := change.Change{Kind: kind, Object: k.Bridge, After: describe(l)}
	if old.Addr.IsValid() {
		c.Before = describe(old)
	}
	k.Rec.Change(ctx, c)
	if from.Addr.IsValid() && (from.Addr != l.Addr || !old.Addr.IsValid()) {
		k.follow(ctx, held, from, l)
	}
	return l, nil
}

// follow makes the routes held with the address of from go with l's
// (Follow), each journaled route-moved; those that cannot are named.
func (k *Keeper) follow(ctx context.Context, held []Route, from, l Lease) {
	k.held, k.lost = nil, Lease{}
	if k.Routes == nil {
		return
	}
	moves, skipped := Follow(held, from, l)
	for _, m := range moves {
		if err := k.Routes.Add(m.To); err != nil {
			k.Rec.Problem(err)
			continue
		}
		c := change.Change{Kind: change.RouteMoved, Object: k.Bridge, After: m.To.String() + " (follows the lease's address " + l.Addr.String() + ")"}
		if m.From != (Route{}) {
			c.Before = m.From.String()
		}
		k.Rec.Change(ctx, c)
	}
	for _, r := range skipped {
		k.Rec.Problem(fmt.Errorf("route %s through bridge %q cannot follow the lease's new address %s: its gateway is outside that subnet", r, k.Bridge, l.Addr))
	}
}

// lose takes the address of l off the bridge: the lease is gone (why).
func (k *Keeper) lose(ctx context.Context, l Lease, why string) (Lease, error) {
	if k.Routes != nil {
		held, err := k.Routes.Held(l.Addr)
		if err != nil {
			k.Rec.Problem(err)
		}
		k.held, k.lost = held, l
	}
	if err := k.Addr.Remove(l.Addr); err != nil {
		return l, err
	}
	k.Rec.Change(ctx, change.Change{Kind: change.LeaseLost, Object: k.Bridge, Before: describe(l), After: why})
	return Lease{}, nil
}

func describe(l Lease) string {
	s := l.Addr.String()
	if l.Server.IsValid() {
		s += " from " + l.Server.String()
	}
	if l.Confirmed {
		s += fmt.Sprintf(" for %v", l.Duration.Round(time.Second))
	}
	return s + " until " + l.Expiry().UTC().Format(time.RFC3339)
}

func (k *Keeper) status(l Lease, p Phase) Status {
	s := Status{Bridge: k.Bridge, Uplink: k.Uplink, Phase: p}
	if l.Addr.IsValid() {
		s.Addr, s.Expires = l.Addr.String(), l.Expiry()
	}
	if l.Server.IsValid() {
		s.Server = l.Server.String()
	}
	if l.Confirmed {
		s.RenewAt, s.RebindAt = l.RenewAt(), l.RebindAt()
	}
	return s
}

func (k *Keeper) now() time.Time {
	if k.Now != nil {
		return k.Now()
	}
	return time.Now()
}

// wait waits until until or the end of ctx.
func (k *Keeper) wait(ctx context.Context, until time.Time) {
	if k.Wait != nil {
		_ = k.Wait(ctx, until)
		return
	}
	_ = WaitUntil(ctx, until)
}

// WaitUntil waits until t or the end of ctx, whichever is first, with a
// context deadline: the context is the clock. It returns ctx's error.
func WaitUntil(ctx context.Context, t time.Time) error {
	c, cancel := context.WithDeadline(ctx, t)
	defer cancel()
	<-c.Done()
	if err := ctx.Err(); err != nil {
		return err
	}
	if !errors.Is(c.Err(), context.DeadlineExceeded) {
		return c.Err()
	}
	return nil
}
