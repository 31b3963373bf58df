// Package who answers `virtbridge who`: which VM owns a tap now (the
// mapping store, then the journal's newest record of the tap) or owned it
// at a past time (the journal's records; tap names are recycled). It also
// reads back a mapping store's records since a time, which the engine
// replays to catch a stale store up. It only reads: the record schema and
// its writer are package journal's, and what is recorded when is package
// engine's.
package who

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/virtbridge/virtbridge/internal/command"
	"github.com/virtbridge/virtbridge/internal/journal"
	"github.com/virtbridge/virtbridge/internal/names"
	"github.com/virtbridge/virtbridge/internal/paths"
	"github.com/virtbridge/virtbridge/internal/store"
)

// ErrUnknown means no VM is known to own the tap (at that time): the CLI
// says so and exits 1. Errors wrapping it say why.
var ErrUnknown = errors.New("no known owner")

// Owner is the VM NIC that owns (or owned) a tap.
type Owner struct {
	VM     string
	UUID   string
	MAC    string
	Tap    string
	Bridge string
	Since  time.Time // store: attached since; journal: time of the attached record (zero if the journal has none left)
	Until  time.Time // journal: time of the detached record that ended it; zero while it lasts
	From   string    // "store", "journald" or the JSON-lines file's path
}

// NoOwnerError says that no VM owns the tap (at the time asked), and who
// owned it last before, when the journal knows. It wraps ErrUnknown.
type NoOwnerError struct {
	Tap  string
	Last *Owner // the last owner before, from the journal; nil when it has no record
	Msg  string // the whole answer, for a person
}

func (e *NoOwnerError) Error() string { return e.Msg }
func (e *NoOwnerError) Unwrap() error { return ErrUnknown }

// Lookup answers `virtbridge who`. The zero value reads the default store,
// the system journal and the default fallback file.
type Lookup struct {
	Store      string // store.DefaultPath if empty
	File       string // journal.DefaultFile if empty
	Journalctl string // "journalctl" (from PATH) if empty; journald is skipped when it is not installed
}

func (l Lookup) withDefaults() Lookup {
	if l.Store == "" {
		l.Store = store.DefaultPath
	}
	if l.File == "" {
		l.File = journal.DefaultFile
	}
	if l.Journalctl == "" {
		l.Journalctl = "journalctl"
	}
	return l
}

// Now returns the VM that owns tap now, from the mapping store (read
// without the host lock; it changes nothing). When the store holds no
// owner, the error is a *NoOwnerError naming the tap's last owner, from
// and until when, from the journal's newest records of the tap.
// Read-only, idempotent.
func (l Lookup) Now(ctx context.Context, tap string) (Owner, error) {
	l = l.withDefaults()
	if err := names.Ifname(tap); err != nil {
		return Owner{}, fmt.Errorf("who owns tap: %w", err)
	}
	s, err := store.Read(l.Store)
	if err != nil {
		return Owner{}, err
	}
	if e, ok := s.ByTap(tap); ok {
		return Owner{VM: e.VM, UUID: e.UUID, MAC: e.MAC, Tap: e.Tap, Bridge: e.Bridge, Since: e.Since, From: "store"}, nil
	}
	notIn := fmt.Sprintf("tap %q is not in the mapping store %s", tap, l.Store)
	last, sources, err := l.newest(ctx, tap, time.Now(), journal.IDAttached, journal.IDDetached)
	if err != nil {
		return Owner{}, fmt.Errorf("%s; reading its history: %w", notIn, err)
	}
	if last == nil {
		return Owner{}, &NoOwnerError{Tap: tap, Msg: fmt.Sprintf("%s and the journal has no record of it (searched %s): "+
			"it is not attached to a VM virtbridge manages (or was attached before virtbridge recorded it)", notIn, sources)}
	}
	o, err := l.ownerOf(ctx, last)
	if err != nil {
		return Owner{}, fmt.Errorf("%s; reading its history: %w", notIn, err)
	}
	if last.Kind == journal.IDAttached {
		return Owner{}, &NoOwnerError{Tap: tap, Last: o, Msg: fmt.Sprintf("%s, but the journal's last record of it, at %s, "+
			"attached it to vm %q (uuid %s) mac %s on bridge %s and no record detached it: the store is stale (a save failed?); "+
			"the next VM start or stop, or virtbridged, brings it up to date",
			notIn, o.Since.Format(journal.TimeLayout), o.VM, o.UUID, o.MAC, o.Bridge)}
	}
	return Owner{}, &NoOwnerError{Tap: tap, Last: o, Msg: fmt.Sprintf("no VM owns tap %q now; its last owner was vm %q (uuid %s) mac %s on bridge %s, %s [%s]",
		tap, o.VM, o.UUID, o.MAC, o.Bridge, o.span(), o.From)}
}

// span says when a past owner held the tap.
func (o *Owner) span() string {
	since := "attached before the journal's oldest record"
	if !o.Since.IsZero() {
		since = "attached " + o.Since.Format(journal.TimeLayout)
	}
	return since + ", detached " + o.Until.Format(journal.TimeLayout)
}

// ownerOf turns the newest record of a tap into its (last) owner: an
// attached record is the owner since then; a detached one ends an
// ownership that began at the NIC's attached record before it, if the
// journal still has it.
func (l Lookup) ownerOf(ctx context.Context, r *PortRecord) (*Owner, error) {
	p := r.Port
	o := &Owner{VM: p.Name, UUID: p.UUID, MAC: p.MAC, Tap: p.Tap, Bridge: p.Bridge, Since: r.Time, From: r.From}
	if r.Kind == journal.IDAttached {
		return o, nil
	}
	o.Since, o.Until = time.Time{}, r.Time
	a, _, err := l.newest(ctx, p.Tap, r.Time, journal.IDAttached)
	if err != nil {
		return nil, err
	}
	if a != nil && a.Port.UUID == p.UUID && a.Port.MAC == p.MAC {
		o.Since = a.Time
	}
	return o, nil
}

// At returns the VM that owned tap at time at: the last attached or
// detached record of tap at or before at, in journald and in the JSON-lines
// file (whichever is later). Attached names the owner; detached, or no
// record, is a *NoOwnerError (ErrUnknown), naming the VM detached and since
// when it had the tap. Read-only, idempotent.
func (l Lookup) At(ctx context.Context, tap string, at time.Time) (Owner, error) {
	l = l.withDefaults()
	if err := names.Ifname(tap); err != nil {
		return Owner{}, fmt.Errorf("who owned tap: %w", err)
	}
	best, sources, err := l.newest(ctx, tap, at, journal.IDAttached, journal.IDDetached)
	if err != nil {
		return Owner{}, err
	}
	when := at.Format(journal.TimeLayout)
	if best == nil {
		hint := ""
		if os.Geteuid() != 0 && strings.Contains(sources, "journald") {
			hint = "; journalctl shows an unprivileged user only what it may read: run as root or in group systemd-journal"
		}
		return Owner{}, &NoOwnerError{Tap: tap, Msg: fmt.Sprintf("no record of tap %q at or before %s (searched %s%s)",
			tap, when, sources, hint)}
	}
	o, err := l.ownerOf(ctx, best)
	if err != nil {
		return Owner{}, err
	}
	if best.Kind == journal.IDDetached {
		return Owner{}, &NoOwnerError{Tap: tap, Last: o, Msg: fmt.Sprintf("tap %q was attached to no VM at %s: it was detached from vm %q (uuid %s) at %s; "+
			"its owner before was vm %q (uuid %s) mac %s on bridge %s, %s [%s]",
			tap, when, o.VM, o.UUID, best.Time.Format(journal.TimeLayout), o.VM, o.UUID, o.MAC, o.Bridge, o.span(), o.From)}
	}
	return *o, nil
}

// newest returns the newest record of tap of one of kinds at or before
// at, from journald (when journalctl is installed) and the JSON-lines file
// (when it exists), whichever is later, and the sources searched, as text.
func (l Lookup) newest(ctx context.Context, tap string, at time.Time, kinds ...string) (*PortRecord, string, error) {
	var best *PortRecord
	var sources []string
	if path, err := exec.LookPath(l.Journalctl); err == nil {
		e, err := lastFromJournald(ctx, path, tap, at, kinds)
		if err != nil {
			return nil, "", err
		}
		best, sources = later(best, e), append(sources, "journald")
	}
	e, err := lastFromFile(l.File, tap, at, kinds)
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return nil, "", err
	default:
		best, sources = later(best, e), append(sources, l.File)
	}
	if len(sources) == 0 {
		sources = []string{"nothing: journalctl is not installed and " + l.File + " does not exist"}
	}
	return best, strings.Join(sources, ", "), nil
}

// PortRecord is one attached or detached record read back.
type PortRecord struct {
	Kind string // journal.IDAttached or journal.IDDetached
	Time time.Time
	Port journal.Port
	From string // "journald" or the file's path
	// Host and MachineID are journald's trusted _HOSTNAME and
	// _MACHINE_ID of the host that wrote the record (empty in the
	// JSON-lines file).
	Host, MachineID string
}

func later(a, b *PortRecord) *PortRecord {
	if a == nil || (b != nil && b.Time.After(a.Time)) {
		return b
	}
	return a
}

// lastFromJournald asks journalctl for the newest record of tap of one of
// kinds (journal.IDAttached, journal.IDDetached) at or before at. Matches on one field are ORed, on different
// fields ANDed; -r -n 1 with --until gives the newest one up to until.
func lastFromJournald(ctx context.Context, journalctl, tap string, at time.Time, kinds []string) (*PortRecord, error) {
	args := []string{"-o", "json", "--all", "--no-pager", "-q", "-r", "-n", "1", "--until=" + untilArg(at),
		journal.FieldIdentifier + "=" + journal.Identifier, journal.FieldTap + "=" + tap}
	for _, k := range kinds {
		args = append(args, journal.FieldMessageID+"="+k)
	}
	out, err := runJournalctl(ctx, journalctl, args...)
	if err != nil {
		return nil, err
	}
	var last *PortRecord
	for _, line := range bytes.Split(out, []byte("\n")) {
		if e, ok := parseEntry(line, "journald"); ok && e.Port.Tap == tap && !e.Time.After(at) && slices.Contains(kinds, e.Kind) {
			last = later(last, e)
		}
	}
	return last, nil
}

// untilArg renders t for journalctl's --until: "@" seconds since the epoch,
// to the microsecond (journal timestamps are µs).
func untilArg(t time.Time) string {
	us := max(t.UnixMicro(), 0)
	return fmt.Sprintf("@%d.%06d", us/1e6, us%1e6)
}

func runJournalctl(ctx context.Context, journalctl string, args ...string) ([]byte, error) {
	return command.Cmd{
		Path: journalctl, Args: args, Timeout: 30 * time.Second,
		Env: []string{"SYSTEMD_PAGER=", "SYSTEMD_COLORS=0"},
	}.Output(ctx)
}

// lastFromFile scans the JSON-lines file for the newest record of tap of
// one of kinds at or before at; later lines win ties. Lines that do not
// parse (one cut by a crash) are skipped.
func lastFromFile(path, tap string, at time.Time, kinds []string) (*PortRecord, error) {
	f, err := paths.OpenFile(path, os.O_RDONLY, 0) // what the writer would trust

	if err != nil {
		return nil, fmt.Errorf("reading %q: %w", path, err)
	}
	defer f.Close()
	key, _ := json.Marshal(tap) // as fileLine encodes it
	key = key[1 : len(key)-1]
	var last *PortRecord
	err = eachLine(f, func(line []byte) {
		if !bytes.Contains(line, key) {
			return // cheap filter before decoding JSON
		}
		if e, ok := parseEntry(line, path); ok && e.Port.Tap == tap && !e.Time.After(at) && slices.Contains(kinds, e.Kind) {
			if last == nil || !e.Time.Before(last.Time) {
				last = e
			}
		}
	})
	if err != nil {
		return nil, fmt.Errorf("reading %q: %w", path, err)
	}
	return last, nil
}

// maxLine bounds one JSON line; longer ones are skipped, not fatal.
const maxLine = 1 << 20

// eachLine calls fn with each line of r (without the newline), skipping
// lines longer than maxLine.
func eachLine(r io.Reader, fn func([]byte)) error {
	br := bufio.NewReaderSize(r, 64<<10)
	var buf []byte
	tooLong := false
	for {
		chunk, err := br.ReadSlice('\n')
		if !tooLong {
			buf = append(buf, chunk...)
			if len(buf) > maxLine {
				tooLong, buf = true, buf[:0]
			}
		}
		switch {
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case err != nil && !errors.Is(err, io.EOF):
			return err
		}
		if !tooLong && len(buf) > 0 {
			fn(bytes.TrimSuffix(buf, []byte("\n")))
		}
		buf, tooLong = buf[:0], false
		if err != nil {
			return nil
		}
	}
}

// parseEntry reads one journalctl -o json line (or a fallback file line)
// and returns it if it is a virtbridge attached or detached record.
func parseEntry(line []byte, from string) (*PortRecord, bool) {
	f, ok := journal.ParseFields(line)
	if !ok || f[journal.FieldIdentifier] != journal.Identifier {
		return nil, false
	}
	id := f[journal.FieldMessageID]
	if id != journal.IDAttached && id != journal.IDDetached {
		return nil, false
	}
	us, err := strconv.ParseInt(f[journal.FieldRealtime], 10, 64)
	if err != nil {
		return nil, false
	}
	return &PortRecord{
		Kind: id,
		Time: time.UnixMicro(us),
		Port: journal.Port{
			VM: journal.VM{Name: f[journal.FieldVM], UUID: f[journal.FieldUUID], Op: f[journal.FieldOp], SubOp: f[journal.FieldSubOp],
				Source: f[journal.FieldSource]},
			Tap: f[journal.FieldTap], MAC: f[journal.FieldMAC], Bridge: f[journal.FieldBridge], Store: f[journal.FieldStore],
		},
		From: from, Host: f[fieldHostname], MachineID: f[fieldMachineID],
	}, true
}
