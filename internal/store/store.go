// Package store keeps the current tap→VM mapping of the host in a small
// JSON file that survives a crash at any moment: every save writes a temp
// file in the same directory, fsyncs it, renames it over the store and
// fsyncs the directory, so a reader sees the old file or the new one, never
// a mix.
//
// The store is not locked here. Writers (Load, change, Save) must hold the
// host lock around the whole read-modify-write; readers that only look
// (Read: `virtbridge who`, `virtbridge status`) need no lock.
package store

import (
	"cmp"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/virtbridge/virtbridge/internal/paths"
)

// DefaultPath is where the store lives unless told otherwise.
const DefaultPath = "/var/lib/virtbridge/ports.json"

// Entry is one VM NIC attached to a bridge through a tap. Entries are keyed
// by (UUID, MAC); a tap belongs to at most one entry.
type Entry struct {
	UUID   string    `json:"uuid"`
	VM     string    `json:"vm"`
	MAC    string    `json:"mac"`
	Tap    string    `json:"tap"`
	Bridge string    `json:"bridge"`
	Since  time.Time `json:"since"`
}

// Group is the entries of one bridge, as `virtbridge status` lists them.
type Group struct {
	Bridge  string
	Entries []Entry
}

// Recovery says that Load found the store corrupt or untrusted, moved it
// aside and started empty. The caller journals it (journal.Writer.StoreRecovered).
type Recovery struct {
	Path    string // the store
	MovedTo string // where the corrupt file is now
	Cause   error  // what was wrong with it
}

// Store is the mapping in memory. It is not safe for concurrent use.
type Store struct {
	path      string
	entries   []Entry // sorted by (UUID, MAC)
	dirty     bool
	recovered *Recovery
}

// New returns an empty store that Save writes to path. It reads nothing.
func New(path string) *Store {
	return &Store{path: path}
}

// Read loads the store at path without changing anything on disk: for
// lock-free readers. A missing file is an empty store; a corrupt one is a
// *CorruptError (errors.As), an untrusted one (a symlink, not a regular
// file, owned by another user than root or the caller, writable by group
// or others) a *paths.UnsafeError; both are left where they are.
func Read(path string) (*Store, error) {
	data, err := readLimited(path)
	if errors.Is(err, os.ErrNotExist) {
		return New(path), nil
	}
	if err != nil {
		return nil, err
	}
	entries, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("reading mapping store %q: %w", path, err)
	}
	return &Store{path: path, entries: entries}, nil
}

// Load loads the store at path for a writer, which must hold the host lock.
// Its directory must be safe (paths.EnsureDir: created 0755 when missing;
// a symlink, another owner or group/other write access is an error). A
// missing file is an empty store. A corrupt file (which should never
// happen, but a disk can lie) is renamed to PATH.corrupt-<UTC time>, the
// store starts empty and Recovered reports it, so that one bad file never
// stops VMs from starting. An untrusted file (*paths.UnsafeError: a
// symlink, not a regular file, another owner, writable by group or others)
// is treated the same way: its content cannot be trusted, and the mapping
// is a record that the next start and stop of each VM (and the daemon's
// reconcile) rebuild, while refusing would stop every VM start until an
// administrator acts; the rename moves a symlink itself, never its target.
// A store written by a newer virtbridge (*VersionError) is left alone and
// returned as an error.
func Load(path string) (*Store, error) {
	if err := paths.EnsureDir(dirOf(path)); err != nil {
		return nil, fmt.Errorf("loading mapping store %q: %w", path, err)
	}
	s, err := Read(path)
	var ce *CorruptError
	var ue *paths.UnsafeError
	switch {
	case errors.As(err, &ue):
		return moveAside(path, ".untrusted-", err)
	case !errors.As(err, &ce):
		return s, err
	}
	return moveAside(path, ".corrupt-", ce)
}

// moveAside renames the store at path to PATH<infix><UTC time> and
// returns an empty, dirty store whose Recovered says why.
func moveAside(path, infix string, cause error) (*Store, error) {
	moved := path + infix + time.Now().UTC().Format("20060102T150405.000000000Z")
	if rerr := os.Rename(path, moved); rerr != nil {
		return nil, fmt.Errorf("moving mapping store %q aside: %w (%v)", path, rerr, cause)
	}
	if derr := paths.SyncDir(dirOf(path)); derr != nil {
		return nil, derr
	}
	s := New(path)
	s.dirty = true
	s.recovered = &Recovery{Path: path, MovedTo: moved, Cause: cause}
	return s, nil
}

// Path returns the file the store is saved to.
func (s *Store) Path() string { return s.path }

// Recovered returns what Load did with a corrupt store, or nil.
func (s *Store) Recovered() *Recovery { return s.recovered }

// Save writes the store atomically and durably, if it changed since it was
// loaded or last saved; otherwise it does nothing (idempotent). It also
// removes temp files that a crashed writer left, which is safe because
// writers hold the host lock.
func (s *Store) Save() error {
	if !s.dirty {
		return nil
	}
	if err := writeAtomic(s.path, Marshal(s.entries)); err != nil {
		return err
	}
	s.dirty = false
	return nil
}

// Attach records e as the current mapping of its (UUID, MAC). It replaces a
// previous entry of the same NIC, and displaces (removes and returns) the
// entries whose tap is released by it: the same NIC's previous entry when
// its tap differs, and any other entry holding e's tap, since a tap has one
// owner. An identical mapping keeps its Since and reports changed false
// (idempotent); a zero e.Since becomes the current time. e.MAC is stored in
// canonical lower case.
func (s *Store) Attach(e Entry) (displaced []Entry, changed bool, err error) {
	e, err = normalize(e)
	if err != nil {
		return nil, false, fmt.Errorf("recording tap %q: %w", e.Tap, err)
	}
	if e.Since.IsZero() {
		e.Since = time.Now().UTC()
	}
	i, found := s.find(e.UUID, e.MAC)
	if found && sameMapping(s.entries[i], e) {
		return nil, false, nil
	}
	kept := s.entries[:0:0]
	for _, o := range s.entries {
		switch {
		case o.UUID == e.UUID && o.MAC == e.MAC:
			if o.Tap != e.Tap {
				displaced = append(displaced, o)
			}
		case o.Tap == e.Tap:
			displaced = append(displaced, o)
		default:
			kept = append(kept, o)
		}
	}
	s.entries = kept
	i, _ = s.find(e.UUID, e.MAC)
	s.entries = slices.Insert(s.entries, i, e)
	s.dirty = true
	return displaced, true, nil
}

func sameMapping(a, b Entry) bool {
	return a.UUID == b.UUID && a.VM == b.VM && a.MAC == b.MAC && a.Tap == b.Tap && a.Bridge == b.Bridge
}

// Detach removes the entry of the NIC (uuid, mac) and returns it; found is
// false when there was none (idempotent: already gone is fine).
func (s *Store) Detach(uuid, mac string) (e Entry, found bool) {
	i, ok := s.find(uuid, canonicalMAC(mac))
	if !ok {
		return Entry{}, false
	}
	e = s.entries[i]
	s.entries = slices.Delete(s.entries, i, i+1)
	s.dirty = true
	return e, true
}

// DetachVM removes every entry of the VM uuid and returns them, for a VM
// that stopped (idempotent).
func (s *Store) DetachVM(uuid string) []Entry {
	return s.Prune(func(e Entry) bool { return e.UUID != uuid })
}

// Prune keeps the entries for which keep returns true and returns the
// others, removed: e.g. entries whose tap no longer exists after a host
// crash.
func (s *Store) Prune(keep func(Entry) bool) []Entry {
	var removed []Entry
	kept := s.entries[:0:0]
	for _, e := range s.entries {
		if keep(e) {
			kept = append(kept, e)
		} else {
			removed = append(removed, e)
		}
	}
	if len(removed) > 0 {
		s.entries = kept
		s.dirty = true
	}
	return removed
}

// ByTap returns the entry that holds tap.
func (s *Store) ByTap(tap string) (Entry, bool) {
	for _, e := range s.entries {
		if e.Tap == tap {
			return e, true
		}
	}
	return Entry{}, false
}

// ByVM returns the entries of the VM uuid, ordered by MAC.
func (s *Store) ByVM(uuid string) []Entry {
	var out []Entry
	for _, e := range s.entries {
		if e.UUID == uuid {
			out = append(out, e)
		}
	}
	return out
}

// All returns a copy of every entry, ordered by (UUID, MAC).
func (s *Store) All() []Entry { return slices.Clone(s.entries) }

// ByBridge returns the entries grouped by bridge, bridges by name and
// entries by tap in natural order (vnet2 before vnet10).
func (s *Store) ByBridge() []Group {
	var groups []Group
	for _, e := range s.entries {
		i, ok := slices.BinarySearchFunc(groups, e.Bridge, func(g Group, b string) int { return strings.Compare(g.Bridge, b) })
		if !ok {
			groups = slices.Insert(groups, i, Group{Bridge: e.Bridge})
		}
		groups[i].Entries = append(groups[i].Entries, e)
	}
	for _, g := range groups {
		slices.SortFunc(g.Entries, func(a, b Entry) int { return NaturalCompare(a.Tap, b.Tap) })
	}
	return groups
}

func (s *Store) find(uuid, mac string) (int, bool) {
	return slices.BinarySearchFunc(s.entries, [2]string{uuid, mac}, func(e Entry, k [2]string) int {
		return cmp.Or(strings.Compare(e.UUID, k[0]), strings.Compare(e.MAC, k[1]))
	})
}

// NaturalCompare orders names by their text, with runs of digits compared
// as numbers: vnet2 < vnet10.
func NaturalCompare(a, b string) int {
	for a != "" && b != "" {
		da, db := digitRun(a), digitRun(b)
		if da > 0 && db > 0 {
			na, _ := strconv.ParseUint(a[:da], 10, 64)
			nb, _ := strconv.ParseUint(b[:db], 10, 64)
			if c := cmp.Compare(na, nb); c != 0 {
				return c
			}
			if c := cmp.Compare(da, db); c != 0 { // "01" after "1"
				return c
			}
			a, b = a[da:], b[db:]
			continue
		}
		if a[0] != b[0] {
			return cmp.Compare(a[0], b[0])
		}
		a, b = a[1:], b[1:]
	}
	return cmp.Compare(len(a), len(b))
}

func digitRun(s string) int {
	n := 0
	for n < len(s) && n < 18 && s[n] >= '0' && s[n] <= '9' {
		n++
	}
	return n
}
