package networkd

import (
	"context"
	"path/filepath"
	"slices"
	"strings"
)

// Link is what systemd-networkd makes of one link, as doctor shows it.
type Link struct {
	// Known: networkd knows the link.
	Known bool
	// Admin is its administrative state (configuring, configured,
	// unmanaged, linger, failed...), Oper its operational state.
	Admin, Oper string
	// File is the .network file that matched, "" when none.
	File string
}

// Configures reports whether networkd configures the link from a .network
// file (administrative state configuring, configured or failed).
func (l Link) Configures() bool { return l.Known && slices.Contains(owning, l.Admin) }

// Virtbridge reports whether file is one of virtbridge's runtime files
// (05-virtbridge-*), wherever it lies.
func Virtbridge(file string) bool { return strings.HasPrefix(filepath.Base(file), prefix) }

// Inspect reads what networkd makes of each link of names (read-only).
// running is false, with no error, when networkd is not on the bus; a
// link it does not know has Known false. ctx bounds every call.
func (c *Client) Inspect(ctx context.Context, names []string) (links map[string]Link, running bool, err error) {
	if running, err = c.running(ctx); err != nil || !running {
		return nil, running, err
	}
	links = make(map[string]Link, len(names))
	for _, name := range names {
		l, ok, err := c.linkState(ctx, name)
		if err != nil {
			return nil, true, err
		}
		links[name] = Link{Known: ok, Admin: l.admin, Oper: l.oper, File: l.file}
	}
	return links, true, nil
}
