package lease

import (
	"context"
	"encoding/hex"
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/virtbridge/virtbridge/internal/change"
	"github.com/virtbridge/virtbridge/internal/owner/dhcp"
)

// Takeover is what virtbridged takes over from the DHCP client without a
// manager bound to an uplink, read before anything moves.
type Takeover struct {
	Uplink  string
	MAC     net.HardwareAddr
	Lease   Lease          // the dynamic address, unconfirmed, what was left of it
	Clients []dhcp.Process // the foreign clients bound to the uplink
	// ClientID is the identifier the old client used (its configuration's
	// send dhcp-client-identifier, or its lease file's), nil for none.
	ClientID []byte
}

// Inspect reads, read-only, uplink's first dynamic IPv4 address (its
// remaining lifetime from now), MAC, DHCP client processes and their
// client identifier. ok is false when the uplink holds no dynamic IPv4
// address.
func Inspect(uplink string, now time.Time) (t Takeover, ok bool, err error) {
	l, err := netlink.LinkByName(uplink)
	if err != nil {
		return t, false, fmt.Errorf("reading uplink %q: %w", uplink, err)
	}
	leases, err := dhcp.Leases(uplink)
	if err != nil {
		return t, false, err
	}
	t = Takeover{Uplink: uplink, MAC: l.Attrs().HardwareAddr}
	for _, x := range leases {
		p, err := netip.ParsePrefix(x.Addr)
		if err == nil && p.Addr().Is4() {
			t.Lease = Lease{Addr: p, Start: now, Duration: time.Duration(x.ValidLft) * time.Second}
			ok = true
			break
		}
	}
	if !ok {
		return t, false, nil
	}
	t.Clients = dhcp.Processes("/proc", uplink, dhcp.NSInode(netns.None()))
	for _, c := range t.Clients {
		if id := ClientIDOf(c.Args, uplink); id != nil {
			t.ClientID = id
			break
		}
	}
	return t, true, nil
}

// ClientIDOf is the client identifier of the dhclient run with args on
// uplink: `send dhcp-client-identifier` in its configuration (-cf, by
// default /etc/dhcp/dhclient.conf), else `option dhcp-client-identifier`
// of the uplink's last lease in its lease file (-lf); nil for none, ISC
// dhclient's default (the server then keys on the MAC).
func ClientIDOf(args []string, uplink string) []byte {
	cf, lf := "/etc/dhcp/dhclient.conf", ""
	for i := 1; i+1 < len(args); i++ {
		switch args[i] {
		case "-cf":
			cf = args[i+1]
		case "-lf":
			lf = args[i+1]
		}
	}
	if b, err := os.ReadFile(cf); err == nil {
		if id := confClientID(string(b)); id != nil {
			return id
		}
	}
	if b, err := os.ReadFile(lf); err == nil && lf != "" {
		return leaseClientID(string(b), uplink)
	}
	return nil
}

// confClientID reads `send dhcp-client-identifier VALUE;` from a
// dhclient.conf (comments skipped); "= hardware" is not resolved here
// (nil: the MAC keys the lease anyway).
func confClientID(conf string) []byte {
	for _, line := range strings.Split(conf, "\n") {
		line = strings.TrimSpace(line)
		if v, ok := strings.CutPrefix(line, "send dhcp-client-identifier "); ok {
			return parseOptionValue(strings.TrimSuffix(strings.TrimSpace(v), ";"))
		}
	}
	return nil
}

// leaseClientID is the dhcp-client-identifier of the last lease of
// uplink in a dhclient lease file.
func leaseClientID(leases, uplink string) []byte {
	var id []byte
	for _, block := range strings.Split(leases, "lease {")[1:] {
		if !strings.Contains(block, `interface "`+uplink+`";`) {
			continue
		}
		id = nil
		for _, line := range strings.Split(block, "\n") {
			if v, ok := strings.CutPrefix(strings.TrimSpace(line), "option dhcp-client-identifier "); ok {
				id = parseOptionValue(strings.TrimSuffix(v, ";"))
			}
		}
	}
	return id
}

// parseOptionValue reads dhclient's notation: a quoted string, or hex
// bytes separated by colons ("1:52:54:0:12:34:56").
func parseOptionValue(v string) []byte {
	if s, err := strconv.Unquote(v); err == nil {
		return []byte(s)
	}
	var out []byte
	for _, x := range strings.Split(v, ":") {
		if len(x) == 1 {
			x = "0" + x
		}
		b, err := hex.DecodeString(x)
		if err != nil || len(b) != 1 {
			return nil
		}
		out = append(out, b[0])
	}
	return out
}

// StopClients stops each foreign DHCP client by its pid: SIGTERM, then,
// if it is still there after patience, SIGKILL. A process whose command
// line changed (the pid reused) is left alone. Each stop is a
// change.ClientStopped naming the process.
func StopClients(ctx context.Context, uplink string, procs []dhcp.Process, patience time.Duration) ([]change.Change, error) {
	var cs []change.Change
	for _, p := range procs {
		if !same(p) {
			continue
		}
		if err := syscall.Kill(p.PID, syscall.SIGTERM); err != nil {
			return cs, fmt.Errorf("stopping %s bound to %q: %w", p, uplink, err)
		}
		how := "SIGTERM"
		if !gone(ctx, p, patience) {
			if err := syscall.Kill(p.PID, syscall.SIGKILL); err != nil {
				return cs, fmt.Errorf("killing %s bound to %q: %w", p, uplink, err)
			}
			how = "SIGKILL after SIGTERM"
			gone(ctx, p, patience)
		}
		cs = append(cs, change.Change{Kind: change.ClientStopped, Object: uplink,
			Before: p.String() + ": " + strings.Join(p.Args, " "), After: "stopped (" + how + "); virtbridged keeps the lease"})
	}
	return cs, nil
}

// same reports whether p's pid still runs p's command line.
func same(p dhcp.Process) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", p.PID))
	return err == nil && slices.Equal(strings.Split(strings.TrimRight(string(b), "\x00"), "\x00"), p.Args)
}

// gone waits up to patience for p to exit (a zombie counts as exited).
func gone(ctx context.Context, p dhcp.Process, patience time.Duration) bool {
	end := time.Now().Add(patience)
	for {
		st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.PID))
		if err != nil || zombie(string(st)) || !same(p) {
			return true
		}
		if time.Now().After(end) || WaitUntil(ctx, time.Now().Add(50*time.Millisecond)) != nil {
			return false
		}
	}
}

func zombie(stat string) bool {
	i := strings.LastIndexByte(stat, ')')
	return i >= 0 && i+2 < len(stat) && stat[i+2] == 'Z'
}
