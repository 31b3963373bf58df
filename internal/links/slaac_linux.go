package links

import (
	"errors"
	"fmt"
	"net"
	"slices"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/virtbridge/virtbridge/internal/change"
	"github.com/virtbridge/virtbridge/internal/owner/dhcp"
)

// The router-advertisement (RA) role: an uplink that does SLAAC learns
// from the router's advertisements an address (IFA_PROTO kernel_ra), the
// on-link prefix route and a `proto ra` default route, all with lifetimes
// that each advertisement refreshes. Once the uplink is a bridge port its
// frames, advertisements included, go to the bridge: nothing refreshes
// that state any more, neighbour discovery for the address is answered by
// nobody (the bridge does not hold it), and the host loses IPv6 on that
// network. So the bridge takes the role over:
//
//  1. the bridge accepts advertisements: accept_ra 1, or 2 where IPv6
//     forwarding is (or, by the configuration, will be) on for it — with
//     forwarding on, 1 ignores them and turning forwarding on purges the
//     learnt default routes of every link without 2; autoconf as on the
//     uplink;
//  2. the uplink stops accepting them (accept_ra 0), so it never learns
//     again while enslaved;
//  3. the RA-made addresses move to the bridge with their remaining
//     lifetimes, IFA_PROTO kernel_ra and nodad (they are in use on this
//     segment already): the bridge has the uplink's MAC (pinned), so the
//     next advertisement derives the same address there and refreshes the
//     moved one, as the kernel does for any address of the prefix
//     (verified: lifetimes and prefix route refreshed);
//  4. the learnt routes move to the bridge with their remaining expiry,
//     same protocol and preference; the kernel's prefix route of a moved
//     address comes with it. A learnt default route cannot be copied as
//     it is: the kernel refuses a router's advertisement whose default
//     route exists under the same key without its own flags ("RA: failed
//     to add default route", and the rest of the advertisement is
//     dropped). So its copy takes the next metric: the bridge's own route
//     comes with the next advertisement, beside it, and the copy expires
//     when the router's lifetime would have ended it. There is no gap and
//     no router solicitation is needed (a new bridge sends one itself
//     once its link-local address is ready);
//  5. the learnt routes and addresses are deleted from the uplink (a
//     SLAAC address's prefix route outlives the address, so it goes by
//     itself).
//
// Every change records itself and pushes its undo. ReleaseBridge runs the
// same steps backwards, giving the role back to the uplink: accept_ra and
// autoconf as the bridge had them, the bridge's learnt addresses and
// routes (one copy per router), and the bridge's accept_ra 0.

// raState is what a link learnt from router advertisements.
type raState struct {
	addrs  []netlink.Addr // RA-made (IFA_PROTO kernel_ra) and temporary addresses
	routes []raRoute      // proto ra routes, and RA prefix routes (proto kernel with an expiry)
}

func (s raState) empty() bool { return len(s.addrs) == 0 && len(s.routes) == 0 }

// raAddr: an address the kernel made from advertisements (or a temporary
// address derived from one).
func raAddr(a netlink.Addr) bool {
	return a.IP.To4() == nil && a.Scope == unix.RT_SCOPE_UNIVERSE && !a.IP.IsLinkLocalUnicast() &&
		(a.Flags&flagSLAAC != 0 || a.Flags&unix.IFA_F_TEMPORARY != 0)
}

// raLearnt: a route learnt from advertisements: proto ra (default routes,
// route information options), or an on-link prefix route (proto kernel)
// with an expiry, which only advertisements and dynamic addresses make.
func raLearnt(r raRoute) bool {
	if r.proto == unix.RTPROT_RA {
		return true
	}
	return r.proto == unix.RTPROT_KERNEL && r.expires > 0 && r.gw == nil && r.dst != nil && r.dst.String() != "fe80::/64"
}

// raStateOf reads what link learnt from advertisements. Prefix routes of
// dynamic addresses that are not RA-made (a DHCPv6 lease) are not.
func (m *Manager) raStateOf(l netlink.Link) (raState, error) {
	all, err := m.addrs(l, func(netlink.Addr) bool { return true })
	if err != nil {
		return raState{}, err
	}
	rs, err := m.v6Routes(l.Attrs().Index)
	if err != nil {
		return raState{}, fmt.Errorf("reading the routes of %q: %w", l.Attrs().Name, err)
	}
	var s raState
	s.addrs = slices.DeleteFunc(all, func(a netlink.Addr) bool { return !raAddr(a) })
	for _, r := range rs {
		if raLearnt(r) && !leasePrefix(r, all) {
			r.linkName = l.Attrs().Name
			s.routes = append(s.routes, r)
		}
	}
	return s, nil
}

// leasePrefix: r is the prefix route of a dynamic address that is no
// SLAAC one (a lease, which checkDynamic refuses or moves).
func leasePrefix(r raRoute, addrs []netlink.Addr) bool {
	return r.dst != nil && slices.ContainsFunc(addrs, func(a netlink.Addr) bool {
		if a.IPNet == nil || a.IP.To4() != nil || raAddr(a) || a.Flags&unix.IFA_F_PERMANENT != 0 {
			return false
		}
		return (&net.IPNet{IP: a.IP.Mask(a.Mask), Mask: a.Mask}).String() == r.dst.String()
	})
}

// raConf is a link's RA settings.
type raConf struct{ acceptRA, autoconf, forwarding int }

// accepts: the link acts on advertisements.
func (c raConf) accepts() bool { return c.acceptRA == 2 || c.acceptRA == 1 && c.forwarding == 0 }

func (m *Manager) raConfOf(link string) (raConf, error) {
	v, err := m.ipv6Conf(link, "accept_ra", "autoconf", "forwarding")
	if err != nil {
		return raConf{}, err
	}
	return raConf{acceptRA: v[0], autoconf: v[1], forwarding: v[2]}, nil
}

// takeRA hands the RA role of r.up over to r.br (see above): when r.up
// accepts advertisements or holds what it learnt from them; forward: the
// configuration turns IPv6 forwarding on. It is idempotent: an uplink that
// no longer accepts them and holds nothing learnt changes nothing but
// keepRA. A link without IPv6 (no /proc/sys/net/ipv6/conf entry) has no
// role to hand over. A route undone back onto the uplink comes back as
// its copy too (copied).
func (m *Manager) takeRA(r *run, forward bool) error {
	upName, brName := r.up.Attrs().Name, r.br.Attrs().Name
	upConf, err := m.raConfOf(upName)
	if errors.Is(err, errNoIPv6) {
		return nil
	}
	if err != nil {
		return err
	}
	brConf, err := m.raConfOf(brName)
	if err != nil {
		return err
	}
	state, err := m.raStateOf(r.up)
	if err != nil {
		return err
	}
	forward = forward || brConf.forwarding == 1
	want := 1
	if forward || upConf.acceptRA == 2 {
		want = 2
	}
	if !upConf.accepts() && state.empty() {
		return m.keepRA(r, brConf, want)
	}
	if brConf.acceptRA != want {
		if err := m.setRAConf(r, brName, "accept_ra", brConf.acceptRA, want); err != nil {
			return err
		}
	}
	if brConf.autoconf != upConf.autoconf {
		if err := m.setRAConf(r, brName, "autoconf", brConf.autoconf, upConf.autoconf); err != nil {
			return err
		}
	}
	if upConf.acceptRA != 0 {
		if err := m.setRAConf(r, upName, "accept_ra", upConf.acceptRA, 0); err != nil {
			return err
		}
	}
	return m.moveRAState(r, state)
}

// keepRA is takeRA on a bridge whose uplink has nothing to hand over: a
// bridge holding learnt state (it took the role) that does not act on
// advertisements — accept_ra 0, or 1 with IPv6 forwarding on or about to
// be — gets accept_ra want, or what it learnt expires unrefreshed.
func (m *Manager) keepRA(r *run, brConf raConf, want int) error {
	fwd := brConf.forwarding == 1 || want == 2
	if brConf.acceptRA == 2 || brConf.acceptRA == 1 && !fwd {
		return nil
	}
	brState, err := m.raStateOf(r.br)
	if err != nil || brState.empty() {
		return err
	}
	return m.setRAConf(r, r.br.Attrs().Name, "accept_ra", brConf.acceptRA, max(want, 1+boolInt(fwd)))
}

// setRAConf sets net.ipv6.conf.LINK.KEY from old to v, with its undo.
func (m *Manager) setRAConf(r *run, link, key string, old, v int) error {
	if err := m.step("sysctl-set", link+"."+key); err != nil {
		return err
	}
	if err := m.setIPv6Conf(link, key, v); err != nil {
		return err
	}
	r.rv.Add(func() error {
		err := m.setIPv6Conf(link, key, old)
		if errors.Is(err, errNoIPv6) {
			return nil // the link is gone (a created bridge undone)
		}
		return err
	})
	r.record(change.SysctlChanged, "net.ipv6.conf."+link+"."+key, fmt.Sprint(old), fmt.Sprint(v))
	return nil
}

// moveRAState moves the learnt addresses and routes of r.up to r.br, add
// before delete, each with its undo (see the steps above).
func (m *Manager) moveRAState(r *run, s raState) error {
	upName, brName := r.up.Attrs().Name, r.br.Attrs().Name
	br, up := r.br.Attrs().Index, r.up.Attrs().Index
	have, err := m.raStateOf(r.br)
	if err != nil {
		return err
	}
	for _, a := range addOrder(s.addrs) {
		if slices.ContainsFunc(have.addrs, func(b netlink.Addr) bool { return b.IP.Equal(a.IP) }) {
			continue
		}
		if err := m.addRAAddr(r, a, br, brName); err != nil {
			return err
		}
	}
	onBridge, err := m.v6Routes(br)
	if err != nil {
		return err
	}
	for _, rt := range s.routes {
		if slices.ContainsFunc(s.routes, func(o raRoute) bool {
			return o.table == rt.table && o.dst.String() == rt.dst.String() && o.gw.Equal(rt.gw) && o.metric < rt.metric
		}) {
			continue // a copy made by an earlier handoff, beside the kernel's own
		}
		c := rt.copied()
		if slices.ContainsFunc(onBridge, func(b raRoute) bool {
			return b.table == c.table && b.dst.String() == c.dst.String() && b.gw.Equal(c.gw) && (b.metric == c.metric || b.metric == rt.metric)
		}) {
			continue
		}
		if err := m.addRARoute(r, c, br, brName); err != nil {
			return err
		}
	}
	for _, rt := range s.routes {
		if err := m.delRARoute(r, rt, up, upName); err != nil {
			return err
		}
	}
	for _, a := range s.addrs {
		if err := m.delAddr(r, r.up, a, upName); err != nil {
			return err
		}
		r.record(change.AddressMoved, addrString(a)+" (SLAAC)", upName, brName)
	}
	return nil
}

func (m *Manager) addRAAddr(r *run, a netlink.Addr, br int, brName string) error {
	if err := m.step("address-add", addrString(a)); err != nil {
		return err
	}
	proto := 0
	if a.Flags&flagSLAAC != 0 {
		proto = dhcp.IfaprotKernelRA
	}
	if err := m.addV6Addr(a, br, proto); errors.Is(err, unix.EEXIST) {
		return nil
	} else if err != nil {
		return fmt.Errorf("adding address %s to bridge %q: %w", addrString(a), brName, err)
	}
	c := onLink(a, "", brName)
	r.rv.Add(func() error {
		err := m.h.AddrDel(r.br, cp(c))
		if errors.Is(err, unix.EADDRNOTAVAIL) || isNotFound(err) {
			return nil
		}
		return m.wrap(fmt.Sprintf("deleting address %s from bridge %q", addrString(a), brName), err)
	})
	return nil
}

func (m *Manager) addRARoute(r *run, rt raRoute, br int, brName string) error {
	if err := m.step("route-add", rt.String()); err != nil {
		return err
	}
	if err := m.addV6Route(rt, br); errors.Is(err, unix.EEXIST) {
		return nil
	} else if err != nil {
		return fmt.Errorf("adding route %q on bridge %q: %w", rt.String(), brName, err)
	}
	r.rv.Add(func() error {
		err := m.delV6Route(rt, br)
		if errors.Is(err, unix.ESRCH) || errors.Is(err, unix.ENODEV) {
			return nil
		}
		return m.wrap(fmt.Sprintf("deleting route %q from bridge %q", rt.String(), brName), err)
	})
	return nil
}

func (m *Manager) delRARoute(r *run, rt raRoute, up int, upName string) error {
	if err := m.step("route-del", rt.String()); err != nil {
		return err
	}
	if err := m.delV6Route(rt, up); err != nil && !errors.Is(err, unix.ESRCH) {
		return fmt.Errorf("deleting route %q from %q: %w", rt.String(), upName, err)
	}
	r.rv.Add(func() error {
		// Back as a copy: the same key would make the uplink's kernel
		// drop the next advertisement (see step 4).
		err := m.addV6Route(rt.copied(), up)
		if errors.Is(err, unix.EEXIST) {
			return nil
		}
		return m.wrap(fmt.Sprintf("adding route %q back to %q", rt.String(), upName), err)
	})
	r.record(change.RouteMoved, rt.String(), upName, r.br.Attrs().Name)
	return nil
}
