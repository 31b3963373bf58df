// Package sysctl reads and writes kernel settings below /proc/sys, writing
// only when the value differs. It is the sysctl backend apply drives.
//
// /proc/sys/net shows the network namespace of the process that opens the
// file, so a Manager always acts on the namespace its own process runs in.
package sysctl

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/virtbridge/virtbridge/internal/change"
	"github.com/virtbridge/virtbridge/internal/deadline"
	"github.com/virtbridge/virtbridge/internal/desired"
	"github.com/virtbridge/virtbridge/internal/revert"
)

// DefaultRoot is where the kernel exposes its settings.
const DefaultRoot = "/proc/sys"

// ErrBridgeNetfilter is wrapped by the error returned for a net.bridge.*
// setting when the kernel has no net/bridge directory: br_netfilter is not
// loaded, so bridged traffic does not pass through iptables at all.
var ErrBridgeNetfilter = errors.New("br_netfilter is not loaded (no net/bridge settings): " +
	`run "modprobe br_netfilter" and add br_netfilter to /etc/modules-load.d/virtbridge.conf, ` +
	"or set sysctl.bridge_nf_call_iptables and sysctl.bridge_nf_call_ip6tables to leave in the configuration")

// Manager reads and writes settings below a root directory. It keeps no
// state, so one Manager may be shared.
type Manager struct {
	root string
}

// New returns a Manager working below root; an empty root means DefaultRoot.
// Tests pass a temporary directory.
func New(root string) *Manager {
	if root == "" {
		root = DefaultRoot
	}
	return &Manager{root: root}
}

// Get returns the current value of the dotted setting name, with runs of
// white space folded to one space.
func (m *Manager) Get(name string) (string, error) {
	p, err := m.path(name)
	if err != nil {
		return "", err
	}
	b, err := os.ReadFile(p)
	if err != nil {
		return "", m.readErr(name, err)
	}
	return normalize(string(b)), nil
}

// Ensure makes the setting s.Name hold s.Value. It is idempotent: it reads
// the value first and writes only when it differs, then reads it back. For a
// write it returns one change.SysctlChanged and pushes on rv the step that
// writes the old value back. A ctx that has ended starts nothing (a
// *deadline.Error).
func (m *Manager) Ensure(ctx context.Context, s desired.Sysctl, rv *revert.Reverter) ([]change.Change, error) {
	if err := deadline.Ended(ctx, "setting sysctl %q", s.Name); err != nil {
		return nil, err
	}
	want := normalize(s.Value)
	if want == "" {
		return nil, fmt.Errorf("setting sysctl %q: empty value", s.Name)
	}
	before, err := m.Get(s.Name)
	if err != nil {
		return nil, err
	}
	if before == want {
		return nil, nil
	}
	if err := m.set(s.Name, want); err != nil {
		return nil, err
	}
	rv.Add(func() error { return m.set(s.Name, before) })
	return []change.Change{{Kind: change.SysctlChanged, Object: s.Name, Before: before, After: want}}, nil
}

// set writes value and reads it back: some settings silently clamp or
// refuse values, and a write that did not take is an error.
func (m *Manager) set(name, value string) error {
	p, err := m.path(name)
	if err != nil {
		return err
	}
	f, err := os.OpenFile(p, os.O_WRONLY, 0)
	if err != nil {
		return m.readErr(name, err)
	}
	_, werr := f.WriteString(value + "\n")
	cerr := f.Close()
	if err := errors.Join(werr, cerr); err != nil {
		return fmt.Errorf("setting sysctl %q to %q: %w", name, value, err)
	}
	got, err := m.Get(name)
	if err != nil {
		return err
	}
	if got != value {
		return fmt.Errorf("setting sysctl %q to %q: the kernel kept %q", name, value, got)
	}
	return nil
}

// path maps a dotted name (net.ipv4.ip_forward) to its file. A name with a
// slash is taken as a path, as sysctl(8) does, so a dot inside an interface
// name (net/ipv4/conf/eth0.100/forwarding) survives.
func (m *Manager) path(name string) (string, error) {
	rel := name
	if !strings.Contains(name, "/") {
		rel = strings.ReplaceAll(name, ".", "/")
	}
	if rel == "" || !fs.ValidPath(rel) {
		return "", fmt.Errorf("sysctl %q: not a valid setting name", name)
	}
	return filepath.Join(m.root, filepath.FromSlash(rel)), nil
}

// readErr explains a missing net.bridge.* setting, which is the usual sign
// that br_netfilter is not loaded.
func (m *Manager) readErr(name string, err error) error {
	if errors.Is(err, fs.ErrNotExist) && isBridgeSetting(name) {
		if _, serr := os.Stat(filepath.Join(m.root, "net", "bridge")); errors.Is(serr, fs.ErrNotExist) {
			return fmt.Errorf("sysctl %q: %w", name, ErrBridgeNetfilter)
		}
	}
	return fmt.Errorf("sysctl %q: %w", name, err)
}

func isBridgeSetting(name string) bool {
	return strings.HasPrefix(name, "net.bridge.") || strings.HasPrefix(name, "net/bridge/")
}

// normalize folds the tabs and newlines the kernel prints between fields
// of multi-value settings, so "4096\t87380\t6291456\n" equals "4096 87380 6291456".
func normalize(v string) string {
	return strings.Join(strings.Fields(v), " ")
}
