package doctor

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/virtbridge/virtbridge/internal/command"
)

// Default locations of the network managers' runtime state.
const (
	DefaultNMRunDir         = "/run/NetworkManager"
	DefaultNetworkdLinksDir = "/run/systemd/netif/links"
	// nmcli waits for NetworkManager over D-Bus; a stuck one must not
	// hang the doctor.
	nmcliTimeout = 5 * time.Second
)

// HostManagers finds NetworkManager and systemd-networkd on the host. NM is
// asked with `nmcli -t -f DEVICE,STATE device` when nmcli is installed and
// NM answers, else through its per-device state files; networkd through
// its per-link state files. Both keep state for the host's own network
// namespace only (interface indexes are per namespace).
type HostManagers struct {
	// Nmcli is the nmcli program; "" looks it up in PATH, "-" never runs it.
	Nmcli string
	// NMRunDir and NetworkdLinksDir default to DefaultNMRunDir and
	// DefaultNetworkdLinksDir.
	NMRunDir         string
	NetworkdLinksDir string

	nm     map[string]string // device → state, from nmcli
	nmRead bool
}

var _ Managers = (*HostManagers)(nil)

// ManagedBy names the manager of l and its state, or "" when none manages
// it. It reads; it changes nothing.
func (m *HostManagers) ManagedBy(l Link) (string, error) {
	if by, err := m.networkManager(l); by != "" || err != nil {
		return by, err
	}
	return m.networkd(l)
}

func (m *HostManagers) networkManager(l Link) (string, error) {
	if !m.nmRead {
		m.nmRead = true
		m.nm = m.nmcli()
	}
	if m.nm != nil {
		st, ok := m.nm[l.Name]
		if !ok || nmUnmanaged(st) {
			return "", nil
		}
		return "NetworkManager (" + st + ")", nil
	}
	dir := m.NMRunDir
	if dir == "" {
		dir = DefaultNMRunDir
	}
	kv, err := readState(filepath.Join(dir, "devices", strconv.Itoa(l.Index)))
	if err != nil || kv == nil {
		return "", err
	}
	if m := kv["managed"]; m == "true" || m == "1" {
		return "NetworkManager (managed=true in " + filepath.Join(dir, "devices", strconv.Itoa(l.Index)) + ")", nil
	}
	return "", nil
}

// nmUnmanaged: NM leaves devices alone that it does not manage, and only
// watches those configured by someone else ("connected (externally)").
func nmUnmanaged(state string) bool {
	return state == "unmanaged" || strings.Contains(state, "externally")
}

// nmcli returns NM's device states, or nil when nmcli is missing or NM
// does not answer (not running).
func (m *HostManagers) nmcli() map[string]string {
	path := m.Nmcli
	switch path {
	case "-":
		return nil
	case "":
		p, err := exec.LookPath("nmcli")
		if err != nil {
			return nil
		}
		path = p
	}
	out, err := command.Cmd{Path: path, Args: []string{"-t", "-f", "DEVICE,STATE", "device"}, Timeout: nmcliTimeout}.Output(context.Background())
	if err != nil {
		return nil
	}
	return parseNmcli(out)
}

// parseNmcli reads `nmcli -t -f DEVICE,STATE device`: one DEVICE:STATE per
// line, with ':' and '\' in values escaped by '\'.
func parseNmcli(out []byte) map[string]string {
	states := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		fields := splitTerse(sc.Text())
		if len(fields) == 2 && fields[0] != "" {
			states[fields[0]] = fields[1]
		}
	}
	return states
}

func splitTerse(line string) []string {
	var fields []string
	var cur strings.Builder
	for i := 0; i < len(line); i++ {
		switch c := line[i]; {
		case c == '\\' && i+1 < len(line):
			i++
			cur.WriteByte(line[i])
		case c == ':':
			fields = append(fields, cur.String())
			cur.Reset()
		default:
			cur.WriteByte(c)
		}
	}
	return append(fields, cur.String())
}

func (m *HostManagers) networkd(l Link) (string, error) {
	dir := m.NetworkdLinksDir
	if dir == "" {
		dir = DefaultNetworkdLinksDir
	}
	path := filepath.Join(dir, strconv.Itoa(l.Index))
	kv, err := readState(path)
	if err != nil || kv == nil {
		return "", err
	}
	switch st := kv["ADMIN_STATE"]; st {
	case "", "unmanaged", "linger":
		return "", nil
	default:
		by := "systemd-networkd (" + st
		if f := kv["NETWORK_FILE"]; f != "" {
			by += ", " + f
		}
		return by + ")", nil
	}
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
