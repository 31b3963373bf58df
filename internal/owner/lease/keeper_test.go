package lease

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"

	"github.com/virtbridge/virtbridge/internal/change"
)

var (
	t0      = time.Date(2026, 1, 2, 3, 0, 0, 0, time.UTC)
	mac     = net.HardwareAddr{0x52, 0x54, 0, 0x12, 0x34, 0x56}
	leased  = netip.MustParsePrefix("10.88.0.104/24")
	server  = netip.MustParseAddr("10.88.0.1")
	errLost = errors.New("no answer")
)

// fake is the keeper's world: a clock, a DHCP server answering by a
// script, the bridge's addresses and the journal, all written to one log.
type fake struct {
	now    time.Time
	log    []string
	answer func(req *dhcpv4.DHCPv4) (*dhcpv4.DHCPv4, error)
	stop   func(*fake) bool // ends the run when true
	cancel context.CancelFunc
}

func (f *fake) logf(format string, a ...any) {
	f.log = append(f.log, fmt.Sprintf("%4.0fs ", f.now.Sub(t0).Seconds())+fmt.Sprintf(format, a...))
	if f.stop(f) {
		f.cancel()
	}
}

func (f *fake) Exchange(ctx context.Context, req *dhcpv4.DHCPv4, to netip.Addr) (*dhcpv4.DHCPv4, error) {
	dst := "broadcast"
	if to.IsValid() {
		dst = to.String()
	}
	f.logf("REQUEST to %s ciaddr %s requested %v client-id %x mac %s", dst, req.ClientIPAddr, req.RequestedIPAddress(),
		req.Options.Get(dhcpv4.OptionClientIdentifier), req.ClientHWAddr)
	return f.answer(req)
}

func (f *fake) Acquire(ctx context.Context, mods ...dhcpv4.Modifier) (*dhcpv4.DHCPv4, error) {
	req, _ := dhcpv4.New(mods...)
	f.logf("DISCOVER mac %s", req.ClientHWAddr)
	return f.answer(req)
}

func (f *fake) Set(a netip.Prefix, life time.Duration) error {
	f.logf("address %s lifetime %v", a, life)
	return nil
}

func (f *fake) Remove(a netip.Prefix) error { f.logf("address %s removed", a); return nil }

func (f *fake) Change(_ context.Context, c change.Change) { f.logf("journal %s", c) }
func (f *fake) State(Status)                              {}
func (f *fake) Problem(err error)                         { f.logf("problem: %v", err) }

// ack answers req with a lease of d for ip (nil: the requested one).
func ack(req *dhcpv4.DHCPv4, d time.Duration) (*dhcpv4.DHCPv4, error) {
	ip := req.RequestedIPAddress()
	if ip == nil || ip.IsUnspecified() {
		ip = req.ClientIPAddr
	}
	if ip == nil || ip.IsUnspecified() {
		ip = net.IPv4(10, 88, 0, 150)
	}
	return dhcpv4.NewReplyFromRequest(req, dhcpv4.WithMessageType(dhcpv4.MessageTypeAck), dhcpv4.WithYourIP(ip),
		dhcpv4.WithNetmask(net.CIDRMask(24, 32)), dhcpv4.WithLeaseTime(uint32(d/time.Second)),
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.IP(server.AsSlice()))),
		dhcpv4.WithOption(dhcpv4.OptRouter(net.IP(server.AsSlice()))))
}

func run(t *testing.T, f *fake, id Identity, l Lease) string {
	t.Helper()
	f.now = t0
	ctx, cancel := context.WithCancel(context.Background())
	f.cancel = cancel
	k := &Keeper{Bridge: "br0", Uplink: "uplink0", ID: id, Transport: f, Addr: f, Rec: f,
		Now: func() time.Time { return f.now },
		Wait: func(ctx context.Context, until time.Time) error {
			if ctx.Err() == nil && until.After(f.now) {
				f.now = until
			}
			return ctx.Err()
		}}
	done := make(chan struct{})
	go func() { k.Run(ctx, l); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatalf("Run did not end; log so far:\n%s", strings.Join(f.log, "\n"))
	}
	return strings.Join(f.log, "\n") + "\n"
}

func takenOver() Lease { return Lease{Addr: leased, Start: t0, Duration: 100 * time.Second} }

func lines(n int) func(*fake) bool { return func(f *fake) bool { return len(f.log) >= n } }

// TestTakeOverAndRenew: the address taken over is asked for again
// (INIT-REBOOT: broadcast, requested address, the old client's
// identifier and the uplink's MAC), its lifetime set to the lease, renewed
// at T1 by unicast to the server, the lifetime refreshed each time.
func TestTakeOverAndRenew(t *testing.T) {
	f := &fake{stop: lines(9), answer: func(r *dhcpv4.DHCPv4) (*dhcpv4.DHCPv4, error) { return ack(r, 2*time.Minute) }}
	got := run(t, f, Identity{MAC: mac, ClientID: []byte{1, 0x52, 0x54, 0, 0x12, 0x34, 0x56}}, takenOver())
	want := `   0s REQUEST to broadcast ciaddr 0.0.0.0 requested 10.88.0.104 client-id 01525400123456 mac 52:54:00:12:34:56
   0s address 10.88.0.104/24 lifetime 2m0s
   0s journal lease-kept br0: "10.88.0.104/24 until 2026-01-02T03:01:40Z" -> "10.88.0.104/24 from 10.88.0.1 for 2m0s until 2026-01-02T03:02:00Z"
  60s REQUEST to 10.88.0.1 ciaddr 10.88.0.104 requested <nil> client-id 01525400123456 mac 52:54:00:12:34:56
  60s address 10.88.0.104/24 lifetime 2m0s
  60s journal lease-renewed br0: "10.88.0.104/24 from 10.88.0.1 for 2m0s until 2026-01-02T03:02:00Z" -> "10.88.0.104/24 from 10.88.0.1 for 2m0s until 2026-01-02T03:03:00Z"
 120s REQUEST to 10.88.0.1 ciaddr 10.88.0.104 requested <nil> client-id 01525400123456 mac 52:54:00:12:34:56
 120s address 10.88.0.104/24 lifetime 2m0s
 120s journal lease-renewed br0: "10.88.0.104/24 from 10.88.0.1 for 2m0s until 2026-01-02T03:03:00Z" -> "10.88.0.104/24 from 10.88.0.1 for 2m0s until 2026-01-02T03:04:00Z"
`
	if got != want {
		t.Errorf("got:\n%s\nwant:\n%s", got, want)
	}
}

// TestRebindThenExpire: the server stops answering after the first ACK:
// renewals (unicast) retried at half the time left to T2, then rebinding
// (broadcast) until the lease ends; the address then goes, journaled, and
// the keeper starts over with DISCOVER. No client identifier: none sent.
func TestRebindThenExpire(t *testing.T) {
	n := 0
	f := &fake{stop: func(f *fake) bool { return strings.Contains(f.log[len(f.log)-1], "DISCOVER") },
		answer: func(r *dhcpv4.DHCPv4) (*dhcpv4.DHCPv4, error) {
			if n++; n == 1 {
				return ack(r, 2*time.Minute)
			}
			return nil, errLost
		}}
	got := run(t, f, Identity{MAC: mac}, takenOver())
	want := `   0s REQUEST to broadcast ciaddr 0.0.0.0 requested 10.88.0.104 client-id  mac 52:54:00:12:34:56
   0s address 10.88.0.104/24 lifetime 2m0s
   0s journal lease-kept br0: "10.88.0.104/24 until 2026-01-02T03:01:40Z" -> "10.88.0.104/24 from 10.88.0.1 for 2m0s until 2026-01-02T03:02:00Z"
  60s REQUEST to 10.88.0.1 ciaddr 10.88.0.104 requested <nil> client-id  mac 52:54:00:12:34:56
  60s problem: keeping the lease of bridge "br0" (renewing): asking for 10.88.0.104/24: no answer
  82s REQUEST to 10.88.0.1 ciaddr 10.88.0.104 requested <nil> client-id  mac 52:54:00:12:34:56
  82s problem: keeping the lease of bridge "br0" (renewing): asking for 10.88.0.104/24: no answer
  94s REQUEST to 10.88.0.1 ciaddr 10.88.0.104 requested <nil> client-id  mac 52:54:00:12:34:56
  94s problem: keeping the lease of bridge "br0" (renewing): asking for 10.88.0.104/24: no answer
  99s REQUEST to 10.88.0.1 ciaddr 10.88.0.104 requested <nil> client-id  mac 52:54:00:12:34:56
  99s problem: keeping the lease of bridge "br0" (renewing): asking for 10.88.0.104/24: no answer
 104s REQUEST to 10.88.0.1 ciaddr 10.88.0.104 requested <nil> client-id  mac 52:54:00:12:34:56
 104s problem: keeping the lease of bridge "br0" (renewing): asking for 10.88.0.104/24: no answer
 105s REQUEST to broadcast ciaddr 10.88.0.104 requested <nil> client-id  mac 52:54:00:12:34:56
 105s problem: keeping the lease of bridge "br0" (rebinding): asking for 10.88.0.104/24: no answer
 112s REQUEST to broadcast ciaddr 10.88.0.104 requested <nil> client-id  mac 52:54:00:12:34:56
 112s problem: keeping the lease of bridge "br0" (rebinding): asking for 10.88.0.104/24: no answer
 118s REQUEST to broadcast ciaddr 10.88.0.104 requested <nil> client-id  mac 52:54:00:12:34:56
 118s problem: keeping the lease of bridge "br0" (rebinding): asking for 10.88.0.104/24: no answer
 120s address 10.88.0.104/24 removed
 120s journal lease-lost br0: "10.88.0.104/24 from 10.88.0.1 for 2m0s until 2026-01-02T03:02:00Z" -> "the lease ended unrenewed"
 120s DISCOVER mac 52:54:00:12:34:56
`
	if got != want {
		t.Errorf("got:\n%s\nwant:\n%s", got, want)
	}
}

// TestNakLosesTheAddress: a NAK to the INIT-REBOOT (the address is not
// this client's any more) takes the address off at once, journaled, and
// a new lease is asked for and put on the bridge.
func TestNakLosesTheAddress(t *testing.T) {
	f := &fake{stop: lines(6), answer: func(r *dhcpv4.DHCPv4) (*dhcpv4.DHCPv4, error) {
		if r.MessageType() == dhcpv4.MessageTypeRequest {
			return dhcpv4.NewReplyFromRequest(r, dhcpv4.WithMessageType(dhcpv4.MessageTypeNak),
				dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.IP(server.AsSlice()))),
				dhcpv4.WithOption(dhcpv4.OptMessage("wrong address")))
		}
		return ack(r, time.Hour)
	}}
	got := run(t, f, Identity{MAC: mac}, takenOver())
	want := `   0s REQUEST to broadcast ciaddr 0.0.0.0 requested 10.88.0.104 client-id  mac 52:54:00:12:34:56
   0s address 10.88.0.104/24 removed
   0s journal lease-lost br0: "10.88.0.104/24 until 2026-01-02T03:01:40Z" -> "server 10.88.0.1 said NAK (wrong address)"
   0s DISCOVER mac 52:54:00:12:34:56
   0s address 10.88.0.150/24 lifetime 1h0m0s
   0s journal lease-kept br0: "" -> "10.88.0.150/24 from 10.88.0.1 for 1h0m0s until 2026-01-02T04:00:00Z"
`
	if got != want {
		t.Errorf("got:\n%s\nwant:\n%s", got, want)
	}
}

// TestNext: the phases over a lease's life.
func TestNext(t *testing.T) {
	l := Lease{Addr: leased, Server: server, Start: t0, Duration: 120 * time.Second, T1: 60 * time.Second, T2: 105 * time.Second, Confirmed: true}
	for _, c := range []struct {
		at   time.Duration
		want Phase
	}{{0, Bound}, {59 * time.Second, Bound}, {60 * time.Second, Renewing}, {105 * time.Second, Rebinding}, {120 * time.Second, Expired}} {
		if p, _ := Next(l, t0.Add(c.at)); p != c.want {
			t.Errorf("Next at %v = %s, want %s", c.at, p, c.want)
		}
	}
	if p, _ := Next(Lease{}, t0); p != Init {
		t.Errorf("Next without lease = %s, want init", p)
	}
}

// TestRunStopsWithTheContext: the real clock (a context deadline) ends
// at once when the context does.
func TestRunStopsWithTheContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { WaitUntil(ctx, time.Now().Add(time.Hour)); close(done) }()
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("WaitUntil did not end with its context")
	}
}
