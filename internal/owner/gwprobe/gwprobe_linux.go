// Package gwprobe checks that a host still reaches its default gateway
// through a link: the probe after every uplink handoff.
package gwprobe

import (
	"context"
	"errors"
	"fmt"
	"net"
	"runtime"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// ErrUnreachable: the gateway did not answer in time.
var ErrUnreachable = errors.New("default gateway unreachable")

// Result is what a probe saw.
type Result struct {
	Gateway net.IP        // the IPv4 default route's gateway through the link
	Took    time.Duration // until the gateway answered (or the probe gave up)
	Seen    string        // the last state seen, for messages
}

// Gateway waits, until ctx ends, for the main table's IPv4 default route
// to go through link and its gateway to answer ARP on link: it sends a UDP
// datagram to the gateway (port 9, discard) every 200 ms from a socket of
// namespace ns (netns.None(): the caller's) and reads the neighbour entry
// back; REACHABLE or PERMANENT is an answer. It changes nothing but the
// kernel's neighbour cache. The error wraps ErrUnreachable and says what
// was seen.
func Gateway(ctx context.Context, ns netns.NsHandle, link string) (Result, error) {
	start := time.Now()
	var r Result
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		return r, fmt.Errorf("probing the gateway through %q: opening netlink: %w", link, err)
	}
	defer h.Close()
	fd, err := udpSocketAt(ns)
	if err != nil {
		return r, fmt.Errorf("probing the gateway through %q: %w", link, err)
	}
	defer unix.Close(fd)
	r.Seen = "no default route through " + link
	for {
		if ok := r.try(h, fd, link); ok {
			r.Took = time.Since(start)
			return r, nil
		}
		select {
		case <-ctx.Done():
			r.Took = time.Since(start)
			return r, fmt.Errorf("probing the gateway through %q for %v: %s: %w", link, r.Took.Round(time.Millisecond), r.Seen, ErrUnreachable)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// try is one round: find the gateway, poke it, read the neighbour state.
func (r *Result) try(h *netlink.Handle, fd int, link string) bool {
	l, err := h.LinkByName(link)
	if err != nil {
		r.Seen = fmt.Sprintf("link %q: %v", link, err)
		return false
	}
	routes, err := h.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Table: unix.RT_TABLE_MAIN, LinkIndex: l.Attrs().Index},
		netlink.RT_FILTER_TABLE|netlink.RT_FILTER_OIF)
	if err != nil {
		r.Seen = fmt.Sprintf("listing routes: %v", err)
		return false
	}
	r.Gateway = nil
	for _, rt := range routes {
		if (rt.Dst == nil || rt.Dst.IP.IsUnspecified()) && rt.Gw != nil {
			r.Gateway = rt.Gw.To4()
		}
	}
	if r.Gateway == nil {
		r.Seen = "no IPv4 default route through " + link
		return false
	}
	sa := &unix.SockaddrInet4{Port: 9}
	copy(sa.Addr[:], r.Gateway)
	if err := unix.Sendto(fd, []byte("virtbridge gateway probe"), unix.MSG_DONTWAIT, sa); err != nil {
		r.Seen = fmt.Sprintf("sending to gateway %s: %v", r.Gateway, err)
	}
	neighs, err := h.NeighList(l.Attrs().Index, netlink.FAMILY_V4)
	if err != nil {
		r.Seen = fmt.Sprintf("listing neighbours: %v", err)
		return false
	}
	r.Seen = fmt.Sprintf("gateway %s has no neighbour entry on %s", r.Gateway, link)
	for _, n := range neighs {
		if n.IP.Equal(r.Gateway) {
			r.Seen = fmt.Sprintf("gateway %s is %s on %s", r.Gateway, neighState(n.State), link)
			return n.State&(netlink.NUD_REACHABLE|netlink.NUD_PERMANENT) != 0
		}
	}
	return false
}

func neighState(s int) string {
	switch {
	case s&netlink.NUD_INCOMPLETE != 0:
		return "INCOMPLETE (no ARP answer)"
	case s&netlink.NUD_FAILED != 0:
		return "FAILED (no ARP answer)"
	case s&netlink.NUD_STALE != 0:
		return "STALE"
	case s&(netlink.NUD_DELAY|netlink.NUD_PROBE) != 0:
		return "being probed"
	}
	return fmt.Sprintf("in state %#x", s)
}

// udpSocketAt opens a UDP socket in namespace ns. A socket stays in the
// namespace it was made in; the thread that switched is never unlocked,
// so Go retires it instead of reusing it in the wrong namespace.
func udpSocketAt(ns netns.NsHandle) (int, error) {
	if ns == netns.None() {
		return unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	}
	type res struct {
		fd  int
		err error
	}
	ch := make(chan res, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: see above
		if err := netns.Set(ns); err != nil {
			ch <- res{-1, fmt.Errorf("entering the network namespace: %w", err)}
			return
		}
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		ch <- res{fd, err}
	}()
	r := <-ch
	return r.fd, r.err
}
