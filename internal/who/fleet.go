package who

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"slices"
	"strings"
	"time"

	"github.com/virtbridge/virtbridge/internal/journal"
)

// journald's trusted fields naming the host that wrote an entry; kept by
// systemd-journal-upload and systemd-journal-remote.
const (
	fieldHostname  = "_HOSTNAME"
	fieldMachineID = "_MACHINE_ID"
)

// Journals are journal files to read instead of this host's journal:
// those of other hosts, as systemd-journal-remote writes them
// (journalctl --directory, --file). The zero value is this host's.
type Journals struct {
	Directory string   // journalctl --directory
	Files     []string // journalctl --file, each a path or glob
}

// IsZero reports whether j names no files (this host's journal).
func (j Journals) IsZero() bool { return j.Directory == "" && len(j.Files) == 0 }

func (j Journals) args() []string {
	var args []string
	if j.Directory != "" {
		args = append(args, "--directory="+j.Directory)
	}
	for _, f := range j.Files {
		args = append(args, "--file="+f)
	}
	return args
}

func (j Journals) String() string {
	if j.IsZero() {
		return "journald"
	}
	return strings.Join(j.args(), " ")
}

// Span is one attachment of a VM NIC to a tap on one host, as the journal
// tells it: from its attached record until its detached record.
type Span struct {
	Host, MachineID string
	VM, UUID, MAC   string
	Tap, Bridge     string
	From            time.Time // zero: attached before the oldest record read
	Until           time.Time // zero: still attached as far as the records go
	FromOp, UntilOp string    // the operations of the records that began and ended it (op/subop)

	// A live migration: the target's qemu (and tap) exist from the
	// migration's start, while the VM still runs on the source, until the
	// source lets go. The target's span then starts when the source's
	// ends (From; Arrived keeps its attached record's time), so that at
	// any moment one host owns the NIC.
	MigratedFrom, MigratedTo string    // the other end's host
	Arrived                  time.Time // a migration target's attached record
	// Incoming marks a target whose migration did not complete (its tap
	// went while the source kept the VM) or has not yet: it owned nothing.
	Incoming bool
}

// HostName names the span's host: _HOSTNAME, else _MACHINE_ID, else "?".
func (s Span) HostName() string {
	switch {
	case s.Host != "":
		return s.Host
	case s.MachineID != "":
		return s.MachineID
	}
	return "?"
}

// Covers reports whether the span holds at time t.
func (s Span) Covers(t time.Time) bool {
	return !s.Incoming && !s.From.After(t) && (s.Until.IsZero() || s.Until.After(t))
}

// ByMAC returns the timeline of the VM NIC with mac (canonical, lower
// case) in j: every span, on every host, oldest first. Read-only.
func (l Lookup) ByMAC(ctx context.Context, j Journals, mac string) ([]Span, error) {
	recs, err := l.records(ctx, j, journal.FieldMAC, mac)
	if err != nil {
		return nil, err
	}
	return Spans(recs), nil
}

// ByTap returns the spans of tap in j on every host (or on host, by
// hostname or machine ID, when not empty), oldest first. A span is read in
// its NIC's whole timeline (by MAC), so that a migration target's tap is
// owned only from when the source let go. Read-only.
func (l Lookup) ByTap(ctx context.Context, j Journals, tap, host string) ([]Span, error) {
	recs, err := l.records(ctx, j, journal.FieldTap, tap)
	if err != nil {
		return nil, err
	}
	var macs []string
	for _, r := range recs {
		if !slices.Contains(macs, r.Port.MAC) {
			macs = append(macs, r.Port.MAC)
		}
	}
	var spans []Span
	for _, mac := range macs {
		all, err := l.ByMAC(ctx, j, mac)
		if err != nil {
			return nil, err
		}
		for _, s := range all {
			if s.Tap == tap && (host == "" || s.Host == host || s.MachineID == host) {
				spans = append(spans, s)
			}
		}
	}
	slices.SortStableFunc(spans, func(a, b Span) int { return a.From.Compare(b.From) })
	return spans, nil
}

// records reads the attached and detached records whose field is value,
// oldest first, with journalctl over j.
func (l Lookup) records(ctx context.Context, j Journals, field, value string) ([]PortRecord, error) {
	l = l.withDefaults()
	path, err := exec.LookPath(l.Journalctl)
	if err != nil {
		return nil, fmt.Errorf("reading %s: journalctl is not installed: %w", j, err)
	}
	args := append([]string{"-o", "json", "--all", "--no-pager", "-q"}, j.args()...)
	args = append(args, journal.FieldIdentifier+"="+journal.Identifier, field+"="+value,
		journal.FieldMessageID+"="+journal.IDAttached, journal.FieldMessageID+"="+journal.IDDetached)
	out, err := runJournalctl(ctx, path, args...)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", j, err)
	}
	var recs []PortRecord
	for line := range bytes.SplitSeq(out, []byte("\n")) {
		if e, ok := parseEntry(line, "journald"); ok {
			recs = append(recs, *e)
		}
	}
	// Files of several hosts are merged by journalctl; keep time order
	// whatever it did.
	slices.SortStableFunc(recs, func(a, b PortRecord) int { return a.Time.Compare(b.Time) })
	return recs, nil
}

// Spans pairs attached and detached records (oldest first) into spans, per
// host and VM NIC (UUID, MAC): an attached record opens one (a repeat of an
// open one's tap changes nothing; another tap ends the open one there), a
// detached record ends the open one of its tap (or stands alone when its
// attached record is older than the records). Pure.
func Spans(recs []PortRecord) []Span {
	type key struct{ host, uuid, mac string }
	open := map[key]int{}
	var out []Span
	for _, r := range recs {
		p := r.Port
		k := key{r.Host + "\x00" + r.MachineID, p.UUID, p.MAC}
		i, isOpen := open[k]
		switch r.Kind {
		case journal.IDAttached:
			if isOpen && out[i].Tap == p.Tap {
				continue
			}
			if isOpen {
				out[i].Until, out[i].UntilOp = r.Time, opOf(p.VM)
			}
			open[k] = len(out)
			out = append(out, Span{Host: r.Host, MachineID: r.MachineID, VM: p.Name, UUID: p.UUID, MAC: p.MAC,
				Tap: p.Tap, Bridge: p.Bridge, From: r.Time, FromOp: opOf(p.VM)})
		case journal.IDDetached:
			if isOpen && out[i].Tap == p.Tap {
				out[i].Until, out[i].UntilOp = r.Time, opOf(p.VM)
				delete(open, k)
				continue
			}
			out = append(out, Span{Host: r.Host, MachineID: r.MachineID, VM: p.Name, UUID: p.UUID, MAC: p.MAC,
				Tap: p.Tap, Bridge: p.Bridge, Until: r.Time, UntilOp: opOf(p.VM)})
		}
	}
	joinMigrations(out)
	slices.SortStableFunc(out, func(a, b Span) int { return a.From.Compare(b.From) })
	return out
}

// opOf renders a record's operation: op, or op/subop.
func opOf(vm journal.VM) string {
	if vm.SubOp != "" {
		return vm.Op + "/" + vm.SubOp
	}
	return vm.Op
}

// joinMigrations finds live migrations: a span (the target) that begins on
// one host while a span of the same VM NIC (UUID, MAC) on another host
// (the source) is open. A VM runs on one host at a time, so the target
// owns the NIC only from when the source lets it go: if the source's span
// ends before the target's, the target's starts then (no gap, no
// overlap); if the target's ends first, or neither has ended, the
// migration did not complete (or has not yet) and the target owned
// nothing (Incoming).
func joinMigrations(spans []Span) {
	for ti := range spans {
		tg := &spans[ti]
		if tg.From.IsZero() {
			continue
		}
		for si := range spans {
			src := &spans[si]
			if si == ti || src.UUID != tg.UUID || src.MAC != tg.MAC || src.HostName() == tg.HostName() ||
				src.Incoming || src.From.After(tg.From) || (!src.Until.IsZero() && !src.Until.After(tg.From)) {
				continue
			}
			// src was open when tg began on another host.
			if src.Until.IsZero() || (!tg.Until.IsZero() && !tg.Until.After(src.Until)) {
				tg.Incoming, tg.MigratedFrom = true, src.HostName()
				break
			}
			tg.Arrived, tg.From = tg.From, src.Until
			tg.MigratedFrom, src.MigratedTo = src.HostName(), tg.HostName()
			break
		}
	}
}
