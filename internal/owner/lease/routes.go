package lease

import (
	"fmt"
	"net/netip"
)

// Route is an IPv4 route through the bridge that goes with the lease's
// address: through a gateway of its subnet, or with it as source.
type Route struct {
	Dst    netip.Prefix // invalid: the default route
	Gw     netip.Addr   // invalid: none (on-link)
	Src    netip.Addr   // invalid: none
	Table  int          // 0: main
	Metric int
}

func (r Route) String() string {
	s := "default"
	if r.Dst.IsValid() && r.Dst.Bits() > 0 {
		s = r.Dst.String()
	}
	if r.Gw.IsValid() {
		s += " via " + r.Gw.String()
	}
	if r.Src.IsValid() {
		s += " src " + r.Src.String()
	}
	if r.Table != 0 && r.Table != mainTable {
		s += fmt.Sprintf(" table %d", r.Table)
	}
	if r.Metric != 0 {
		s += fmt.Sprintf(" metric %d", r.Metric)
	}
	return s
}

const mainTable = 254

// Routes reads and makes the bridge's routes.
type Routes interface {
	// Held are the routes through the bridge that go with addr: a
	// gateway inside addr's subnet, or addr as source (the kernel drops
	// them with the address).
	Held(addr netip.Prefix) ([]Route, error)
	// Add makes r through the bridge, or replaces it. Idempotent.
	Add(r Route) error
}

// Move is one route following the lease's address: From (invalid Gw and
// Dst for a route the lease's router makes anew) becomes To.
type Move struct{ From, To Route }

// Follow is where the routes held with old's address go once the lease
// gives new (RFC 2131's client configures its new lease's router option):
// the old router's routes go through the new router, the old address as
// source becomes the new one; a route through another gateway outside
// new's subnet cannot follow (skipped). With no default route among held,
// the new router gets one, as a DHCP client makes it.
func Follow(held []Route, old, new Lease) (moves []Move, skipped []Route) {
	def := false
	for _, r := range held {
		n := r
		switch {
		case r.Gw.IsValid() && r.Gw == old.Router && new.Router.IsValid():
			n.Gw = new.Router
		case r.Gw.IsValid() && !new.Addr.Contains(r.Gw):
			skipped = append(skipped, r)
			continue
		}
		if r.Src.IsValid() && r.Src == old.Addr.Addr() {
			n.Src = new.Addr.Addr()
		}
		if !r.Dst.IsValid() || r.Dst.Bits() == 0 {
			def = true
		}
		moves = append(moves, Move{From: r, To: n})
	}
	if !def && new.Router.IsValid() {
		moves = append(moves, Move{To: Route{Gw: new.Router}})
	}
	return moves, skipped
}
