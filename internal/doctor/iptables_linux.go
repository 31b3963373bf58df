package doctor

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/virtbridge/virtbridge/internal/firewall"
)

// HostTables reads the filter tables of the calling process's network
// namespace with `iptables -t filter -S`, for each variant and family: the
// nf_tables ones whenever iptables-nft is installed (reading creates
// nothing there), the legacy ones only where their filter table exists
// (reading would create it). A packet passes both variants' tables, so
// both matter.
type HostTables struct {
	// BinDir, when set, is the only directory searched for the commands.
	BinDir string
	// ProcNet is the proc directory of the namespace's legacy table
	// names; "" means /proc/self/net.
	ProcNet string
	// SysctlRoot tells whether IPv6 exists; "" means /proc/sys.
	SysctlRoot string
}

var _ Tables = HostTables{}

// Tables returns the tables found. It changes nothing.
func (h HostTables) Tables() ([]Table, error) {
	var out []Table
	for _, v := range []string{"nft", "legacy"} {
		for _, fam := range h.families() {
			cmd := "iptables-" + v
			if fam == "ipv6" {
				cmd = "ip6tables-" + v
			}
			path, err := firewall.LookPath(h.BinDir, cmd)
			if err != nil {
				continue // not installed
			}
			if v == "legacy" && !h.legacyFilter(fam) {
				continue
			}
			t, err := readTable(path, v, fam)
			if err != nil {
				return out, err
			}
			out = append(out, t)
		}
	}
	return out, nil
}

func (h HostTables) families() []string {
	root := h.SysctlRoot
	if root == "" {
		root = "/proc/sys"
	}
	if _, err := os.Stat(filepath.Join(root, "net", "ipv6")); err != nil {
		return []string{"ipv4"} // ipv6.disable=1
	}
	return []string{"ipv4", "ipv6"}
}

// legacyFilter reports whether the namespace has a legacy filter table.
func (h HostTables) legacyFilter(fam string) bool {
	dir := h.ProcNet
	if dir == "" {
		dir = "/proc/self/net"
	}
	name := "ip_tables_names"
	if fam == "ipv6" {
		name = "ip6_tables_names"
	}
	b, err := os.ReadFile(filepath.Join(dir, name))
	if errors.Is(err, fs.ErrNotExist) {
		return false
	}
	return err == nil && slices.Contains(strings.Fields(string(b)), "filter")
}

func readTable(path, variant, family string) (Table, error) {
	f, err := firewall.ReadFilter(context.Background(), path, 5) // each command capped at command.DefaultTimeout
	return tableOf(variant, family, f, err)
}
