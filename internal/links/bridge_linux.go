package links

import (
	"crypto/rand"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/vishvananda/netlink"
)

// createBridge creates the bridge in one RTM_NEWLINK with its STP state,
// forward delay, admin up, and its MAC given explicitly: the uplink's MAC
// (the host address keeps its MAC, so the neighbours' ARP and ND caches
// stay right) or, without uplink, a random locally administered one. A
// MAC given at creation is NET_ADDR_SET, so the kernel never re-derives it
// from ports. The MTU is set afterwards by ensureMTU (see there).
func (m *Manager) createBridge(r *run, st Step) error {
	mac, err := net.ParseMAC(st.MAC)
	if err != nil {
		mac = randomMAC()
	}
	spec := newBridge{name: r.b.Name, mac: mac, up: true, opts: bridgeOpts{stp: st.STP, delayCS: st.DelayCS}}
	if err := m.addBridge(spec); err != nil {
		return fmt.Errorf("creating bridge %q: %w", r.b.Name, err)
	}
	name := r.b.Name
	r.rv.Add(func() error {
		l, err := m.h.LinkByName(name)
		if isNotFound(err) {
			return nil
		}
		if err == nil {
			err = m.h.LinkDel(l)
		}
		return m.wrap(fmt.Sprintf("deleting bridge %q", name), err)
	})
	r.new = true
	r.cs = append(r.cs, createdChange(st, mac.String()))
	if err := m.reread(r); err != nil {
		return err
	}
	// Marks the bridge as virtbridge's (see ManagedAlias); undone with it.
	if err := m.h.LinkSetAlias(r.br, ManagedAlias); err != nil {
		return fmt.Errorf("setting the alias of bridge %q: %w", name, err)
	}
	return nil
}

// randomMAC is what the kernel would pick (eth_hw_addr_random): a random
// unicast, locally administered address.
func randomMAC() net.HardwareAddr {
	b := make([]byte, 6)
	rand.Read(b)
	b[0] = b[0]&^1 | 2
	return b
}

// reread refreshes r.br.
func (m *Manager) reread(r *run) error {
	l, err := m.h.LinkByName(r.b.Name)
	if err != nil {
		return fmt.Errorf("reading bridge %q: %w", r.b.Name, err)
	}
	r.br = l
	return nil
}

// setOpt changes STP and/or the delay from cur to want, with its undo.
func (m *Manager) setOpt(r *run, cur, want bridgeOpts) error {
	name, idx := r.b.Name, r.br.Attrs().Index
	var delay *uint32
	var stp *bool
	var before, after []string
	if cur.delayCS != want.delayCS {
		delay = &want.delayCS
		before = append(before, fmt.Sprintf("forward_delay %d", cur.delaySeconds()))
		after = append(after, fmt.Sprintf("forward_delay %d", want.delaySeconds()))
	}
	if cur.stp != want.stp {
		stp = &want.stp
		before = append(before, "stp "+onOffText(cur.stp))
		after = append(after, "stp "+onOffText(want.stp))
	}
	if err := m.setBridgeOpts(idx, delay, stp); err != nil {
		return fmt.Errorf("setting %s on bridge %q: %w", strings.Join(after, ", "), name, err)
	}
	r.rv.Add(func() error {
		// STP goes off before the old delay comes back (see bridgeSteps).
		old := cur
		if want.stp && !old.stp {
			if err := m.setBridgeOpts(idx, nil, &old.stp); err != nil {
				return m.wrap("restoring STP of bridge "+name, err)
			}
		}
		return m.wrap("restoring STP and forward delay of bridge "+name, m.setBridgeOpts(idx, &old.delayCS, &old.stp))
	})
	return nil
}

// pinMAC makes the bridge's MAC the step's (the uplink's or its own) and
// NET_ADDR_SET, so the kernel stops re-deriving it from the lowest port
// MAC each time a port comes or goes.
func (m *Manager) pinMAC(r *run, st Step) error {
	want, err := net.ParseMAC(st.MAC)
	if err != nil {
		return fmt.Errorf("bridge %q: MAC %q: %w", r.b.Name, st.MAC, err)
	}
	cur := r.br.Attrs().HardwareAddr
	if err := m.h.LinkSetHardwareAddr(r.br, want); err != nil {
		return fmt.Errorf("setting the MAC of bridge %q to %s: %w", r.b.Name, want, err)
	}
	br := r.br
	r.rv.Add(func() error {
		return m.wrap("restoring the MAC of bridge "+r.b.Name, m.h.LinkSetHardwareAddr(br, cur))
	})
	return nil
}

// macSet reads /sys/class/net/NAME/addr_assign_type in the Manager's sysfs.
// It trusts the file only if the same directory shows the link's ifindex
// and MAC, i.e. the sysfs belongs to the Manager's namespace.
func (m *Manager) macSet(l netlink.Link) (set, known bool) {
	if m.sysfs == "" {
		return false, false
	}
	dir := filepath.Join(m.sysfs, "class", "net", l.Attrs().Name)
	read := func(f string) string {
		b, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			return ""
		}
		return strings.TrimSpace(string(b))
	}
	if read("ifindex") != strconv.Itoa(l.Attrs().Index) || read("address") != l.Attrs().HardwareAddr.String() {
		return false, false
	}
	switch read("addr_assign_type") {
	case "3": // NET_ADDR_SET
		return true, true
	case "0", "1", "2": // PERM, RANDOM, STOLEN
		return false, true
	}
	return false, false
}

// setUp brings l up, with its undo.
func (m *Manager) setUp(r *run, l netlink.Link) error {
	name := l.Attrs().Name
	if err := m.h.LinkSetUp(l); err != nil {
		return fmt.Errorf("setting %q up: %w", name, err)
	}
	r.rv.Add(func() error { return m.wrap(fmt.Sprintf("setting %q down again", name), m.h.LinkSetDown(l)) })
	return nil
}

// ensureMTU sets the bridge's MTU when r.b.MTU is set, so that the kernel
// keeps it. The bridge re-derives its MTU from its ports (the smallest)
// each time a port joins, unless its MTU was set through ndo_change_mtu
// (br->mtu_set_by_user; an IFLA_MTU given at creation does not count, nor
// does a set to the value it already has, which the kernel skips). So it
// runs after the uplink is enslaved (which may already have moved the MTU
// to the configured value: a 9000 uplink makes a new bridge 9000) and,
// when the MTU is right but this run created the bridge or enslaved its
// uplink, sets it through another value and back, on a bridge whose ports
// are not carrying VM traffic yet; otherwise the first 1500 tap would
// bring a `mtu: 9000` bridge down to 1500. Netlink does not report the
// flag, so a bridge whose MTU is already right and whose uplink was
// already in it is left alone (Plan gives no step, or st.Keep is false):
// steady runs change nothing.
func (m *Manager) ensureMTU(r *run, st Step) error {
	if err := m.reread(r); err != nil {
		return err
	}
	old := r.br.Attrs().MTU
	if old == r.b.MTU {
		if !st.Keep {
			return nil
		}
		return m.keepMTU(r)
	}
	if err := m.step("bridge-update", r.b.Name); err != nil {
		return err
	}
	if err := m.h.LinkSetMTU(r.br, r.b.MTU); err != nil {
		return fmt.Errorf("setting the MTU of bridge %q to %d: %w", r.b.Name, r.b.MTU, err)
	}
	if !r.new { // a created bridge is undone whole
		br := r.br
		r.rv.Add(func() error { return m.wrap("restoring the MTU of bridge "+r.b.Name, m.h.LinkSetMTU(br, old)) })
	}
	r.cs = append(r.cs, mtuChange(st, old))
	return nil
}

// keepMTU sets the bridge's MTU, which already has the configured value,
// through a neighbouring value and back, so that the kernel marks it as
// set by the user. The value never changes for longer than two netlink
// requests, so it is no change to record or undo. A neighbour above is
// used (never below: an MTU under 68 would drop the bridge's IPv4 setup).
func (m *Manager) keepMTU(r *run) error {
	want := r.b.MTU
	via := want + 1
	if via > 65535 {
		via = want - 1
	}
	if err := m.step("bridge-update", r.b.Name); err != nil {
		return err
	}
	for i, v := range []int{via, want} {
		if err := m.h.LinkSetMTU(r.br, v); err != nil {
			return fmt.Errorf("setting the MTU of bridge %q to %d so that the kernel keeps it: %w", r.b.Name, want, err)
		}
		if i == 0 && !r.new { // a created bridge is undone whole
			br := r.br
			r.rv.Add(func() error { return m.wrap("restoring the MTU of bridge "+r.b.Name, m.h.LinkSetMTU(br, want)) })
		}
	}
	return nil
}
