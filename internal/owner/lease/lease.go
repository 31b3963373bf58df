// Package lease is virtbridged's own DHCPv4 client, the opt-in
// (manager: virtbridged) for an uplink whose lease a DHCP client without a
// manager held: once the kernel path has moved the address to the bridge
// and the foreign client is stopped, a Keeper asks the server for the same
// address again (INIT-REBOOT) with the uplink's MAC (the bridge carries it)
// and the old client's identifier, renews at T1, rebinds at T2 and keeps
// the bridge's address lifetimes equal to what is left of the lease. The
// packets are github.com/insomniacslk/dhcp's (nclient4 sends them).
//
// The decisions (Next, FromAck, the requests) are pure; the Keeper's loop
// runs them over a Transport, an Addresser and a Recorder, all small
// interfaces with fakes in the unit tests.
package lease

import (
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
)

// Phase is where the client is in RFC 2131's state machine.
type Phase string

// Phases.
const (
	// Rebooting: the address is known (taken over) but not yet confirmed
	// by the server: INIT-REBOOT, a broadcast REQUEST of that address.
	Rebooting Phase = "init-reboot"
	Bound     Phase = "bound"     // waiting for T1
	Renewing  Phase = "renewing"  // T1 passed: unicast REQUEST to the server
	Rebinding Phase = "rebinding" // T2 passed: broadcast REQUEST
	// Expired: the lease ended unrenewed (or the server said NAK); the
	// address goes.
	Expired Phase = "expired"
	// Init: no lease: DISCOVER, OFFER, REQUEST, ACK.
	Init Phase = "init"
)

// Lease is what the client holds. Start is when the request that got it
// was sent (RFC 2131 counts T1, T2 and the lease time from there).
type Lease struct {
	Addr   netip.Prefix // 10.88.0.104/24; invalid: none
	Server netip.Addr   // the server identifier; invalid: unknown
	Router netip.Addr   // the first router option, for people
	Start  time.Time
	// Duration is the lease time; T1 and T2 are the renewal and rebinding
	// times. Confirmed is false for an address taken over and not yet
	// acknowledged: then only Duration (what was left) is known.
	Duration, T1, T2 time.Duration
	Confirmed        bool
}

// Expiry is when the lease ends.
func (l Lease) Expiry() time.Time { return l.Start.Add(l.Duration) }

// RenewAt is when T1 comes: the client renews from then.
func (l Lease) RenewAt() time.Time { return l.Start.Add(l.T1) }

// RebindAt is when T2 comes: the client rebinds from then.
func (l Lease) RebindAt() time.Time { return l.Start.Add(l.T2) }

// Remaining is what is left of the lease at now, never negative.
func (l Lease) Remaining(now time.Time) time.Duration {
	return max(l.Expiry().Sub(now), 0)
}

// Retry timing: RFC 2131 §4.4.5 waits half the time left before T2 (or
// the expiry), down to a minimum; here the minimum is shorter than its
// 60 s, for the short leases of test servers.
const (
	minRetry    = 5 * time.Second
	rebootRetry = 10 * time.Second
	initRetry   = 10 * time.Second
)

// Next is what the client does holding l at now: the phase it is in and
// when to act (now or later). A failed exchange is followed by Retry.
func Next(l Lease, now time.Time) (Phase, time.Time) {
	switch {
	case !l.Addr.IsValid():
		return Init, now
	case !now.Before(l.Expiry()):
		return Expired, now
	case !l.Confirmed:
		return Rebooting, now
	case now.Before(l.RenewAt()):
		return Bound, l.RenewAt()
	case now.Before(l.RebindAt()):
		return Renewing, now
	}
	return Rebinding, now
}

// Retry is when to try again after an exchange in phase p failed at now:
// half the time left to the phase's end (T2 for renewing, the expiry
// otherwise), at least minRetry, never past that end.
func Retry(l Lease, p Phase, now time.Time) time.Time {
	end := l.Expiry()
	switch p {
	case Init:
		return now.Add(initRetry)
	case Renewing:
		end = l.RebindAt()
	case Rebooting:
		return minTime(now.Add(rebootRetry), end)
	}
	return minTime(now.Add(max(end.Sub(now)/2, minRetry)), end)
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

// FromAck is the lease an ACK grants, the request having been sent at
// sent; prev supplies what the ACK leaves out (the prefix length, the
// server). An ACK without a lease time, or without an address, is an
// error.
func FromAck(ack *dhcpv4.DHCPv4, sent time.Time, prev Lease) (Lease, error) {
	if ack.MessageType() != dhcpv4.MessageTypeAck {
		return Lease{}, fmt.Errorf("answer is a %s, not an ACK", ack.MessageType())
	}
	ip, ok := netip.AddrFromSlice(ack.YourIPAddr.To4())
	if !ok || ip.IsUnspecified() {
		return Lease{}, fmt.Errorf("ACK from %s grants no address", ack.ServerIdentifier())
	}
	d := ack.IPAddressLeaseTime(0)
	if d <= 0 {
		return Lease{}, fmt.Errorf("ACK from %s for %s has no lease time", ack.ServerIdentifier(), ip)
	}
	bits := prev.Addr.Bits()
	if m := ack.SubnetMask(); m != nil {
		bits, _ = m.Size()
	}
	if bits <= 0 {
		bits = 32
	}
	l := Lease{Addr: netip.PrefixFrom(ip, bits), Server: prev.Server, Start: sent, Duration: d, Confirmed: true,
		T1: ack.IPAddressRenewalTime(d / 2), T2: ack.IPAddressRebindingTime(d * 7 / 8)}
	if s, ok := netip.AddrFromSlice(ack.ServerIdentifier().To4()); ok {
		l.Server = s
	}
	if rs := ack.Router(); len(rs) > 0 {
		l.Router, _ = netip.AddrFromSlice(rs[0].To4())
	}
	if l.T2 <= l.T1 || l.T2 > d {
		l.T1, l.T2 = d/2, d*7/8
	}
	return l, nil
}

// Identity is who the client says it is: the uplink's MAC and the
// client identifier the old client used (none: the server keys on the
// MAC, ISC dhclient's default).
type Identity struct {
	MAC      net.HardwareAddr
	ClientID []byte
}

// requested are the options asked for, as dhclient asks them.
var requested = []dhcpv4.OptionCode{dhcpv4.OptionSubnetMask, dhcpv4.OptionRouter,
	dhcpv4.OptionIPAddressLeaseTime, dhcpv4.OptionServerIdentifier,
	dhcpv4.OptionRenewTimeValue, dhcpv4.OptionRebindingTimeValue}

// Modifiers are what every packet of id carries besides its type.
func (id Identity) Modifiers() []dhcpv4.Modifier {
	m := []dhcpv4.Modifier{dhcpv4.WithHwAddr(id.MAC), dhcpv4.WithRequestedOptions(requested...)}
	if len(id.ClientID) > 0 {
		m = append(m, dhcpv4.WithOption(dhcpv4.OptClientIdentifier(id.ClientID)))
	}
	return m
}

// Request is the REQUEST of phase p for l (RFC 2131 §4.3.2): INIT-REBOOT
// asks for l's address by option, broadcast; RENEWING (unicast to the
// server) and REBINDING (broadcast) name it as ciaddr. to is where it
// goes: the server, or invalid for broadcast.
func Request(id Identity, l Lease, p Phase) (req *dhcpv4.DHCPv4, to netip.Addr, err error) {
	m := append(id.Modifiers(), dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest))
	ip := net.IP(l.Addr.Addr().AsSlice())
	switch p {
	case Rebooting:
		m = append(m, dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(ip)))
	case Renewing:
		m = append(m, dhcpv4.WithClientIP(ip))
		to = l.Server
	case Rebinding:
		m = append(m, dhcpv4.WithClientIP(ip))
	default:
		return nil, to, fmt.Errorf("no REQUEST in phase %s", p)
	}
	req, err = dhcpv4.New(m...)
	if err != nil {
		return nil, to, fmt.Errorf("building the DHCP %s request: %w", p, err)
	}
	return req, to, nil
}
