package links

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/virtbridge/virtbridge/internal/change"
)

// The probe: after the uplink's addresses and routes moved to the bridge,
// the host must still reach its gateway through the bridge. The kernel is
// asked to resolve the gateway on the bridge (a neighbour entry with
// NTF_USE: an ARP request or an IPv6 neighbour solicitation, retried as
// the kernel does); the gateway answered when the entry is REACHABLE.
// Nothing is sent from a socket, so no thread enters the namespace.
//
// Which gateways Plan decides (probeTargets): the configured probe target,
// or else the resolved gateways of the moved default routes. A handoff
// with nothing to move is never probed. The same probe follows a handoff
// to NetworkManager or networkd (Probe, with Plan's Handover.Probe): one
// implementation for every owner.

// DefaultProbeTimeout is how long the probe waits for each gateway when
// the configuration says nothing.
const DefaultProbeTimeout = 3 * time.Second

// probe asks the kernel to resolve each target on the bridge and waits
// until it answers, for timeout each at most and never past ctx's
// deadline. Each answer is recorded (change.UplinkProbed); the first
// target that does not answer ends the probe with an error saying what
// was tried and what was seen, for the caller to roll the handoff back.
func (m *Manager) probe(ctx context.Context, r *run, targets []net.IP, timeout time.Duration) error {
	if timeout <= 0 {
		timeout = DefaultProbeTimeout
	}
	cs, err := m.probeOn(ctx, r.br, targets, timeout, fmt.Sprintf("after moving the addresses of %q", r.up.Attrs().Name), r.up.Attrs().Name)
	r.cs = append(r.cs, cs...)
	return err
}

// Probe is the probe after a manager made bridge its own in uplink's
// place (internal/owner/handoff, with the targets of Plan's Handover):
// it asks the kernel to resolve each target on the bridge and waits until
// it answers, for timeout each at most (0: until ctx ends), recording
// each answer. A target that does not answer ends it with an error
// wrapping ErrProbe that says what was tried and what was seen. It
// changes nothing but the kernel's neighbour cache, and sends nothing
// from a socket of its own.
func (m *Manager) Probe(ctx context.Context, bridge, uplink string, targets []string, timeout time.Duration) ([]change.Change, error) {
	br, err := m.h.LinkByName(bridge)
	if err != nil {
		return nil, fmt.Errorf("probing the gateway through bridge %q: reading the bridge: %w", bridge, err)
	}
	if timeout <= 0 {
		timeout = 24 * time.Hour // ctx ends it
	}
	return m.probeOn(ctx, br, parseIPs(targets), timeout, fmt.Sprintf("after handing uplink %q over", uplink), uplink)
}

// probeOn is the probe of targets on bridge br after what (for messages)
// was done to uplink; see probe.
func (m *Manager) probeOn(ctx context.Context, br netlink.Link, targets []net.IP, timeout time.Duration, what, uplink string) ([]change.Change, error) {
	var cs []change.Change
	name := br.Attrs().Name
	for _, ip := range targets {
		start := time.Now()
		n, state, err := m.resolve(ctx, br, ip, timeout)
		took := time.Since(start).Round(time.Millisecond)
		if err != nil {
			return cs, err
		}
		if n == nil {
			cs = append(cs, change.Change{Kind: change.UplinkProbed, Object: ip.String(), After: fmt.Sprintf("no answer on %s in %v (%s)", name, took, state)})
			return cs, fmt.Errorf("probing gateway %s through bridge %q %s: no answer in %v "+
				"(the kernel's %s on %s ended %s); the handoff is rolled back. Check that the network behind %q accepts "+
				"frames from the bridge (a switch port limited to one MAC, 802.1X, STP on the switch), or set "+
				"probe_target (an address that answers) or probe_timeout for bridge %q in the configuration: %w",
				ip, name, what, took, probeWord(ip), name, state, uplink, name, ErrProbe)
		}
		cs = append(cs, change.Change{Kind: change.UplinkProbed, Object: ip.String(), After: fmt.Sprintf("answered on %s in %v (lladdr %s)", name, took, n.HardwareAddr)})
	}
	return cs, nil
}

func probeWord(ip net.IP) string {
	if ip.To4() != nil {
		return "ARP resolution"
	}
	return "neighbour solicitation"
}

// resolve makes the kernel resolve ip on link br and polls the entry until
// it is REACHABLE (returned) or timeout or ctx ends (nil, and the last
// state seen).
func (m *Manager) resolve(ctx context.Context, br netlink.Link, ip net.IP, timeout time.Duration) (*netlink.Neigh, string, error) {
	fam := netlink.FAMILY_V4
	if ip.To4() == nil {
		fam = netlink.FAMILY_V6
	}
	deadline := time.Now().Add(timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	state := "no entry"
	for first := true; ; first = false {
		n, err := m.neighOf(br.Attrs().Index, fam, ip)
		if err != nil {
			return nil, "", err
		}
		if n != nil {
			state = neighState(n.State)
			if n.State&(netlink.NUD_REACHABLE|netlink.NUD_PERMANENT|netlink.NUD_NOARP) != 0 {
				return n, state, nil
			}
		}
		if first || n == nil || n.State&netlink.NUD_FAILED != 0 {
			if n != nil && n.State&(netlink.NUD_STALE|netlink.NUD_FAILED) != 0 {
				// A stale entry waits 5 s before it probes: start afresh.
				_ = m.h.NeighDel(&netlink.Neigh{LinkIndex: br.Attrs().Index, Family: fam, IP: ip})
			}
			use := &netlink.Neigh{LinkIndex: br.Attrs().Index, Family: fam, IP: ip, Flags: unix.NTF_USE}
			if err := m.h.NeighSet(use); err != nil && !errors.Is(err, unix.EEXIST) {
				return nil, "", fmt.Errorf("asking the kernel to resolve %s on bridge %q: %w", ip, br.Attrs().Name, err)
			}
		}
		if time.Now().After(deadline) {
			return nil, state, nil
		}
		select {
		case <-ctx.Done():
			return nil, state + ", " + ctx.Err().Error(), nil
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// neighOf is the neighbour entry of ip on the link with index, nil if none.
func (m *Manager) neighOf(index, fam int, ip net.IP) (*netlink.Neigh, error) {
	ns, err := m.neighDump(index, fam)
	if err != nil {
		return nil, fmt.Errorf("reading the neighbour entries: %w", err)
	}
	for i := range ns {
		if ns[i].IP.Equal(ip) && ns[i].LinkIndex == index {
			return &ns[i], nil
		}
	}
	return nil, nil
}

func neighState(s int) string {
	var names []string
	for _, x := range []struct {
		bit  int
		name string
	}{{netlink.NUD_INCOMPLETE, "INCOMPLETE"}, {netlink.NUD_REACHABLE, "REACHABLE"}, {netlink.NUD_STALE, "STALE"},
		{netlink.NUD_DELAY, "DELAY"}, {netlink.NUD_PROBE, "PROBE"}, {netlink.NUD_FAILED, "FAILED"},
		{netlink.NUD_NOARP, "NOARP"}, {netlink.NUD_PERMANENT, "PERMANENT"}} {
		if s&x.bit != 0 {
			names = append(names, x.name)
		}
	}
	if len(names) == 0 {
		return "NONE"
	}
	return strings.Join(names, ",")
}
