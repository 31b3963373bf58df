package networkd

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/virtbridge/virtbridge/internal/change"
)

// MadeBridge reports whether systemd-networkd runs and configures bridge
// from a .network file: file names it (virtbridge's is Files' second,
// under c.Dir). It only reads.
func (c *Client) MadeBridge(ctx context.Context, bridge string) (file string, ok bool, err error) {
	if up, err := c.running(ctx); err != nil || !up {
		return "", false, err
	}
	l, found, err := c.linkState(ctx, bridge)
	if err != nil || !found || l.file == "" {
		return "", false, err
	}
	return l.file, true, nil
}

// Ours reports whether file is one of virtbridge's for bridge.
func (c *Client) Ours(file, bridge string) bool {
	return strings.HasPrefix(file, filepath.Join(c.Dir, prefix+bridge)+".") || strings.HasPrefix(file, filepath.Join(c.Dir, prefix+bridge)+"-port-")
}

// ReleaseBridge gives the uplink of bridge s.Bridge, made by Handover in
// an earlier run, back to its own .network (`virtbridge release`):
// virtbridge's three files go, networkd reloads, the bridge is deleted,
// and the uplink is configured from another .network again. s.Bridge.Uplink
// may be empty: the port file names the uplink.
func (c *Client) ReleaseBridge(ctx context.Context, s Spec) ([]change.Change, error) {
	b := s.Bridge
	if b.Uplink == "" {
		ports, _ := filepath.Glob(s.path(filepath.Join(c.Dir, prefix+b.Name+"-port-*.network")))
		if len(ports) != 1 {
			return nil, fmt.Errorf("releasing bridge %q: not one port file %s-port-*.network of virtbridge's under %s (found %d); "+
				"name the uplink in the configuration", b.Name, prefix+b.Name, c.Dir, len(ports))
		}
		b.Uplink = strings.TrimSuffix(strings.TrimPrefix(filepath.Base(ports[0]), prefix+b.Name+"-port-"), ".network")
		s.Bridge = b
	}
	netdev, network, port := Files(b)
	files := map[string]string{}
	for _, f := range []string{netdev, network, port} {
		if _, err := os.Stat(s.path(filepath.Join(c.Dir, f))); err == nil {
			files[f] = ""
		}
	}
	if s.NS == 0 {
		s.NS = netns.None()
	}
	h, err := netlink.NewHandleAt(s.NS)
	if err != nil {
		return nil, fmt.Errorf("releasing bridge %q: opening netlink: %w", b.Name, err)
	}
	defer h.Close()
	if err := c.undo(ctx, s, h, link{}, files); err != nil {
		return nil, fmt.Errorf("giving uplink %q of bridge %q back to systemd-networkd: %w", b.Uplink, b.Name, err)
	}
	return []change.Change{
		{Kind: change.UplinkReleased, Object: b.Uplink, Before: fmt.Sprintf("%s (systemd-networkd %s)", b.Name, filepath.Join(c.Dir, port))},
		{Kind: change.BridgeDeleted, Object: b.Name, Before: fmt.Sprintf("systemd-networkd %s", filepath.Join(c.Dir, netdev))},
	}, nil
}
