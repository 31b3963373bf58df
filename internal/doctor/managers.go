package doctor

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/godbus/dbus/v5"

	"github.com/virtbridge/virtbridge/internal/owner/networkd"
	"github.com/virtbridge/virtbridge/internal/owner/nm"
)

// Default locations of the network managers' runtime state.
const (
	DefaultNMRunDir         = "/run/NetworkManager"
	DefaultNetworkdLinksDir = "/run/systemd/netif/links"
	// DefaultManagersTimeout bounds the questions to each manager over
	// D-Bus: a stuck one must not hang the doctor.
	DefaultManagersTimeout = 5 * time.Second
)

// LinkManagers is what NetworkManager and systemd-networkd make of one
// link.
type LinkManagers struct {
	NM       nm.Link
	Networkd networkd.Link
	// FromFiles: read from the managers' state files (no system bus), which
	// say only whether NetworkManager manages the link (NM.Managed) and
	// networkd's state and file.
	FromFiles bool
	nmFile    string // the NetworkManager state file read
}

// By names the managers that manage the link, with their state ("" when
// none does): NetworkManager when it manages the device and no made-up
// "externally connected" profile is what is active on it, networkd when it
// configures it from a .network.
func (m LinkManagers) By() string {
	var by []string
	switch {
	case m.FromFiles && m.NM.Managed:
		by = append(by, "NetworkManager (managed=true in "+m.nmFile+")")
	case m.NM.Configures():
		by = append(by, fmt.Sprintf("NetworkManager (%s, profile %q)", m.NM.State, m.NM.Profile))
	case !m.FromFiles && m.NM.Managed && !m.NM.External:
		// No profile active yet: one that autoconnects may take it.
		by = append(by, "NetworkManager ("+m.NM.State+")")
	}
	if m.Networkd.Configures() {
		s := "systemd-networkd (" + m.Networkd.Admin
		if m.Networkd.File != "" {
			s += ", " + m.Networkd.File
		}
		by = append(by, s+")")
	}
	return strings.Join(by, " and ")
}

// HostManagers asks NetworkManager and systemd-networkd what they make of
// the host's links over D-Bus (nm.Client.Inspect, networkd.Client.Inspect),
// each question bounded by Timeout. Without a bus (Dial nil) it reads their
// state files instead: NetworkManager's per-device and networkd's per-link
// ones, which are kept for the host's own network namespace only
// (interface indexes are per namespace). It reads; it changes nothing.
type HostManagers struct {
	// Dial connects to the bus the managers answer on (the system bus);
	// nil when there is none: the state files are read.
	Dial func() (*dbus.Conn, error)
	// Timeout bounds the questions to each manager about one link
	// (DefaultManagersTimeout when zero).
	Timeout time.Duration
	// NMRunDir and NetworkdLinksDir default to DefaultNMRunDir and
	// DefaultNetworkdLinksDir.
	NMRunDir         string
	NetworkdLinksDir string

	dialed  bool
	conn    *dbus.Conn
	dialErr error
	// stuck remembers a manager that did not answer in time: asking it
	// again about every link would make the doctor wait that long each
	// time.
	stuck map[string]error
	seen  map[string]LinkManagers
}

var _ Managers = (*HostManagers)(nil)

// Close closes the bus connection, if one was made.
func (m *HostManagers) Close() {
	if m.conn != nil {
		m.conn.Close()
	}
}

// Of reads what the managers make of l. A manager that does not answer
// (within Timeout) is an error naming it; what the other said is kept.
func (m *HostManagers) Of(l Link) (LinkManagers, error) {
	if m.Dial == nil {
		return m.fromFiles(l)
	}
	if got, ok := m.seen[l.Name]; ok {
		return got, nil
	}
	if !m.dialed {
		m.dialed = true
		m.conn, m.dialErr = m.Dial()
		m.stuck, m.seen = map[string]error{}, map[string]LinkManagers{}
	}
	if m.dialErr != nil {
		return LinkManagers{}, fmt.Errorf("connecting to the system D-Bus to ask NetworkManager and systemd-networkd: %w", m.dialErr)
	}
	var out LinkManagers
	var errs []error
	if err := m.ask("NetworkManager", func(ctx context.Context) (err error) {
		var ls map[string]nm.Link
		ls, _, err = nm.New(m.conn).Inspect(ctx, []string{l.Name})
		out.NM = ls[l.Name]
		return err
	}); err != nil {
		errs = append(errs, err)
	}
	if err := m.ask("systemd-networkd", func(ctx context.Context) (err error) {
		var ls map[string]networkd.Link
		ls, _, err = networkd.New(m.conn).Inspect(ctx, []string{l.Name})
		out.Networkd = ls[l.Name]
		return err
	}); err != nil {
		errs = append(errs, err)
	}
	if len(errs) == 0 {
		m.seen[l.Name] = out
	}
	return out, errors.Join(errs...)
}

// ask runs q with the timeout, unless manager did not answer in time
// before.
func (m *HostManagers) ask(manager string, q func(context.Context) error) error {
	if err := m.stuck[manager]; err != nil {
		return err
	}
	timeout := m.Timeout
	if timeout == 0 {
		timeout = DefaultManagersTimeout
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	err := q(ctx)
	if err != nil && ctx.Err() != nil {
		err = fmt.Errorf("%s did not answer over D-Bus within %v (stuck?): %w", manager, timeout, err)
		m.stuck[manager] = err
	}
	return err
}

// fromFiles reads the managers' state files for l.
func (m *HostManagers) fromFiles(l Link) (LinkManagers, error) {
	out := LinkManagers{FromFiles: true}
	dir := m.NMRunDir
	if dir == "" {
		dir = DefaultNMRunDir
	}
	out.nmFile = filepath.Join(dir, "devices", strconv.Itoa(l.Index))
	kv, err := readState(out.nmFile)
	if err != nil {
		return out, err
	}
	if v := kv["managed"]; v == "true" || v == "1" {
		out.NM.Known, out.NM.Managed = true, true
	}
	dir = m.NetworkdLinksDir
	if dir == "" {
		dir = DefaultNetworkdLinksDir
	}
	kv, err = readState(filepath.Join(dir, strconv.Itoa(l.Index)))
	if err != nil || kv == nil {
		return out, err
	}
	out.Networkd = networkd.Link{Known: true, Admin: kv["ADMIN_STATE"], Oper: kv["OPER_STATE"], File: kv["NETWORK_FILE"]}
	return out, nil
}

// readState reads a KEY=VALUE state file; nil without error when it does
// not exist. Section headers and comments are skipped.
func readState(path string) (map[string]string, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	kv := map[string]string{}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(line), "=")
		if ok && !strings.HasPrefix(k, "#") {
			kv[strings.TrimSpace(k)] = strings.TrimSpace(v)
		}
	}
	return kv, nil
}
