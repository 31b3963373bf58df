package engine

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/virtbridge/virtbridge/internal/desired"
	"github.com/virtbridge/virtbridge/internal/journal"
	"github.com/virtbridge/virtbridge/internal/store"
	"github.com/virtbridge/virtbridge/internal/testenv/journaltest"
	"github.com/virtbridge/virtbridge/internal/who"
)

func TestMain(m *testing.M) { os.Exit(journaltest.Main(m)) }

// uniq returns a random hex string: the journal is shared with earlier
// runs, so every test uses taps and UUIDs of its own.
func uniq(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func randomUUID() string {
	u := uniq(16)
	return u[:8] + "-" + u[8:12] + "-" + u[12:16] + "-" + u[16:20] + "-" + u[20:]
}

func realtime(t *testing.T, e map[string]string) time.Time {
	t.Helper()
	us, err := strconv.ParseInt(e[journal.FieldRealtime], 10, 64)
	if err != nil {
		t.Fatalf("entry without %s: %v", journal.FieldRealtime, e)
	}
	return time.UnixMicro(us)
}

// checkFields asserts that entry has every field of want, with its value.
func checkFields(t *testing.T, entry map[string]string, want map[string]string) {
	t.Helper()
	for k, v := range want {
		if entry[k] != v {
			t.Errorf("journal entry %s = %q, want %q (entry: %s)", k, entry[k], v, entry[journal.FieldMessage])
		}
	}
}

// TestJournaldVMWithTwoNICs records a VM with two NICs started and stopped,
// then another VM getting one of the tap names, through a real journald;
// reads the entries back with journalctl -o json; and asks who owned the
// tap now and at times in between.
func TestJournaldVMWithTwoNICs(t *testing.T) {
	j := journaltest.Require(t)
	dir := t.TempDir()
	w := journal.New(journal.Options{File: filepath.Join(dir, "journal.jsonl")}) // the default socket
	if !w.JournaldAvailable() {
		t.Fatalf("journald runs (%+v) but JournaldAvailable says no", j)
	}
	s := store.New(filepath.Join(dir, "ports.json"))
	id := uniq(4)
	tap1, tap2 := "vt"+id+"a", "vt"+id+"b"
	a := journal.VM{Name: "web-" + id, UUID: randomUUID(), Op: "started", Source: "hook"}
	b := journal.VM{Name: "db-" + id, UUID: randomUUID(), Op: "started", Source: "eventd"}
	nics := []desired.Port{{Tap: tap1, MAC: "52:54:00:aa:00:01", Bridge: "br0"}, {Tap: tap2, MAC: "52:54:00:aa:00:02", Bridge: "br1"}}

	if err := attachPorts(context.Background(), w, s, a, nics, time.Now()); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Millisecond) // distinct timestamps, to ask about the times between
	a.Op = "stopped"
	if err := detachVM(context.Background(), w, s, a); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Millisecond)
	if err := attachPorts(context.Background(), w, s, b, []desired.Port{{Tap: tap1, MAC: "52:54:00:bb:00:01", Bridge: "br0"}}, time.Now()); err != nil {
		t.Fatal(err)
	}
	if err := s.Save(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(w.File()); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("records went to the fallback file although journald runs: %v", err)
	}

	ofA := j.WaitEntries(t, 4, journal.FieldIdentifier+"="+journal.Identifier, journal.FieldUUID+"="+a.UUID)
	if len(ofA) != 4 {
		t.Fatalf("%d entries of vm A, want 4", len(ofA))
	}
	macs := map[string]string{tap1: "52:54:00:aa:00:01", tap2: "52:54:00:aa:00:02"}
	bridges := map[string]string{tap1: "br0", tap2: "br1"}
	for i, e := range ofA {
		id, op, verb, prep := journal.IDAttached, "started", "attached", "on"
		if i >= 2 {
			id, op, verb, prep = journal.IDDetached, "stopped", "detached", "from"
		}
		tap := e[journal.FieldTap]
		checkFields(t, e, map[string]string{
			journal.FieldIdentifier: "virtbridge", journal.FieldMessageID: id, journal.FieldPriority: "6",
			journal.FieldOp: op, journal.FieldVM: a.Name, journal.FieldUUID: a.UUID, journal.FieldTap: tap, journal.FieldMAC: macs[tap],
			journal.FieldBridge: bridges[tap], journal.FieldSource: "hook",
			journal.FieldMessage: fmt.Sprintf("%s %s: vm %q (uuid %s) mac %s %s bridge %s", tap, verb, a.Name, a.UUID, macs[tap], prep, bridges[tap]),
		})
		if macs[tap] == "" {
			t.Errorf("entry %d names tap %q, not one of A's", i, tap)
		}
	}
	ofB := j.WaitEntries(t, 1, journal.FieldIdentifier+"="+journal.Identifier, journal.FieldUUID+"="+b.UUID)
	checkFields(t, ofB[0], map[string]string{
		journal.FieldMessageID: journal.IDAttached, journal.FieldOp: "started", journal.FieldVM: b.Name, journal.FieldTap: tap1, journal.FieldMAC: "52:54:00:bb:00:01", journal.FieldBridge: "br0", journal.FieldSource: "eventd",
	})

	checkWho(t, j, who.Lookup{Store: s.Path(), File: w.File()}, tap1, tap2, a, b)
}

// checkWho asks who owned tap1 (A's, then B's) and tap2 (A's) now and at
// the times of their records.
func checkWho(t *testing.T, j *journaltest.Journald, l who.Lookup, tap1, tap2 string, a, b journal.VM) {
	t.Helper()
	// The tap's history: A attached, A detached, B attached.
	hist := j.Entries(t, journal.FieldIdentifier+"="+journal.Identifier, journal.FieldTap+"="+tap1)
	if len(hist) != 3 {
		t.Fatalf("%d entries for %s, want 3", len(hist), tap1)
	}
	attachedA, detachedA, attachedB := realtime(t, hist[0]), realtime(t, hist[1]), realtime(t, hist[2])
	ctx := context.Background()
	if o, err := l.Now(ctx, tap1); err != nil || o.VM != b.Name || o.UUID != b.UUID || o.MAC != "52:54:00:bb:00:01" || o.Bridge != "br0" || o.From != "store" {
		t.Errorf("who %s now = %+v, %v; want %s from the store", tap1, o, err, b.Name)
	}
	// tap2 has no owner now: the journal names A, from its attach until
	// its detach.
	hist2 := j.Entries(t, journal.FieldIdentifier+"="+journal.Identifier, journal.FieldTap+"="+tap2)
	if len(hist2) != 2 {
		t.Fatalf("%d entries for %s, want 2", len(hist2), tap2)
	}
	_, err := l.Now(ctx, tap2)
	var none *who.NoOwnerError
	want := who.Owner{VM: a.Name, UUID: a.UUID, MAC: "52:54:00:aa:00:02", Tap: tap2, Bridge: "br1",
		Since: realtime(t, hist2[0]), Until: realtime(t, hist2[1]), From: "journald"}
	if !errors.As(err, &none) || !errors.Is(err, who.ErrUnknown) || none.Last == nil || *none.Last != want ||
		!strings.Contains(err.Error(), fmt.Sprintf("no VM owns tap %q now; its last owner was vm %q", tap2, a.Name)) {
		t.Errorf("who %s now: %v (last %+v), want who.ErrUnknown naming %+v", tap2, err, none, want)
	}
	for _, c := range []struct {
		name string
		at   time.Time
		want string // VM name, or "" for who.ErrUnknown
	}{
		{"before any record", attachedA.Add(-time.Microsecond), ""},
		{"at A's attach", attachedA, a.Name},
		{"just before A's detach", detachedA.Add(-time.Microsecond), a.Name},
		{"at A's detach", detachedA, ""},
		{"at B's attach", attachedB, b.Name},
		{"now", time.Now(), b.Name},
	} {
		o, err := l.At(ctx, tap1, c.at)
		switch {
		case c.want == "" && !errors.Is(err, who.ErrUnknown):
			t.Errorf("who %s %s: %+v, %v; want who.ErrUnknown", tap1, c.name, o, err)
		case c.want != "" && (err != nil || o.VM != c.want || o.From != "journald" || o.Tap != tap1):
			t.Errorf("who %s %s: %+v, %v; want %s from journald", tap1, c.name, o, err, c.want)
		}
	}
	if o, err := l.At(ctx, tap2, detachedA.Add(-time.Microsecond)); err != nil || o.VM != a.Name || o.MAC != "52:54:00:aa:00:02" || o.Bridge != "br1" {
		t.Errorf("who %s before A's stop: %+v, %v", tap2, o, err)
	}
	_, err = l.At(ctx, tap2, time.Now())
	if !errors.As(err, &none) || none.Last == nil || *none.Last != want {
		t.Errorf("who %s at now: %v, want the last owner %+v", tap2, err, want)
	}
	if !errors.Is(err, who.ErrUnknown) || !strings.Contains(err.Error(), "detached from vm "+strconv.Quote(a.Name)) {
		t.Errorf("who %s now from the journal: %v; want who.ErrUnknown saying it was detached from %s", tap2, err, a.Name)
	}
}
