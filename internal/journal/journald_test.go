package journal

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

	"github.com/virtbridge/virtbridge/internal/change"
	"github.com/virtbridge/virtbridge/internal/journaltest"
	"github.com/virtbridge/virtbridge/internal/policy"
	"github.com/virtbridge/virtbridge/internal/store"
)

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
	us, err := strconv.ParseInt(e[FieldRealtime], 10, 64)
	if err != nil {
		t.Fatalf("entry without %s: %v", FieldRealtime, e)
	}
	return time.UnixMicro(us)
}

// checkFields asserts that entry has every field of want, with its value.
func checkFields(t *testing.T, entry map[string]string, want map[string]string) {
	t.Helper()
	for k, v := range want {
		if entry[k] != v {
			t.Errorf("journal entry %s = %q, want %q (entry: %s)", k, entry[k], v, entry[FieldMessage])
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
	w := New(Options{File: filepath.Join(dir, "journal.jsonl")}) // the default socket
	if !w.JournaldAvailable() {
		t.Fatalf("journald runs (%+v) but JournaldAvailable says no", j)
	}
	s := store.New(filepath.Join(dir, "ports.json"))
	id := uniq(4)
	tap1, tap2 := "vt"+id+"a", "vt"+id+"b"
	a := VM{Name: "web-" + id, UUID: randomUUID(), Op: "started", Source: "hook"}
	b := VM{Name: "db-" + id, UUID: randomUUID(), Op: "started", Source: "eventd"}
	nics := []policy.Port{{Tap: tap1, MAC: "52:54:00:aa:00:01", Bridge: "br0"}, {Tap: tap2, MAC: "52:54:00:aa:00:02", Bridge: "br1"}}

	if err := AttachPorts(w, s, a, nics, time.Now()); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Millisecond) // distinct timestamps, to ask about the times between
	a.Op = "stopped"
	if err := DetachVM(w, s, a); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Millisecond)
	if err := AttachPorts(w, s, b, []policy.Port{{Tap: tap1, MAC: "52:54:00:bb:00:01", Bridge: "br0"}}, time.Now()); err != nil {
		t.Fatal(err)
	}
	if err := s.Save(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(w.File()); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("records went to the fallback file although journald runs: %v", err)
	}

	ofA := j.WaitEntries(t, 4, FieldIdentifier+"="+Identifier, FieldUUID+"="+a.UUID)
	if len(ofA) != 4 {
		t.Fatalf("%d entries of vm A, want 4", len(ofA))
	}
	macs := map[string]string{tap1: "52:54:00:aa:00:01", tap2: "52:54:00:aa:00:02"}
	bridges := map[string]string{tap1: "br0", tap2: "br1"}
	for i, e := range ofA {
		id, op, verb, prep := IDAttached, "started", "attached", "on"
		if i >= 2 {
			id, op, verb, prep = IDDetached, "stopped", "detached", "from"
		}
		tap := e[FieldTap]
		checkFields(t, e, map[string]string{
			FieldIdentifier: "virtbridge", FieldMessageID: id, FieldPriority: "6",
			FieldOp: op, FieldVM: a.Name, FieldUUID: a.UUID, FieldTap: tap, FieldMAC: macs[tap],
			FieldBridge: bridges[tap], FieldSource: "hook",
			FieldMessage: fmt.Sprintf("%s %s: vm %q (uuid %s) mac %s %s bridge %s", tap, verb, a.Name, a.UUID, macs[tap], prep, bridges[tap]),
		})
		if macs[tap] == "" {
			t.Errorf("entry %d names tap %q, not one of A's", i, tap)
		}
	}
	ofB := j.WaitEntries(t, 1, FieldIdentifier+"="+Identifier, FieldUUID+"="+b.UUID)
	checkFields(t, ofB[0], map[string]string{
		FieldMessageID: IDAttached, FieldOp: "started", FieldVM: b.Name, FieldTap: tap1, FieldMAC: "52:54:00:bb:00:01", FieldBridge: "br0", FieldSource: "eventd",
	})

	checkWho(t, j, Lookup{Store: s.Path(), File: w.File()}, tap1, tap2, a, b)
}

// checkWho asks who owned tap1 (A's, then B's) and tap2 (A's) now and at
// the times of their records.
func checkWho(t *testing.T, j *journaltest.Journald, l Lookup, tap1, tap2 string, a, b VM) {
	t.Helper()
	// The tap's history: A attached, A detached, B attached.
	hist := j.Entries(t, FieldIdentifier+"="+Identifier, FieldTap+"="+tap1)
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
	hist2 := j.Entries(t, FieldIdentifier+"="+Identifier, FieldTap+"="+tap2)
	if len(hist2) != 2 {
		t.Fatalf("%d entries for %s, want 2", len(hist2), tap2)
	}
	_, err := l.Now(ctx, tap2)
	var none *NoOwnerError
	want := Owner{VM: a.Name, UUID: a.UUID, MAC: "52:54:00:aa:00:02", Tap: tap2, Bridge: "br1",
		Since: realtime(t, hist2[0]), Until: realtime(t, hist2[1]), From: "journald"}
	if !errors.As(err, &none) || !errors.Is(err, ErrUnknown) || none.Last == nil || *none.Last != want ||
		!strings.Contains(err.Error(), fmt.Sprintf("no VM owns tap %q now; its last owner was vm %q", tap2, a.Name)) {
		t.Errorf("who %s now: %v (last %+v), want ErrUnknown naming %+v", tap2, err, none, want)
	}
	for _, c := range []struct {
		name string
		at   time.Time
		want string // VM name, or "" for ErrUnknown
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
		case c.want == "" && !errors.Is(err, ErrUnknown):
			t.Errorf("who %s %s: %+v, %v; want ErrUnknown", tap1, c.name, o, err)
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
	if !errors.Is(err, ErrUnknown) || !strings.Contains(err.Error(), "detached from vm "+strconv.Quote(a.Name)) {
		t.Errorf("who %s now from the journal: %v; want ErrUnknown saying it was detached from %s", tap2, err, a.Name)
	}
}

// TestJournaldOtherRecords sends a refusal (multi-line reason) and host
// changes, to the default socket and to another path (here a symlink to
// journald's), and reads them back.
func TestJournaldOtherRecords(t *testing.T) {
	j := journaltest.Require(t)
	dir := t.TempDir()
	link := filepath.Join(dir, "socket")
	if err := os.Symlink(j.Socket, link); err != nil {
		t.Fatal(err)
	}
	for name, socket := range map[string]string{"default": "", "other-path": link} {
		w := New(Options{Socket: socket, File: filepath.Join(dir, name+".jsonl")})
		vm := VM{Name: "vm-" + uniq(4), UUID: randomUUID(), Op: "prepare", Source: "hook"}
		reason := "NIC 52:54:00:aa:00:09 uses bridge \"br9\", which virtbridge does not manage\n(unmanaged_bridges: refuse in /etc/virtbridge/virtbridge.yaml)"
		changes := []change.Change{
			{Kind: change.BridgeCreated, Object: "br0", After: "up stp off"},
			{Kind: change.AddressMoved, Object: "10.0.0.2/24", Before: "eth1", After: "br0"},
		}
		if err := w.HostChanges(vm, changes); err != nil {
			t.Fatal(err)
		}
		if err := w.Refused(vm, reason); err != nil {
			t.Fatal(err)
		}
		got := j.WaitEntries(t, 3, FieldIdentifier+"="+Identifier, FieldUUID+"="+vm.UUID)
		if len(got) != 3 {
			t.Fatalf("%s: %d entries, want 3", name, len(got))
		}
		common := map[string]string{FieldOp: "prepare", FieldVM: vm.Name, FieldUUID: vm.UUID, FieldSource: "hook"}
		for i, c := range changes {
			checkFields(t, got[i], common)
			checkFields(t, got[i], map[string]string{
				FieldMessageID: IDHostChange, FieldPriority: "5", FieldChange: string(c.Kind),
				FieldObject: c.Object, FieldBefore: c.Before, FieldAfter: c.After,
				FieldMessage: fmt.Sprintf("%s (for vm %q at prepare)", c, vm.Name),
			})
		}
		checkFields(t, got[2], common)
		checkFields(t, got[2], map[string]string{
			FieldMessageID: IDRefused, FieldPriority: "3", FieldReason: reason,
			FieldMessage: fmt.Sprintf("refused prepare of vm %q (uuid %s): %s", vm.Name, vm.UUID, strings.ReplaceAll(reason, "\n", "; ")),
		})
		if _, err := os.Stat(w.File()); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s: records went to the fallback file", name)
		}
	}
}

// TestJournaldLargeRecord sends a record larger than one datagram (the
// socket refuses it with EMSGSIZE): it reaches journald whole, passed as a
// sealed memfd, and nothing goes to the fallback file.
func TestJournaldLargeRecord(t *testing.T) {
	j := journaltest.Require(t)
	id := uniq(6)
	r := Record{Message: "large record " + id, Priority: 6, Fields: map[string]string{
		FieldIdentifier: "virtbridge-test", "VIRTBRIDGE_RUN": id}}
	for i := 0; i < 64; i++ { // 64 × 8 KiB: more than the default socket buffer
		r.Fields[fmt.Sprintf("VIRTBRIDGE_PART%02d", i)] = strings.Repeat(string(rune('a'+i%26)), maxValue)
	}
	if err := sendNative(DefaultSocket, r, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	e := j.WaitEntries(t, 1, "VIRTBRIDGE_RUN="+id)
	if len(e) != 1 {
		t.Fatalf("%d entries, want 1", len(e))
	}
	for k, v := range r.Fields {
		if e[0][k] != v {
			t.Fatalf("field %s: %d bytes read back, want %d", k, len(e[0][k]), len(v))
		}
	}
}
