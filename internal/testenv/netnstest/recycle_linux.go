package netnstest

import (
	"encoding/binary"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// Inode returns the inode number of the namespace's nsfs file: the number
// the kernel hands out again, once the namespace is gone, to the next one.
func (n *NS) Inode(t testing.TB) uint64 {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Stat("/run/netns/"+n.Name, &st); err != nil {
		t.Fatalf("netns %s: %v", n.Name, err)
	}
	return st.Ino
}

// Delete deletes the namespace before the test ends; its cleanup then has
// nothing to do. The kernel frees its inode number once its own cleanup
// has run, some time later.
func (n *NS) Delete(t testing.TB) {
	t.Helper()
	n.Handle.Close() // an open handle would keep the namespace alive
	if out, err := exec.Command("ip", "netns", "del", n.Name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns del %s: %v: %s", n.Name, err, out)
	}
	n.deleted = true
}

// Recycle creates namespaces until one gets inode number ino (that of a
// namespace deleted before) and returns it, with the number of tries; ok
// is false when none did within patience (another process's namespace
// took the number: start over). The kernel hands out the lowest free
// number. A namespace that got a higher one is deleted at once (ino is
// not free yet); one that got a lower one is kept until the test ends,
// since it fills a hole left by a namespace deleted after ino's.
func Recycle(t testing.TB, prefix string, ino uint64, patience time.Duration) (n *NS, tries int, ok bool) {
	t.Helper()
	deadline := time.Now().Add(patience)
	for tries = 1; ; tries++ {
		n = New(t, prefix)
		got := n.Inode(t)
		if got == ino {
			return n, tries, true
		}
		if got > ino {
			n.Delete(t)
		}
		if time.Now().After(deadline) {
			return nil, tries, false
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// NFTGeneration returns the namespace's nf_tables ruleset generation id
// (NFT_MSG_GETGEN), which every ruleset change bumps.
func (n *NS) NFTGeneration(t testing.TB) uint32 {
	t.Helper()
	c, err := netlink.Dial(unix.NETLINK_NETFILTER, &netlink.Config{NetNS: int(n.Handle)})
	if err != nil {
		t.Fatalf("netns %s: nf_tables netlink: %v", n.Name, err)
	}
	defer c.Close()
	msgs, err := c.Execute(netlink.Message{
		Header: netlink.Header{Type: netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | unix.NFT_MSG_GETGEN), Flags: netlink.Request},
		Data:   []byte{unix.AF_UNSPEC, unix.NFNETLINK_V0, 0, 0},
	})
	if err != nil {
		t.Fatalf("netns %s: NFT_MSG_GETGEN: %v", n.Name, err)
	}
	for _, m := range msgs {
		if len(m.Data) < 4 {
			continue
		}
		ad, err := netlink.NewAttributeDecoder(m.Data[4:])
		if err != nil {
			t.Fatal(err)
		}
		ad.ByteOrder = binary.BigEndian
		for ad.Next() {
			if ad.Type() == unix.NFTA_GEN_ID {
				return ad.Uint32()
			}
		}
	}
	t.Fatalf("netns %s: no NFTA_GEN_ID in the answer", n.Name)
	return 0
}

// PadGeneration changes the namespace's ruleset (adds and deletes an
// empty nftables table, one generation each) until its generation is
// want; it fails the test when the generation is past want already.
func (n *NS) PadGeneration(t testing.TB, want uint32) {
	t.Helper()
	for i := 0; ; i++ {
		gen := n.NFTGeneration(t)
		if gen == want {
			return
		}
		if gen > want || i > 10000 {
			t.Fatalf("netns %s: nf_tables generation %d, past %d", n.Name, gen, want)
		}
		verb := "add"
		if i%2 == 1 {
			verb = "delete"
		}
		n.Run(t, "nft", verb, "table", "inet", "vbpad")
	}
}
