package store

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"
	"time"

	"github.com/virtbridge/virtbridge/internal/paths"
)

// StaleFile is the stale marker's name, in the run directory
// (/run/virtbridge), a filesystem other than the store's.
const StaleFile = "ports.stale"

// StaleMode is the mode of the stale marker: `virtbridge who`, run by
// anyone, reads it to say that the store may be behind.
const StaleMode = 0o644

// MarkStale records, in the marker file at marker, that the store on disk
// may lack the journal's attach and detach records from since on: a save
// failed (a full disk), and a one-shot hook forgets what it could not
// write. The marker lives on another filesystem than the store (the run
// directory, a tmpfs), so that it can be written when the store cannot. An
// existing marker is kept: it names the earlier time, from which the store
// has been stale all along. Idempotent.
func MarkStale(marker string, since time.Time) error {
	if err := paths.EnsureDir(dirOf(marker)); err != nil {
		return fmt.Errorf("marking the mapping store stale in %q: %w", marker, err)
	}
	f, err := paths.OpenFile(marker, os.O_WRONLY|os.O_CREATE|os.O_EXCL, StaleMode)
	if errors.Is(err, fs.ErrExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("marking the mapping store stale in %q: %w", marker, err)
	}
	_, err = f.WriteString(since.UTC().Format(time.RFC3339Nano) + "\n")
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("marking the mapping store stale in %q: %w", marker, err)
	}
	return nil
}

// StaleSince reads the marker: stale is false when there is none. A marker
// whose time cannot be read (cut by a crash) means stale since the zero
// time: every record counts. Read-only.
func StaleSince(marker string) (since time.Time, stale bool, err error) {
	f, err := paths.OpenFile(marker, os.O_RDONLY, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return time.Time{}, false, nil
	}
	if err != nil {
		return time.Time{}, true, fmt.Errorf("reading the stale marker of the mapping store: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, 128))
	if err != nil {
		return time.Time{}, true, fmt.Errorf("reading the stale marker %q: %w", marker, err)
	}
	since, err = time.Parse(time.RFC3339Nano, strings.TrimSpace(string(data)))
	if err != nil {
		return time.Time{}, true, nil
	}
	return since, true, nil
}

// ClearStale removes the marker once a save has brought the store up to
// date. Idempotent: no marker is fine.
func ClearStale(marker string) error {
	if err := os.Remove(marker); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("removing the stale marker of the mapping store: %w", err)
	}
	return nil
}
