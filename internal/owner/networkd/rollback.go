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
	"github.com/vishvananda/netns"
)

// rollbackWait bounds the wait for the uplink to be configured as before.
const rollbackWait = 30 * time.Second

// rollback undoes a handoff after cause: it removes virtbridge's files,
// reloads networkd, deletes the bridge (networkd leaves netdevs behind
// when their file goes) and waits for the uplink to be configured from its
// own .network again. It is not cut short by ctx's end.
func (c *Client) rollback(ctx context.Context, s Spec, h *netlink.Handle, up link, files map[string]string, cause error) error {
	b := s.Bridge
	if err := c.undo(ctx, s, h, up, files); err != nil {
		return fmt.Errorf("handing uplink %q of bridge %q over to systemd-networkd: %v; undoing it failed too: %v: the host may need a manual look (`networkctl status %s`)",
			b.Uplink, b.Name, cause, err, b.Uplink)
	}
	return fmt.Errorf("handing uplink %q of bridge %q over to systemd-networkd: %w; virtbridge's files were removed, %q is configured from %s again: %w",
		b.Uplink, b.Name, cause, b.Uplink, up.file, ErrRolledBack)
}

// undo removes virtbridge's files, reloads networkd, deletes the bridge
// (networkd leaves netdevs behind when their file goes) and waits for the
// uplink to be configured from its own .network (up's) again. It is not
// cut short by ctx's end.
func (c *Client) undo(ctx context.Context, s Spec, h *netlink.Handle, up link, files map[string]string) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), rollbackWait)
	defer cancel()
	b := s.Bridge
	var errs []error
	for name := range files {
		if err := os.Remove(s.path(filepath.Join(c.Dir, name))); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, fmt.Errorf("removing %s: %w", filepath.Join(c.Dir, name), err))
		}
	}
	if err := c.call(ctx, managerPath, ifaceMgr+".Reload", nil); err != nil {
		errs = append(errs, fmt.Errorf("reloading systemd-networkd: %w", err))
	}
	if br, err := h.LinkByName(b.Name); err == nil {
		if err := h.LinkDel(br); err != nil {
			errs = append(errs, fmt.Errorf("deleting bridge %q: %w", b.Name, err))
		}
	} else if !errors.As(err, new(netlink.LinkNotFoundError)) {
		errs = append(errs, fmt.Errorf("looking up bridge %q: %w", b.Name, err))
	}
	if len(errs) == 0 {
		errs = append(errs, c.waitUplink(ctx, b.Uplink, up))
	}
	return errors.Join(errs...)
}

// Release undoes the handoff r after it was committed (a later step of
// the same transaction failed): the files go, the bridge goes, and the
// uplink is configured from its own .network again. Releasing a Result
// with no changes does nothing; releasing a reapply puts the .netdev and
// the bridge's settings back.
func (c *Client) Release(ctx context.Context, s Spec, r Result) error {
	if len(r.Changes) == 0 {
		return nil
	}
	if s.NS == 0 {
		s.NS = netns.None()
	}
	if r.reapplied != nil {
		if err := c.undoReapply(ctx, s, r.reapplied); err != nil {
			return fmt.Errorf("putting the settings of bridge %q back: %w", s.Bridge.Name, err)
		}
		return nil
	}
	h, err := netlink.NewHandleAt(s.NS)
	if err != nil {
		return fmt.Errorf("giving uplink %q back to systemd-networkd: opening netlink: %w", s.Bridge.Uplink, err)
	}
	defer h.Close()
	if err := c.undo(ctx, s, h, r.prev, r.files); err != nil {
		return fmt.Errorf("giving uplink %q of bridge %q back to systemd-networkd (%s): %w", s.Bridge.Uplink, s.Bridge.Name, r.prev.file, err)
	}
	return nil
}

// waitUplink waits until name is configured from was's .network again
// (was.file "": from any .network but virtbridge's), routable if it was.
func (c *Client) waitUplink(ctx context.Context, name string, was link) error {
	for {
		l, ok, err := c.linkState(ctx, name)
		same := l.file == was.file || was.file == "" && l.file != "" && !strings.HasPrefix(filepath.Base(l.file), prefix)
		if err == nil && ok && same && l.admin == "configured" && (was.oper != "routable" || l.oper == "routable") {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%q not configured from %s again within %v (now %s, %s, from %q)", name, was.file, rollbackWait, l.admin, l.oper, l.file)
		case <-time.After(100 * time.Millisecond):
		}
	}
}
