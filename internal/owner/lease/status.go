package lease

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/virtbridge/virtbridge/internal/owner/dhcp"
	"github.com/virtbridge/virtbridge/internal/paths"
)

// StatusPath is where virtbridged keeps the state of the lease it keeps on
// bridge, under the run directory: the hook, plan, status and doctor read
// it to tell that virtbridged owns the bridge's address.
func StatusPath(runDir, bridge string) string {
	return filepath.Join(runDir, "lease-"+bridge+".json")
}

// WriteStatus writes s (with the calling process's pid) to its file.
func WriteStatus(runDir string, s Status) error {
	s.PID = os.Getpid()
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	return paths.WriteAtomic(StatusPath(runDir, s.Bridge), append(b, '\n'), 0o644)
}

// RemoveStatus removes bridge's status file; missing is success.
func RemoveStatus(runDir, bridge string) error {
	if err := os.Remove(StatusPath(runDir, bridge)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

// readAny reads bridge's status, whoever wrote it, alive or not.
func readAny(runDir, bridge string) (s Status, ok bool, err error) {
	b, err := paths.ReadRegular(StatusPath(runDir, bridge), 1<<16, false)
	if errors.Is(err, fs.ErrNotExist) {
		return s, false, nil
	}
	if err != nil {
		return s, false, err
	}
	if err := json.Unmarshal(b, &s); err != nil {
		return s, false, fmt.Errorf("reading %s: %w", StatusPath(runDir, bridge), err)
	}
	return s, true, nil
}

// ReadStatus reads bridge's status; ok is false when there is none or the
// process that wrote it runs no more (a virtbridged killed without
// cleaning up).
func ReadStatus(runDir, bridge string) (s Status, ok bool, err error) {
	if s, ok, err = readAny(runDir, bridge); !ok || err != nil {
		return s, false, err
	}
	if s.PID <= 0 || syscall.Kill(s.PID, 0) != nil {
		return s, false, nil
	}
	return s, true, nil
}

// Describe says, for people, who holds the bridge's address and until
// when: "virtbridged (pid 812) keeps lease 10.88.0.104/24 from 10.88.0.1,
// bound, expires 04:52:00 (in 1m50s), renews at 04:51:00".
func (s Status) Describe(now time.Time) string {
	var b strings.Builder
	fmt.Fprintf(&b, "virtbridged (pid %d) keeps ", s.PID)
	if s.Addr == "" {
		fmt.Fprintf(&b, "no lease yet (%s)", s.Phase)
		return b.String()
	}
	fmt.Fprintf(&b, "lease %s", s.Addr)
	if s.Server != "" {
		fmt.Fprintf(&b, " from %s", s.Server)
	}
	fmt.Fprintf(&b, ", %s, expires %s (in %v)", s.Phase, s.Expires.UTC().Format(time.TimeOnly),
		s.Expires.Sub(now).Round(time.Second))
	if !s.RenewAt.IsZero() {
		when := "renews at " + s.RenewAt.UTC().Format(time.TimeOnly)
		if now.After(s.RenewAt) {
			when = "renewing since " + s.RenewAt.UTC().Format(time.TimeOnly)
		}
		b.WriteString(", " + when)
	}
	return b.String()
}

// Stopped records the foreign DHCP clients virtbridged stopped to keep a
// bridge's lease, for `virtbridge release` to say how to start them again.
type Stopped struct {
	Bridge  string         `json:"bridge"`
	Uplink  string         `json:"uplink"`
	Clients []dhcp.Process `json:"clients"`
	At      time.Time      `json:"at"`
}

// StoppedPath is where Stopped of bridge is kept, under the run
// directory.
func StoppedPath(runDir, bridge string) string {
	return filepath.Join(runDir, "lease-"+bridge+".stopped.json")
}

// WriteStopped writes s to its file.
func WriteStopped(runDir string, s Stopped) error {
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	return paths.WriteAtomic(StoppedPath(runDir, s.Bridge), append(b, '\n'), 0o644)
}

// ReadStopped reads bridge's Stopped; ok is false when there is none.
func ReadStopped(runDir, bridge string) (s Stopped, ok bool, err error) {
	b, err := paths.ReadRegular(StoppedPath(runDir, bridge), 1<<16, false)
	if errors.Is(err, fs.ErrNotExist) {
		return s, false, nil
	}
	if err != nil {
		return s, false, err
	}
	if err := json.Unmarshal(b, &s); err != nil {
		return s, false, fmt.Errorf("reading %s: %w", StoppedPath(runDir, bridge), err)
	}
	return s, true, nil
}

// RemoveStopped removes bridge's Stopped; missing is success.
func RemoveStopped(runDir, bridge string) error {
	if err := os.Remove(StoppedPath(runDir, bridge)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}
