package lease

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/nclient4"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Client is the Transport over nclient4: a raw packet socket on the
// bridge (the bridge carries the uplink's MAC) for the broadcasts, which
// works whatever address the bridge holds; a renewal, unicast to the
// server, goes through a UDP socket bound to the leased address instead:
// sent from the raw socket it would leave from 0.0.0.0, which the server's
// kernel drops as a martian source.
type Client struct {
	c   *nclient4.Client
	mac net.HardwareAddr
}

var _ Transport = (*Client)(nil)

// Dial opens the DHCP client on link with source MAC mac. Close it.
func Dial(link string, mac net.HardwareAddr) (*Client, error) {
	c, err := nclient4.New(link, nclient4.WithHWAddr(mac), nclient4.WithTimeout(2*time.Second), nclient4.WithRetry(3))
	if err != nil {
		return nil, fmt.Errorf("opening a DHCP client on %q: %w", link, err)
	}
	return &Client{c: c, mac: mac}, nil
}

// Exchange sends req to server to (invalid: broadcast) and waits for the
// ACK or NAK answering it.
func (c *Client) Exchange(ctx context.Context, req *dhcpv4.DHCPv4, to netip.Addr) (*dhcpv4.DHCPv4, error) {
	match := nclient4.IsMessageType(dhcpv4.MessageTypeAck, dhcpv4.MessageTypeNak)
	if !to.IsValid() {
		return c.c.SendAndRead(ctx, &net.UDPAddr{IP: net.IPv4bcast, Port: nclient4.ServerPort}, req, match)
	}
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: req.ClientIPAddr, Port: nclient4.ClientPort})
	if err != nil {
		return nil, fmt.Errorf("opening a DHCP socket on %s: %w", req.ClientIPAddr, err)
	}
	u, err := nclient4.NewWithConn(conn, c.mac, nclient4.WithTimeout(2*time.Second), nclient4.WithRetry(3))
	if err != nil {
		conn.Close()
		return nil, err
	}
	defer u.Close()
	return u.SendAndRead(ctx, &net.UDPAddr{IP: net.IP(to.AsSlice()), Port: nclient4.ServerPort}, req, match)
}

// Acquire gets a new lease (DISCOVER, OFFER, REQUEST, ACK).
func (c *Client) Acquire(ctx context.Context, mods ...dhcpv4.Modifier) (*dhcpv4.DHCPv4, error) {
	l, err := c.c.Request(ctx, mods...)
	if err != nil {
		return nil, err
	}
	return l.ACK, nil
}

// Close closes the socket and ends the client's receiving goroutine.
func (c *Client) Close() error { return c.c.Close() }

// BridgeAddr is the Addresser of a link in the calling process's network
// namespace, over netlink.
type BridgeAddr struct{ Link string }

var _ Addresser = BridgeAddr{}

// Set gives addr on the link valid and preferred lifetime life (whole
// seconds, at least 1), keeping the flags, label and broadcast it has, or
// adds it. Idempotent.
func (b BridgeAddr) Set(addr netip.Prefix, life time.Duration) error {
	l, err := netlink.LinkByName(b.Link)
	if err != nil {
		return fmt.Errorf("reading link %q: %w", b.Link, err)
	}
	a := netlink.Addr{IPNet: &net.IPNet{IP: net.IP(addr.Addr().AsSlice()), Mask: net.CIDRMask(addr.Bits(), 32)},
		Broadcast: net.IPv4zero}
	if cur, ok, err := find(l, addr); err != nil {
		return err
	} else if ok {
		a.Flags, a.Label, a.Scope = cur.Flags&unix.IFA_F_NOPREFIXROUTE, cur.Label, cur.Scope
		if cur.Broadcast != nil {
			a.Broadcast = cur.Broadcast
		}
	}
	secs := max(int(life/time.Second), 1)
	a.ValidLft, a.PreferedLft = secs, secs
	if err := netlink.AddrReplace(l, &a); err != nil {
		return fmt.Errorf("setting the lifetime of %s on %q to %d s: %w", addr, b.Link, secs, err)
	}
	return nil
}

// Remove deletes addr from the link; already gone is success.
func (b BridgeAddr) Remove(addr netip.Prefix) error {
	l, err := netlink.LinkByName(b.Link)
	if err != nil {
		return fmt.Errorf("reading link %q: %w", b.Link, err)
	}
	a := &netlink.Addr{IPNet: &net.IPNet{IP: net.IP(addr.Addr().AsSlice()), Mask: net.CIDRMask(addr.Bits(), 32)}}
	if err := netlink.AddrDel(l, a); err != nil && !errors.Is(err, unix.EADDRNOTAVAIL) {
		return fmt.Errorf("removing %s from %q: %w", addr, b.Link, err)
	}
	return nil
}

// find is link's IPv4 address addr, if it has it.
func find(l netlink.Link, addr netip.Prefix) (netlink.Addr, bool, error) {
	as, err := netlink.AddrList(l, netlink.FAMILY_V4)
	if err != nil {
		return netlink.Addr{}, false, fmt.Errorf("listing the addresses of %q: %w", l.Attrs().Name, err)
	}
	for _, a := range as {
		if p, ok := prefixOf(a); ok && p == addr {
			return a, true, nil
		}
	}
	return netlink.Addr{}, false, nil
}

func prefixOf(a netlink.Addr) (netip.Prefix, bool) {
	ip, ok := netip.AddrFromSlice(a.IP.To4())
	if !ok {
		return netip.Prefix{}, false
	}
	ones, _ := a.Mask.Size()
	return netip.PrefixFrom(ip, ones), true
}
