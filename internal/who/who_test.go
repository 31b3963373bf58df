package who

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/virtbridge/virtbridge/internal/journal"
	"github.com/virtbridge/virtbridge/internal/store"
)

func TestWhoNoSources(t *testing.T) {
	dir := t.TempDir()
	l := Lookup{Store: filepath.Join(dir, "ports.json"), File: filepath.Join(dir, "none.jsonl"), Journalctl: "/nonexistent/journalctl"}
	_, err := l.At(context.Background(), "vnet0", time.Now())
	if !errors.Is(err, ErrUnknown) || !strings.Contains(err.Error(), "journalctl is not installed") {
		t.Fatalf("At with no sources: %v", err)
	}
	if _, err := l.Now(context.Background(), "vnet0"); !errors.Is(err, ErrUnknown) {
		t.Fatalf("Now with no store: %v", err)
	}
	if _, err := l.Now(context.Background(), "bad/tap"); err == nil || errors.Is(err, ErrUnknown) {
		t.Fatalf("Now(bad/tap): %v, want a validation error", err)
	}
	os.WriteFile(l.Store, []byte("{"), 0o644)
	var ce *store.CorruptError
	if _, err := l.Now(context.Background(), "vnet0"); !errors.As(err, &ce) {
		t.Fatalf("Now with a corrupt store: %v", err)
	}
}

// TestFallbackFileCutLine: a line cut by a crash costs only that line: the
// records around it still answer.
func TestFallbackFileCutLine(t *testing.T) {
	dir := t.TempDir()
	now := time.Date(2025, 3, 4, 14, 0, 0, 0, time.UTC)
	clock := func() time.Time { now = now.Add(time.Second); return now }
	w := journal.New(journal.Options{Socket: filepath.Join(dir, "no-journald", "socket"),
		File: filepath.Join(dir, "journal.jsonl"), Stderr: io.Discard, Now: clock})
	vm := journal.VM{Name: "web01", UUID: "6f1c7c52-3b7a-4a8e-9d0a-111111111111", Op: "started", Source: "hook"}
	p := journal.Port{VM: vm, Tap: "vnet3", MAC: "52:54:00:aa:00:01", Bridge: "br0"}
	if err := w.Attached(context.Background(), p); err != nil {
		t.Fatal(err)
	}
	f, _ := os.OpenFile(w.File(), os.O_WRONLY|os.O_APPEND, 0)
	f.WriteString(`{"MESSAGE":"cut by a cra`)
	f.Close()
	if err := w.Detached(context.Background(), p); err != nil {
		t.Fatal(err)
	}
	l := Lookup{Store: filepath.Join(dir, "ports.json"), File: w.File(), Journalctl: "/nonexistent/journalctl"}
	_, err := l.At(context.Background(), "vnet3", now)
	if !errors.Is(err, ErrUnknown) || !strings.Contains(err.Error(), "detached") {
		t.Fatalf("who after the detached record: %v", err)
	}
	o, err := l.At(context.Background(), "vnet3", now.Add(-time.Second))
	if err != nil || o.VM != "web01" {
		t.Fatalf("who before the detached record: %+v, %v", o, err)
	}
}

// FuzzParseEntry: a line of the fallback file or of journalctl, whatever
// it holds, must not panic the reader.
func FuzzParseEntry(f *testing.F) {
	f.Add([]byte(`{"SYSLOG_IDENTIFIER":"virtbridge","MESSAGE_ID":"5ff2a649b70307c98b6ebf8e9ad17c24","VIRTBRIDGE_TAP":"vnet3","__REALTIME_TIMESTAMP":"1741096801000000"}`))
	f.Add([]byte(`{"A":[1,2,[3]],"B":null,"C":{}}`))
	f.Fuzz(func(t *testing.T, line []byte) {
		if e, ok := parseEntry(line, "fuzz"); ok && e.Kind != journal.IDAttached && e.Kind != journal.IDDetached {
			t.Fatalf("parseEntry accepted kind %q", e.Kind)
		}
	})
}
