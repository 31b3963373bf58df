// Package dhcp tells, read-only, whether a DHCP client without a manager
// holds a dynamic address on an uplink: an address with a finite lifetime
// (a lease), and the client process bound to the uplink (dhclient, dhcpcd,
// udhcpc) when one can be seen in /proc. It changes nothing.
//
// It answers the dhcp-client and kernel (static) cases of owner.Kind;
// NetworkManager and systemd-networkd are detected elsewhere, before it:
// a caller asks them first and falls back to Detect.
package dhcp

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"github.com/virtbridge/virtbridge/internal/owner"
)

// Lease is a dynamic address of the uplink: one with a finite valid
// lifetime, in seconds left when it was read.
type Lease struct {
	Addr         string // "10.77.0.104/24"
	ValidLft     int
	PreferredLft int
}

func (l Lease) String() string {
	return fmt.Sprintf("%s (valid for %d s more)", l.Addr, l.ValidLft)
}

// IsDynamic is the rule for one address of an uplink: it is a lease (and
// would expire wherever it is moved) when it is not permanent, unless it is
// an IPv6 address the kernel made itself from router advertisements
// (SLAAC): those the kernel re-makes on the bridge, which takes over the
// advertisements.
func IsDynamic(ipv6, permanent, fromRA bool) bool {
	return !permanent && !(ipv6 && fromRA)
}

// clientNames are the DHCP clients recognised, by program name.
var clientNames = []string{"dhclient", "dhcpcd", "udhcpc"}

// Clients names the DHCP client processes bound to uplink, read from the
// /proc under procRoot: a process whose program (argv[0] or comm) is one of
// dhclient, dhcpcd, udhcpc and whose command line names the uplink ("eth0",
// "-i eth0", "-ieth0", "--interface=eth0"). When netns is not 0 only
// processes in the network namespace with that inode count. Each is
// "dhclient (pid 812)". Unreadable processes are skipped.
func Clients(procRoot, uplink string, netns uint64) []string {
	var out []string
	for _, p := range Processes(procRoot, uplink, netns) {
		out = append(out, p.String())
	}
	return out
}

// Process is a DHCP client process bound to an uplink (Processes).
type Process struct {
	Prog string   // dhclient, dhcpcd or udhcpc
	PID  int      //
	Args []string // its command line, argv[0] included
}

func (p Process) String() string { return fmt.Sprintf("%s (pid %d)", p.Prog, p.PID) }

// Processes are the DHCP client processes Clients names, with their pids
// and command lines.
func Processes(procRoot, uplink string, netns uint64) []Process {
	ents, err := os.ReadDir(procRoot)
	if err != nil {
		return nil
	}
	var out []Process
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		dir := filepath.Join(procRoot, e.Name())
		raw, err := os.ReadFile(filepath.Join(dir, "cmdline"))
		if err != nil || len(raw) == 0 {
			continue
		}
		argv := strings.Split(strings.TrimRight(string(raw), "\x00"), "\x00")
		comm, _ := os.ReadFile(filepath.Join(dir, "comm"))
		prog := clientOf(filepath.Base(argv[0]), strings.TrimSpace(string(comm)))
		if prog == "" || !namesUplink(argv[1:], uplink) {
			continue
		}
		if netns != 0 && nsInode(filepath.Join(dir, "ns", "net")) != netns {
			continue
		}
		out = append(out, Process{Prog: prog, PID: pid, Args: argv})
	}
	return out
}

func clientOf(names ...string) string {
	for _, n := range names {
		if slices.Contains(clientNames, n) {
			return n
		}
	}
	return ""
}

func namesUplink(args []string, uplink string) bool {
	for _, a := range args {
		if a == uplink || a == "-i"+uplink || a == "--interface="+uplink {
			return true
		}
	}
	return false
}

// nsInode is the inode of a namespace file (/proc/PID/ns/net), 0 if it
// cannot be read.
func nsInode(path string) uint64 {
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		return 0
	}
	return st.Ino
}

// Describe is the owner of uplink given its leases and the clients seen:
// Kernel (static) when it holds no lease, DHCPClient otherwise.
func Describe(uplink string, leases []Lease, clients []string) owner.Owner {
	if len(leases) == 0 {
		return owner.Owner{Kind: owner.Kernel, Uplink: uplink, Detail: "static addresses"}
	}
	var ls []string
	for _, l := range leases {
		ls = append(ls, l.String())
	}
	who := "a DHCP client (no dhclient, dhcpcd or udhcpc process names " + uplink + ")"
	if len(clients) > 0 {
		who = strings.Join(clients, ", ")
	}
	return owner.Owner{Kind: owner.DHCPClient, Uplink: uplink,
		Detail: fmt.Sprintf("dynamic address %s held by %s", strings.Join(ls, ", "), who)}
}

// Refusal is the message that refuses to move the leases of uplink to
// bridge: it names them, their lifetime, the client and the fixes.
func Refusal(bridge, uplink string, leases []Lease, clients []string) string {
	o := Describe(uplink, leases, clients)
	return fmt.Sprintf("uplink %q of bridge %q has a %s; moved to the bridge it would expire there "+
		"(the client renews it on %q, not on the bridge) and the host would lose its network. "+
		"Let the host's network configuration make the bridge and run DHCP on it: with ifupdown, "+
		"in /etc/network/interfaces replace the stanza of %s with\n"+
		"    iface %s inet manual\n"+
		"    auto %s\n"+
		"    iface %s inet dhcp\n"+
		"        bridge_ports %s\n"+
		"        bridge_stp off\n"+
		"        bridge_fd 0\n"+
		"then `ifdown %s; ifup %s` from a console; or set manager: virtbridged for bridge %q in the configuration "+
		"and run virtbridged (systemctl enable --now virtbridged): at its start it moves the address to the bridge, "+
		"stops the DHCP client bound to %q and keeps the lease on the bridge with a DHCP client of its own "+
		"(the uplink's MAC and client identifier, so the same address); or, if the address is in fact fixed, "+
		"set manager: kernel for bridge %q and virtbridge moves it as a static address (without lifetime; "+
		"stop the DHCP client first, or it re-adds the address on %q at its next renewal)",
		uplink, bridge, o.Detail, uplink, uplink, uplink, bridge, bridge, uplink, uplink, bridge, bridge, uplink, bridge, uplink)
}

// Detect tells whether uplink, in the calling process's network
// namespace, holds leases and which client holds them. It only reads.
func Detect(ctx context.Context, uplink string) (owner.Owner, error) {
	if err := ctx.Err(); err != nil {
		return owner.Owner{}, err
	}
	leases, err := Leases(uplink)
	if err != nil {
		return owner.Owner{}, err
	}
	var clients []string
	if len(leases) > 0 {
		clients = Clients("/proc", uplink, nsInode("/proc/thread-self/ns/net"))
	}
	return Describe(uplink, leases, clients), nil
}
