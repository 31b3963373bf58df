package firewall

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// nftGeneration asks nf_tables for its ruleset generation id in the network
// namespace netnsFD (0: the calling thread's). The id changes on every
// ruleset change in that namespace, by anyone, in any table or family, so
// an unchanged id proves that nothing changed since it was last read. One
// netlink round trip costs about 0.1 ms whatever the ruleset size, where
// `iptables -S` fetches the whole ruleset.
//
// It also returns the namespace's cookie, read from the same socket (see
// socketCookie); 0 when the socket could not be made or the kernel has none.
func nftGeneration(netnsFD int) (gen uint32, cookie uint64, err error) {
	c, err := netlink.Dial(unix.NETLINK_NETFILTER, &netlink.Config{NetNS: netnsFD})
	if err != nil {
		return 0, 0, fmt.Errorf("reading nf_tables generation: %w", err)
	}
	defer c.Close()
	if cookie, err = socketCookie(c); err != nil {
		return 0, 0, err
	}
	gen, err = readGeneration(c)
	return gen, cookie, err
}

// socketCookie returns the cookie of the network namespace c's socket was
// made in: an id the kernel never hands out twice while it runs, unlike
// the namespace's inode number. 0 means the kernel has none
// (SO_NETNS_COOKIE came with Linux 5.14). One getsockopt.
func socketCookie(c *netlink.Conn) (uint64, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return 0, fmt.Errorf("reading network namespace cookie: %w", err)
	}
	var cookie uint64
	var gerr error
	err = rc.Control(func(fd uintptr) {
		cookie, gerr = unix.GetsockoptUint64(int(fd), unix.SOL_SOCKET, unix.SO_NETNS_COOKIE)
	})
	if errors.Is(gerr, unix.ENOPROTOOPT) {
		return 0, nil
	}
	if err := errors.Join(err, gerr); err != nil {
		return 0, fmt.Errorf("reading network namespace cookie: %w", err)
	}
	return cookie, nil
}

// readGeneration sends NFT_MSG_GETGEN on c and returns NFTA_GEN_ID.
func readGeneration(c *netlink.Conn) (uint32, error) {
	req := netlink.Message{
		Header: netlink.Header{
			Type:  netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | unix.NFT_MSG_GETGEN),
			Flags: netlink.Request,
		},
		// struct nfgenmsg: family AF_UNSPEC, version NFNETLINK_V0, res_id 0.
		Data: []byte{unix.AF_UNSPEC, unix.NFNETLINK_V0, 0, 0},
	}
	msgs, err := c.Execute(req)
	if err != nil {
		return 0, fmt.Errorf("reading nf_tables generation: %w", err)
	}
	for _, m := range msgs {
		if len(m.Data) < 4 {
			continue
		}
		ad, err := netlink.NewAttributeDecoder(m.Data[4:])
		if err != nil {
			return 0, fmt.Errorf("reading nf_tables generation: %w", err)
		}
		ad.ByteOrder = binary.BigEndian
		for ad.Next() {
			if ad.Type() == unix.NFTA_GEN_ID {
				return ad.Uint32(), nil
			}
		}
		if err := ad.Err(); err != nil {
			return 0, fmt.Errorf("reading nf_tables generation: %w", err)
		}
	}
	return 0, fmt.Errorf("reading nf_tables generation: no NFTA_GEN_ID in the answer")
}
