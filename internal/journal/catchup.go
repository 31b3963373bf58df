package journal

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"time"

	sdjournal "github.com/coreos/go-systemd/v22/journal"

	"github.com/virtbridge/virtbridge/internal/paths"
	"github.com/virtbridge/virtbridge/internal/store"
)

// FieldToken marks the record CatchUp sends and waits for, with a random
// value.
const FieldToken = "VIRTBRIDGE_TOKEN"

// CatchUpSlack is how far before the stale marker's time CatchUp starts
// reading: replaying records the store already holds changes nothing, and
// it covers a clock stepped back a little.
const CatchUpSlack = 2 * time.Second

// Since returns the attached and detached records of the mapping store
// l.Store (records that name it, Port.Store) at or after t, oldest first,
// from journald (when journalctl is installed) and the JSON-lines file
// (when it exists). The zero t means every record. Read-only.
func (l Lookup) Since(ctx context.Context, t time.Time) ([]PortRecord, error) {
	l = l.withDefaults()
	var recs []PortRecord
	if path, err := exec.LookPath(l.Journalctl); err == nil {
		args := []string{"-o", "json", "--all", "--no-pager", "-q",
			FieldIdentifier + "=" + Identifier, FieldStore + "=" + l.Store,
			FieldMessageID + "=" + IDAttached, FieldMessageID + "=" + IDDetached}
		if !t.IsZero() {
			args = append(args, "--since="+untilArg(t))
		}
		out, err := runJournalctl(ctx, path, args...)
		if err != nil {
			return nil, err
		}
		for _, line := range bytes.Split(out, []byte("\n")) {
			if e, ok := parseEntry(line, "journald"); ok && e.Port.Store == l.Store && !e.Time.Before(t) {
				recs = append(recs, *e)
			}
		}
	}
	fromFile, err := sinceFromFile(l.File, l.Store, t)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	recs = append(recs, fromFile...)
	slices.SortStableFunc(recs, func(a, b PortRecord) int { return a.Time.Compare(b.Time) })
	return recs, nil
}

func sinceFromFile(path, storePath string, t time.Time) ([]PortRecord, error) {
	f, err := paths.OpenFile(path, os.O_RDONLY, 0)
	if err != nil {
		return nil, fmt.Errorf("reading %q: %w", path, err)
	}
	defer f.Close()
	key, _ := json.Marshal(storePath)
	var recs []PortRecord
	err = eachLine(f, func(line []byte) {
		if !bytes.Contains(line, key[1:len(key)-1]) {
			return
		}
		if e, ok := parseEntry(line, path); ok && e.Port.Store == storePath && !e.Time.Before(t) {
			recs = append(recs, *e)
		}
	})
	if err != nil {
		return nil, fmt.Errorf("reading %q: %w", path, err)
	}
	return recs, nil
}

// CatchUp brings s, loaded from a store that a failed save left stale
// since the time since, up to date from the journal: it replays, oldest
// first, the store's attached and detached records from since (less
// CatchUpSlack) on, without journaling them again. Replaying a record the
// store already holds changes nothing, so the result is the journal's
// last word on every NIC it names. It first journals a note and, where
// journald takes the records, waits (until ctx ends) for journald to have
// stored it: journald reads its socket in order, so the records of earlier
// runs are then readable too. complete is false when that wait or a read
// failed; the caller then keeps the store marked stale.
func CatchUp(ctx context.Context, w *Writer, l Lookup, s *store.Store, since time.Time) (replayed int, complete bool, err error) {
	l.Store = s.Path()
	if err := w.syncJournald(ctx, l, since); err != nil {
		return 0, false, fmt.Errorf("catching up the mapping store %s from the journal: %w", s.Path(), err)
	}
	start := since
	if !start.IsZero() {
		start = start.Add(-CatchUpSlack)
	}
	recs, err := l.Since(ctx, start)
	if err != nil {
		return 0, false, fmt.Errorf("catching up the mapping store %s from the journal: %w", s.Path(), err)
	}
	var errs []error
	for _, r := range recs {
		p := r.Port
		if r.Kind == IDAttached {
			if _, _, err := s.Attach(store.Entry{UUID: p.UUID, VM: p.Name, MAC: p.MAC, Tap: p.Tap, Bridge: p.Bridge, Since: r.Time}); err != nil {
				errs = append(errs, fmt.Errorf("replaying the journal's record of %s: %w", r.Time.Format(TimeLayout), err))
			}
		} else if e, ok := s.ByTap(p.Tap); ok && e.UUID == p.UUID && strings.EqualFold(e.MAC, p.MAC) {
			s.Detach(p.UUID, p.MAC)
		}
	}
	return len(recs), true, errors.Join(errs...)
}

// syncJournald journals that the store catches up, and, when the note went
// to journald, waits until journalctl shows it.
func (w *Writer) syncJournald(ctx context.Context, l Lookup, since time.Time) error {
	b := make([]byte, 16)
	rand.Read(b)
	token := hex.EncodeToString(b)
	r := Record{
		Message: fmt.Sprintf("mapping store %s may lack the attach and detach records since %s (a save failed): "+
			"catching up from the journal", l.Store, since.Format(TimeLayout)),
		Priority: sdjournal.PriNotice,
		Fields:   map[string]string{FieldIdentifier: Identifier, FieldStore: l.Store, FieldToken: token},
	}
	if err := w.Write(r); err != nil {
		return err
	}
	path, err := exec.LookPath(l.withDefaults().Journalctl)
	if err != nil || !w.JournaldAvailable() {
		return nil // the file's records are written synchronously
	}
	for {
		out, err := runJournalctl(ctx, path, "-o", "json", "--all", "--no-pager", "-q", "-n", "1",
			FieldIdentifier+"="+Identifier, FieldToken+"="+token)
		if err == nil && len(bytes.TrimSpace(out)) > 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for journald to store the records sent before: %w", ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}
