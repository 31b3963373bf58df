package who

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"time"

	"github.com/virtbridge/virtbridge/internal/journal"
	"github.com/virtbridge/virtbridge/internal/paths"
)

// Since returns the attached and detached records of the mapping store
// l.Store (records that name it, Port.Store) at or after t, oldest first,
// from journald (when journalctl is installed) and the JSON-lines file
// (when it exists). The zero t means every record. Read-only.
func (l Lookup) Since(ctx context.Context, t time.Time) ([]PortRecord, error) {
	l = l.withDefaults()
	var recs []PortRecord
	if path, err := exec.LookPath(l.Journalctl); err == nil {
		args := []string{"-o", "json", "--all", "--no-pager", "-q",
			journal.FieldIdentifier + "=" + journal.Identifier, journal.FieldStore + "=" + l.Store,
			journal.FieldMessageID + "=" + journal.IDAttached, journal.FieldMessageID + "=" + journal.IDDetached}
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

// WaitRecord waits until journald shows a virtbridge record whose field
// has value (journal.FieldToken: a note just written), or ctx ends:
// journald reads its socket in order, so the records sent before it are
// then readable too. Without journalctl it returns at once (the file's
// records are written synchronously). Read-only.
func (l Lookup) WaitRecord(ctx context.Context, field, value string) error {
	path, err := exec.LookPath(l.withDefaults().Journalctl)
	if err != nil {
		return nil
	}
	for {
		out, err := runJournalctl(ctx, path, "-o", "json", "--all", "--no-pager", "-q", "-n", "1",
			journal.FieldIdentifier+"="+journal.Identifier, field+"="+value)
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
