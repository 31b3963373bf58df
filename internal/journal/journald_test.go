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
	"github.com/virtbridge/virtbridge/internal/testenv/journaltest"
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
		if err := w.HostChanges(context.Background(), vm, changes); err != nil {
			t.Fatal(err)
		}
		if err := w.Refused(context.Background(), vm, reason); err != nil {
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
	if err := sendNative(context.Background(), DefaultSocket, r, 5*time.Second); err != nil {
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
