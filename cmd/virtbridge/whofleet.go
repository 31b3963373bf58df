package main

import (
	"context"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/virtbridge/virtbridge/internal/journal"
	"github.com/virtbridge/virtbridge/internal/who"
)

const whoUsage = `usage: virtbridge who TAP [--at TIME] [--json]
       virtbridge who MAC [--at TIME] [--directory DIR | --file FILE...] [--host HOST] [--json]
       virtbridge who TAP (--directory DIR | --file FILE... | --host HOST) [--at TIME] [--json]

With a TAP (e.g. vnet3): which VM owns it now, from the mapping store, or
owned it at TIME, from the journal (journald, or the JSON-lines file where
journald is absent): name, UUID, MAC and bridge. When no VM owns it (now,
or at TIME), it says so and names the VM that had it last, from when until
when, from the journal; --json then prints the owner's keys empty and that
VM as "last_owner" ("since", "until"). When a failed save left the store
behind (a full disk), a note on stderr says so until the next run catches
it up. Tap names are recycled, so --at is the way to answer audit
questions.

With a MAC (52:54:00:12:34:56): that VM NIC's timeline, one line per
attachment: host, tap, bridge, VM, from–until, and the operations that
began and ended it. A live migration shows the NIC leaving the source as
it arrives on the target, at the moment the source let go: the target's
tap exists from the migration's start, but one host owns the NIC at a
time; a target whose migration did not complete is marked as having owned
nothing. --at keeps the attachment that held then.

--directory and --file read other hosts' journals instead of this host's:
the files systemd-journal-remote writes on a collector (journalctl's
--directory and --file). Taps repeat across hosts, so each answer names
the host (_HOSTNAME, or _MACHINE_ID); --host keeps one. A TAP with these
flags is answered from the journals, per host.

Exit status: 0 found, 1 no owner (no record), 2 bad usage.

`

// whoMAC prints mac's timeline from j (this host's journald when zero).
func whoMAC(j who.Journals, mac, host, at string, asJSON bool, stdout, stderr io.Writer) int {
	when, ok := whoTime(at, stderr)
	if !ok {
		return exitUsage
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	spans, err := who.Lookup{}.ByMAC(ctx, j, mac)
	if err != nil {
		fmt.Fprintf(stderr, "virtbridge who: %v\n", err)
		return exitUsage
	}
	spans = slices.DeleteFunc(spans, func(s who.Span) bool {
		return (host != "" && s.Host != host && s.MachineID != host) || (at != "" && !s.Covers(when))
	})
	if asJSON {
		printJSON(stdout, spansJSON(spans))
	} else {
		for _, s := range spans {
			fmt.Fprintln(stdout, spanLine(s))
		}
	}
	if len(spans) == 0 {
		what := "no record of MAC " + mac
		if at != "" {
			what = fmt.Sprintf("no record of MAC %s attached at %s", mac, when.Format(journal.TimeLayout))
		}
		fmt.Fprintf(stderr, "virtbridge who: %s in %s\n", what, j)
		return exitFound
	}
	return exitOK
}

// whoTapFleet says which VM owned tap at a time (now when at is empty) on
// every host of j (or host), one line each.
func whoTapFleet(j who.Journals, tap, host, at string, asJSON bool, stdout, stderr io.Writer) int {
	when, ok := whoTime(at, stderr)
	if !ok {
		return exitUsage
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	spans, err := who.Lookup{}.ByTap(ctx, j, tap, host)
	if err != nil {
		fmt.Fprintf(stderr, "virtbridge who: %v\n", err)
		return exitUsage
	}
	held := slices.DeleteFunc(slices.Clone(spans), func(s who.Span) bool { return !s.Covers(when) })
	if asJSON {
		printJSON(stdout, spansJSON(held))
	} else {
		for _, s := range held {
			fmt.Fprintln(stdout, spanLine(s))
		}
	}
	if len(held) > 0 {
		return exitOK
	}
	msg := fmt.Sprintf("no VM owned tap %q at %s on any host in %s", tap, when.Format(journal.TimeLayout), j)
	if host != "" {
		msg = fmt.Sprintf("no VM owned tap %q at %s on host %s in %s", tap, when.Format(journal.TimeLayout), host, j)
	}
	if last := lastBefore(spans, when); last != nil {
		msg += "; the last before: " + spanLine(*last)
	}
	fmt.Fprintf(stderr, "virtbridge who: %s\n", msg)
	return exitFound
}

// lastBefore returns the span that ended last at or before t, if any.
func lastBefore(spans []who.Span, t time.Time) *who.Span {
	var last *who.Span
	for i, s := range spans {
		if !s.Incoming && !s.Until.IsZero() && !s.Until.After(t) && (last == nil || s.Until.After(last.Until)) {
			last = &spans[i]
		}
	}
	return last
}

func whoTime(at string, stderr io.Writer) (time.Time, bool) {
	if at == "" {
		return time.Now(), true
	}
	t, err := parseTime(at, time.Now())
	if err != nil {
		fmt.Fprintf(stderr, "virtbridge who: %v\n", err)
		return time.Time{}, false
	}
	return t, true
}

// spanLine renders one attachment: host, tap, bridge, VM, from–until.
func spanLine(s who.Span) string {
	from, until := "(before the records)", "now"
	if !s.From.IsZero() {
		from = s.From.Local().Format(journal.TimeLayout)
	}
	if !s.Until.IsZero() {
		until = s.Until.Local().Format(journal.TimeLayout)
	}
	line := fmt.Sprintf("host %s: tap %s on bridge %s, vm %q (uuid %s) mac %s, %s – %s [%s → %s]",
		s.HostName(), s.Tap, s.Bridge, s.VM, s.UUID, s.MAC, from, until, orDash(s.FromOp), orDash(s.UntilOp))
	switch {
	case s.Incoming:
		line += fmt.Sprintf(" incoming live migration from %s that did not complete (or has not yet): owned nothing", s.MigratedFrom)
	case s.MigratedFrom != "":
		line += fmt.Sprintf(" migrated from %s (tap there since %s)", s.MigratedFrom, s.Arrived.Local().Format(journal.TimeLayout))
	}
	if s.MigratedTo != "" {
		line += " migrated to " + s.MigratedTo
	}
	return line
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func spansJSON(spans []who.Span) []map[string]any {
	out := []map[string]any{}
	for _, s := range spans {
		out = append(out, map[string]any{
			"host": s.Host, "machine_id": s.MachineID, "vm": s.VM, "uuid": s.UUID, "mac": s.MAC,
			"tap": s.Tap, "bridge": s.Bridge, "from": timeOrNull(s.From), "until": timeOrNull(s.Until),
			"from_op": s.FromOp, "until_op": s.UntilOp,
			"migrated_from": s.MigratedFrom, "migrated_to": s.MigratedTo, "arrived": timeOrNull(s.Arrived),
			"incoming": s.Incoming,
		})
	}
	return out
}
