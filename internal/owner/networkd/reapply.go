package networkd

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/virtbridge/virtbridge/internal/change"
)

// reapplied is what undoing a reapply needs.
type reapplied struct {
	netdev, oldFile string // the .netdev's path and its content before
	index           int
	old             stpDelay
	oldMTU          int
}

// reapply brings bridge s.Bridge, handed over to networkd earlier, in line
// with its stp, forward_delay and mtu: it rewrites virtbridge's .netdev
// and reloads networkd (so a restart or reboot makes the bridge so), and
// sets them on the live bridge over netlink — networkd does not re-apply a
// changed .netdev to a netdev that exists. Then it probes; on failure it
// puts the file and the bridge back. Nothing differing, it changes
// nothing.
func (c *Client) reapply(ctx context.Context, s Spec) (Result, error) {
	var r Result
	b := s.Bridge
	nd, _, _ := Files(b)
	path := filepath.Join(c.Dir, nd)
	h, err := netlink.NewHandleAt(s.NS)
	if err != nil {
		return r, fmt.Errorf("opening netlink: %w", err)
	}
	defer h.Close()
	br, err := h.LinkByName(b.Name)
	if err != nil {
		return r, fmt.Errorf("reading bridge %q: %w", b.Name, err)
	}
	old, err := os.ReadFile(s.path(path))
	if err != nil {
		return r, fmt.Errorf("reading bridge %q's %s: %w", b.Name, path, err)
	}
	mac := br.Attrs().HardwareAddr.String()
	for _, line := range strings.Split(string(old), "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "MACAddress="); ok {
			mac = v
		}
	}
	want := netdevFile(b, mac)
	cur, err := readSTP(s.NS, br.Attrs().Index)
	if err != nil {
		return r, fmt.Errorf("reading the STP settings of bridge %q: %w", b.Name, err)
	}
	next, before, after := stpDiff(cur, br.Attrs().MTU, s)
	if string(old) == want && len(after) == 0 {
		return r, nil
	}
	u := &reapplied{netdev: path, oldFile: string(old), index: br.Attrs().Index, old: cur, oldMTU: br.Attrs().MTU}
	start := time.Now()
	actx, cancel := context.WithTimeout(ctx, s.Timeout)
	defer cancel()
	err = c.setBridge(actx, s, h, u, want, next)
	r.Handoff = time.Since(start)
	if err == nil && s.Probe != nil {
		pstart := time.Now()
		err = s.Probe(actx, b.Name)
		r.Probe = time.Since(pstart)
	}
	if err != nil {
		cause := fmt.Errorf("setting %s on bridge %q through systemd-networkd: %w", strings.Join(after, ", "), b.Name, err)
		if uerr := c.undoReapply(ctx, s, u); uerr != nil {
			return r, fmt.Errorf("%w; putting it back failed too: %v: look at %s and `ip -d link show %s`", cause, uerr, path, b.Name)
		}
		return r, fmt.Errorf("%w; %s and the bridge are as before: %w", cause, path, ErrRolledBack)
	}
	if len(after) == 0 {
		before, after = []string{"as before"}, []string{"rewritten"}
	}
	r.Changes = []change.Change{{Kind: change.BridgeUpdated, Object: b.Name,
		Before: "systemd-networkd " + path + ": " + strings.Join(before, ", "),
		After:  "systemd-networkd " + path + ": " + strings.Join(after, ", ")}}
	r.reapplied = u
	return r, nil
}

// stpDiff compares the live bridge (cur, mtu) with s.Bridge: next is what
// to set, before and after say what changes (none: nothing differs).
func stpDiff(cur stpDelay, mtu int, s Spec) (next stpDelay, before, after []string) {
	b := s.Bridge
	next = cur
	if b.STP && b.ForwardDelay >= 2 && cur.delay != b.ForwardDelay {
		next.delay = b.ForwardDelay
		before, after = append(before, fmt.Sprintf("forward_delay %d", cur.delay)), append(after, fmt.Sprintf("forward_delay %d", b.ForwardDelay))
	}
	if cur.stp != b.STP {
		next.stp = b.STP
		before, after = append(before, "stp "+onOff(cur.stp)), append(after, "stp "+onOff(b.STP))
	}
	if b.MTU > 0 && mtu != b.MTU {
		before, after = append(before, fmt.Sprintf("mtu %d", mtu)), append(after, fmt.Sprintf("mtu %d", b.MTU))
	}
	return next, before, after
}

func onOff(b bool) string {
	if b {
		return "on"
	}
	return "off"
}

// setBridge writes the .netdev, reloads networkd and sets the STP state,
// forward delay and MTU on the live bridge.
func (c *Client) setBridge(ctx context.Context, s Spec, h *netlink.Handle, u *reapplied, file string, next stpDelay) error {
	if file != u.oldFile {
		if err := os.WriteFile(s.path(u.netdev), []byte(file), 0o644); err != nil {
			return fmt.Errorf("writing %s: %w", u.netdev, err)
		}
		if err := c.call(ctx, managerPath, ifaceMgr+".Reload", nil); err != nil {
			return fmt.Errorf("reloading systemd-networkd: %w", err)
		}
	}
	if next != u.old {
		if err := setSTP(s.NS, u.index, next); err != nil {
			return fmt.Errorf("setting STP and forward delay: %w", err)
		}
	}
	if mtu := s.Bridge.MTU; mtu > 0 && mtu != u.oldMTU {
		br, err := h.LinkByIndex(u.index)
		if err == nil {
			err = h.LinkSetMTU(br, mtu)
		}
		if err != nil {
			return fmt.Errorf("setting the MTU to %d: %w", mtu, err)
		}
	}
	return nil
}

// undoReapply puts the .netdev and the live bridge's settings back. It is
// not cut short by ctx's end.
func (c *Client) undoReapply(ctx context.Context, s Spec, u *reapplied) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), rollbackWait)
	defer cancel()
	var errs []error
	if err := os.WriteFile(s.path(u.netdev), []byte(u.oldFile), 0o644); err != nil {
		errs = append(errs, fmt.Errorf("writing %s back: %w", u.netdev, err))
	} else if err := c.call(ctx, managerPath, ifaceMgr+".Reload", nil); err != nil {
		errs = append(errs, fmt.Errorf("reloading systemd-networkd: %w", err))
	}
	if u.old.stp {
		// STP needs the delay in range while it runs: delay first.
		errs = append(errs, setSTP(s.NS, u.index, u.old))
	} else {
		errs = append(errs, setSTP(s.NS, u.index, stpDelay{}), setSTP(s.NS, u.index, u.old))
	}
	h, err := netlink.NewHandleAt(s.NS)
	if err == nil {
		defer h.Close()
		var br netlink.Link
		if br, err = h.LinkByIndex(u.index); err == nil && br.Attrs().MTU != u.oldMTU {
			err = h.LinkSetMTU(br, u.oldMTU)
		}
	}
	errs = append(errs, err)
	return errors.Join(errs...)
}
