package who

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/virtbridge/virtbridge/internal/journal"
)

func rec(kind, host string, sec int, vm, tap, op string) PortRecord {
	return PortRecord{Kind: kind, Host: host, Time: time.Unix(1_800_000_000+int64(sec), 0).UTC(),
		Port: journal.Port{VM: journal.VM{Name: vm, UUID: "u-" + vm, Op: op}, Tap: tap, MAC: "52:54:00:00:00:01", Bridge: "br0"}}
}

func spansText(spans []Span) string {
	var b strings.Builder
	for _, s := range spans {
		from, until := "?", "now"
		if !s.From.IsZero() {
			from = fmt.Sprint(s.From.Unix() - 1_800_000_000)
		}
		if !s.Until.IsZero() {
			until = fmt.Sprint(s.Until.Unix() - 1_800_000_000)
		}
		fmt.Fprintf(&b, "%s %s %s %s-%s %s>%s\n", s.HostName(), s.VM, s.Tap, from, until, s.FromOp, s.UntilOp)
	}
	return b.String()
}

// TestSpans pairs records per host and NIC: a repeated attached record
// changes nothing, another tap ends the open span, a detached record whose
// attached one is older than the records stands alone, and the same tap
// name on two hosts is two spans.
func TestSpans(t *testing.T) {
	A, D := journal.IDAttached, journal.IDDetached
	got := spansText(Spans([]PortRecord{
		rec(D, "a", 1, "vm1", "vnet9", "release"),
		rec(A, "a", 2, "vm1", "vnet0", "start"),
		rec(A, "b", 3, "vm2", "vnet0", "start"),
		rec(A, "a", 4, "vm1", "vnet0", "reconcile"),
		rec(A, "a", 5, "vm1", "vnet1", "start"),
		rec(D, "a", 6, "vm1", "vnet1", "release"),
		rec(D, "b", 7, "vm2", "vnet0", "release"),
	}))
	want := `a vm1 vnet9 ?-1 >release
a vm1 vnet0 2-5 start>start
b vm2 vnet0 3-7 start>release
a vm1 vnet1 5-6 start>release
`
	if got != want {
		t.Errorf("spans:\n%s\nwant:\n%s", got, want)
	}
}

func recOn(kind, host string, sec int, tap, op, subop string) PortRecord {
	r := rec(kind, host, sec, "vm1", tap, op)
	r.Port.SubOp = subop
	return r
}

func migrationText(spans []Span) string {
	var b strings.Builder
	for _, s := range spans {
		b.WriteString(strings.TrimSuffix(spansText([]Span{s}), "\n"))
		if s.MigratedFrom != "" {
			fmt.Fprintf(&b, " from=%s", s.MigratedFrom)
		}
		if !s.Arrived.IsZero() {
			fmt.Fprintf(&b, " arrived=%d", s.Arrived.Unix()-1_800_000_000)
		}
		if s.MigratedTo != "" {
			fmt.Fprintf(&b, " to=%s", s.MigratedTo)
		}
		if s.Incoming {
			b.WriteString(" incoming")
		}
		b.WriteString("\n")
	}
	return b.String()
}

// TestSpansLiveMigration: the records of live migrations as libvirt's calls
// make them (captured from a real `virsh migrate --live`,
// testdata/hook/live-migration: the target's hook gets migrate, prepare,
// start, started, so its tap is attached at start while the VM still runs
// on the source; the source's gets stopped, release once the migration is
// done, and the daemon's stopped event says "migrated"). The NIC moves
// a → b → a with no gap and no overlap; a migration to c that fails (c's
// tap goes while a keeps the VM) owned nothing.
func TestSpansLiveMigration(t *testing.T) {
	A, D := journal.IDAttached, journal.IDDetached
	spans := Spans([]PortRecord{
		recOn(A, "a", 1, "vnet0", "start", ""),
		recOn(A, "b", 5, "vnet7", "start", ""),
		recOn(D, "a", 8, "vnet0", "stopped", "migrated"),
		recOn(A, "a", 20, "vnet2", "start", ""),
		recOn(D, "b", 22, "vnet7", "release", ""),
		recOn(A, "c", 30, "vnet4", "start", ""),
		recOn(D, "c", 31, "vnet4", "release", ""),
	})
	want := `a vm1 vnet0 1-8 start>stopped/migrated to=b
b vm1 vnet7 8-22 start>release from=a arrived=5 to=a
a vm1 vnet2 22-now start> from=b arrived=20
c vm1 vnet4 30-31 start>release from=a incoming
`
	if got := migrationText(spans); got != want {
		t.Errorf("spans:\n%s\nwant:\n%s", got, want)
	}
	// One owner at every moment, and none missing from 1 on.
	for sec := 1; sec < 40; sec++ {
		at := time.Unix(1_800_000_000+int64(sec), 0)
		var owners []string
		for _, s := range spans {
			if s.Covers(at) {
				owners = append(owners, s.HostName())
			}
		}
		if len(owners) != 1 {
			t.Errorf("at %d: owners %v, want one", sec, owners)
		}
	}
}
