package engine

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/virtbridge/virtbridge/internal/journal"
	"github.com/virtbridge/virtbridge/internal/store"
	"github.com/virtbridge/virtbridge/internal/who"
)

// catchUpSlack is how far before the stale marker's time catchUp starts
// reading: replaying records the store already holds changes nothing, and
// it covers a clock stepped back a little.
const catchUpSlack = 2 * time.Second

// catchUp brings s, loaded from a store that a failed save left stale
// since the time since, up to date from the journal: it replays, oldest
// first, the store's attached and detached records from since (less
// catchUpSlack) on, without journaling them again. Replaying a record the
// store already holds changes nothing, so the result is the journal's
// last word on every NIC it names. It first journals a note and, where
// journald takes the records, waits (until ctx ends) for journald to have
// stored it: journald reads its socket in order, so the records of earlier
// runs are then readable too. complete is false when that wait or a read
// failed; the caller then keeps the store marked stale.
func catchUp(ctx context.Context, w *journal.Writer, l who.Lookup, s *store.Store, since time.Time) (replayed int, complete bool, err error) {
	l.Store = s.Path()
	if err := syncJournald(ctx, w, l, since); err != nil {
		return 0, false, fmt.Errorf("catching up the mapping store %s from the journal: %w", s.Path(), err)
	}
	start := since
	if !start.IsZero() {
		start = start.Add(-catchUpSlack)
	}
	recs, err := l.Since(ctx, start)
	if err != nil {
		return 0, false, fmt.Errorf("catching up the mapping store %s from the journal: %w", s.Path(), err)
	}
	var errs []error
	for _, r := range recs {
		p := r.Port
		if r.Kind == journal.IDAttached {
			if _, _, err := s.Attach(store.Entry{UUID: p.UUID, VM: p.Name, MAC: p.MAC, Tap: p.Tap, Bridge: p.Bridge, Since: r.Time}); err != nil {
				errs = append(errs, fmt.Errorf("replaying the journal's record of %s: %w", r.Time.Format(journal.TimeLayout), err))
			}
		} else if e, ok := s.ByTap(p.Tap); ok && e.UUID == p.UUID && strings.EqualFold(e.MAC, p.MAC) {
			s.Detach(p.UUID, p.MAC)
		}
	}
	return len(recs), true, errors.Join(errs...)
}

// syncJournald journals that the store catches up, and, when the note went
// to journald, waits until journalctl shows it.
func syncJournald(ctx context.Context, w *journal.Writer, l who.Lookup, since time.Time) error {
	b := make([]byte, 16)
	rand.Read(b)
	token := hex.EncodeToString(b)
	if err := w.Write(ctx, journal.CatchUpRecord(l.Store, since, token)); err != nil {
		return err
	}
	if !w.JournaldAvailable() {
		return nil // the file's records are written synchronously
	}
	return l.WaitRecord(ctx, journal.FieldToken, token)
}
