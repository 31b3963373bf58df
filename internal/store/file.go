package store

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/virtbridge/virtbridge/internal/names"
	"github.com/virtbridge/virtbridge/internal/paths"
)

// FileMode is the store's mode, whatever the umask: root writes it; anyone
// may read it, as the mapping is no secret (every tap's interface alias
// already names its VM, for any user of `ip -d link`), so `virtbridge who`
// works unprivileged.
const FileMode = 0o644

// Version is the format version Marshal writes and Parse reads.
const Version = 1

// MaxSize bounds the store file: far above any real host (about 200 bytes
// per NIC), far below what could hurt the hook.
const MaxSize = 32 << 20

const maxText = 256 // VM names and UUIDs

// CorruptError is a store file that cannot be what virtbridge wrote.
type CorruptError struct{ Msg string }

func (e *CorruptError) Error() string { return "corrupt mapping store: " + e.Msg }

func corrupt(format string, args ...any) error {
	return &CorruptError{Msg: fmt.Sprintf(format, args...)}
}

// VersionError is a store written by a newer virtbridge: not corrupt, and
// not ours to overwrite.
type VersionError struct{ Version int }

func (e *VersionError) Error() string {
	return fmt.Sprintf("mapping store has format version %d, this virtbridge reads version %d: "+
		"it was written by a newer virtbridge; upgrade, or move the file aside", e.Version, Version)
}

type fileFormat struct {
	Version int     `json:"version"`
	Entries []Entry `json:"entries"`
}

// Parse decodes a store file and checks every entry; it is pure. It
// returns the entries ordered by (UUID, MAC), MACs in canonical form, or a
// *CorruptError or *VersionError.
func Parse(data []byte) ([]Entry, error) {
	if len(data) > MaxSize {
		return nil, corrupt("%d bytes, more than the %d allowed", len(data), MaxSize)
	}
	var f struct {
		Version *int            `json:"version"`
		Entries json.RawMessage `json:"entries"`
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&f); err != nil {
		return nil, corrupt("%v", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, corrupt("data after the JSON object")
	}
	switch {
	case f.Version == nil:
		return nil, corrupt("no version")
	case *f.Version > Version:
		return nil, &VersionError{Version: *f.Version}
	case *f.Version != Version:
		return nil, corrupt("version %d", *f.Version)
	}
	var entries []Entry
	if len(f.Entries) > 0 && string(f.Entries) != "null" {
		if err := json.Unmarshal(f.Entries, &entries); err != nil {
			return nil, corrupt("entries: %v", err)
		}
	}
	taps := make(map[string]int, len(entries))
	for i := range entries {
		e, err := normalize(entries[i])
		if err != nil {
			return nil, corrupt("entry %d: %v", i+1, err)
		}
		if j, dup := taps[e.Tap]; dup {
			return nil, corrupt("entries %d and %d both hold tap %q", j+1, i+1, e.Tap)
		}
		taps[e.Tap] = i
		entries[i] = e
	}
	slices.SortFunc(entries, compareKey)
	for i := 1; i < len(entries); i++ {
		if compareKey(entries[i-1], entries[i]) == 0 {
			return nil, corrupt("two entries for vm %q mac %s", entries[i].UUID, entries[i].MAC)
		}
	}
	return entries, nil
}

func compareKey(a, b Entry) int {
	if c := strings.Compare(a.UUID, b.UUID); c != 0 {
		return c
	}
	return strings.Compare(a.MAC, b.MAC)
}

// Marshal encodes entries as a store file, deterministically.
func Marshal(entries []Entry) []byte {
	if entries == nil {
		entries = []Entry{}
	}
	data, err := json.MarshalIndent(fileFormat{Version: Version, Entries: entries}, "", "  ")
	if err != nil {
		panic(fmt.Sprintf("store: marshalling entries: %v", err)) // strings and times only: cannot fail
	}
	return append(data, '\n')
}

// normalize checks an entry and puts its MAC in canonical form.
func normalize(e Entry) (Entry, error) {
	if err := checkText("vm uuid", e.UUID, false); err != nil {
		return e, err
	}
	if err := checkText("vm name", e.VM, true); err != nil {
		return e, err
	}
	mac, err := names.UnicastMAC(e.MAC)
	if err != nil {
		return e, err
	}
	e.MAC = mac.String()
	if err := names.Ifname(e.Tap); err != nil {
		return e, fmt.Errorf("tap: %w", err)
	}
	if err := names.Ifname(e.Bridge); err != nil {
		return e, fmt.Errorf("bridge: %w", err)
	}
	e.Since = e.Since.UTC()
	if y := e.Since.Year(); y < 1 || y > 9999 {
		return e, fmt.Errorf("since: year %d is out of range", y)
	}
	return e, nil
}

func checkText(what, s string, emptyOK bool) error {
	switch {
	case s == "" && !emptyOK:
		return fmt.Errorf("empty %s", what)
	case len(s) > maxText:
		return fmt.Errorf("%s is %d bytes long, at most %d allowed", what, len(s), maxText)
	case !utf8.ValidString(s):
		return fmt.Errorf("%s %q is not valid UTF-8", what, s)
	case strings.IndexFunc(s, unicode.IsControl) >= 0:
		return fmt.Errorf("%s %q contains a control character", what, s)
	}
	return nil
}

func canonicalMAC(s string) string {
	if mac, err := names.UnicastMAC(s); err == nil {
		return mac.String()
	}
	return s
}

// readLimited reads the store without following a symlink and only if it
// is a regular file that root or the effective user owns and nobody else
// can write (paths.OpenFile); otherwise a *paths.UnsafeError.
func readLimited(path string) ([]byte, error) {
	f, err := paths.OpenFile(path, os.O_RDONLY, 0)
	if err != nil {
		return nil, fmt.Errorf("reading mapping store: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxSize+1))
	if err != nil {
		return nil, fmt.Errorf("reading mapping store %q: %w", path, err)
	}
	return data, nil
}

func dirOf(path string) string { return filepath.Dir(path) }

// writeAtomic replaces path with data atomically and durably
// (paths.WriteAtomic).
func writeAtomic(path string, data []byte) error {
	if err := paths.WriteAtomic(path, data, FileMode); err != nil {
		return fmt.Errorf("saving mapping store %q: %w", path, err)
	}
	return nil
}
