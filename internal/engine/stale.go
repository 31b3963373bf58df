package engine

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"github.com/virtbridge/virtbridge/internal/command"
	"github.com/virtbridge/virtbridge/internal/store"
	"github.com/virtbridge/virtbridge/internal/who"
)

// catchUpWait caps, within the run's context, how long a run waits for
// journald while it catches a stale store up: the path is rare.
const catchUpWait = 5 * time.Second

// mapping is the store one run changes, and what the run knows of its
// staleness.
type mapping struct {
	*store.Store
	// began is taken before the run journals any attach or detach: if its
	// save fails, the store lacks the records from there on.
	began time.Time
	// marked: a failed save had left the store stale; fresh: this run
	// caught it up from the journal completely.
	marked, fresh bool
}

func (e *Engine) staleMarker() string {
	if e.StaleMarker != "" {
		return e.StaleMarker
	}
	return filepath.Join(filepath.Dir(e.LockPath), store.StaleFile)
}

// openStore loads the mapping store (the caller holds the host lock) and,
// when an earlier save failed, catches it up from the journal's records
// since then. A nil mapping is an error; otherwise err holds warnings.
func (e *Engine) openStore(ctx context.Context) (*mapping, error) {
	m := &mapping{began: time.Now()}
	s, err := loadStore(ctx, e.Journal, e.StorePath)
	if s == nil {
		return nil, fmt.Errorf("loading the mapping store: %w", err)
	}
	m.Store = s
	since, stale, serr := store.StaleSince(e.staleMarker())
	if !stale {
		return m, errors.Join(err, serr)
	}
	m.marked = true
	ctx, cancel := context.WithTimeout(ctx, catchUpWait)
	defer cancel()
	l := who.Lookup{Store: e.StorePath, File: e.Journal.File()}
	if path, lerr := command.LookPath("journalctl"); lerr == nil {
		l.Journalctl = path
	}
	_, complete, cerr := catchUp(ctx, e.Journal, l, s, since)
	m.fresh = complete && serr == nil
	return m, errors.Join(err, serr, cerr)
}

// saveStore saves the store. When that fails, it marks the store stale
// from the time the run began (an earlier mark is kept), so that the next
// run that saves catches up from the journal; when it succeeds after a
// complete catch-up, it removes the mark.
func (e *Engine) saveStore(m *mapping) error {
	if err := m.Save(); err != nil {
		err = fmt.Errorf("saving the mapping store: %w", err)
		if merr := store.MarkStale(e.staleMarker(), m.began); merr != nil {
			return fmt.Errorf("%w; and %w: `virtbridge who` may name wrong owners until virtbridged reconciles", err, merr)
		}
		return fmt.Errorf("%w (marked stale in %s: the next start, stop or virtbridged catches it up from the journal)", err, e.staleMarker())
	}
	if m.marked && m.fresh {
		return store.ClearStale(e.staleMarker())
	}
	return nil
}
