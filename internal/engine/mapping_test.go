package engine

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/virtbridge/virtbridge/internal/desired"
	"github.com/virtbridge/virtbridge/internal/journal"
	"github.com/virtbridge/virtbridge/internal/store"
	"github.com/virtbridge/virtbridge/internal/who"
)

// fakeClock hands out times one second apart.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time { c.t = c.t.Add(time.Second); return c.t }

// fileWriter returns a journal writer whose journald socket does not
// exist, so that records go to a JSON-lines file in a temp dir.
func fileWriter(t *testing.T, dir string, stderr *bytes.Buffer, clock *fakeClock) *journal.Writer {
	t.Helper()
	return journal.New(journal.Options{
		Socket: filepath.Join(dir, "no-journald", "socket"),
		File:   filepath.Join(dir, "log", "journal.jsonl"),
		Stderr: stderr,
		Now:    clock.now,
	})
}

// fileRecords reads the JSON-lines file back as fields.
func fileRecords(t *testing.T, path string) []map[string]string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []map[string]string
	for _, line := range strings.Split(strings.TrimSuffix(string(data), "\n"), "\n") {
		f, ok := journal.ParseFields([]byte(line))
		if !ok {
			t.Fatalf("line of %s is not JSON: %q", path, line)
		}
		out = append(out, f)
	}
	return out
}

var web01 = journal.VM{Name: "web01", UUID: "6f1c7c52-3b7a-4a8e-9d0a-111111111111", Op: "started", Source: "hook"}

// TestAttachPortsDetachVM drives the hook's sequence through the store and
// a file journal and compares the records as text.
func TestAttachPortsDetachVM(t *testing.T) {
	dir := t.TempDir()
	clock := &fakeClock{t: time.Date(2025, 3, 4, 14, 0, 0, 0, time.UTC)}
	w := fileWriter(t, dir, &bytes.Buffer{}, clock)
	s := store.New(filepath.Join(dir, "ports.json"))
	vm := func(op string) journal.VM { v := web01; v.Op = op; return v }
	db := journal.VM{Name: "db01", UUID: "6f1c7c52-3b7a-4a8e-9d0a-222222222222", Op: "started", Source: "hook"}
	nics := []desired.Port{{Tap: "vnet1", MAC: "52:54:00:aa:00:01", Bridge: "br0"}, {Tap: "vnet2", MAC: "52:54:00:aa:00:02", Bridge: "br1"}}
	noTaps := []desired.Port{{MAC: "52:54:00:aa:00:01", Bridge: "br0"}}
	step := func(what string, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	step("prepare", attachPorts(context.Background(), w, s, vm("prepare"), noTaps, clock.now()))
	step("start", attachPorts(context.Background(), w, s, vm("start"), nics, clock.now()))
	step("started", attachPorts(context.Background(), w, s, vm("started"), nics, clock.now()))
	step("start again", attachPorts(context.Background(), w, s, vm("start"), nics, clock.now()))
	step("reconnect", attachPorts(context.Background(), w, s, vm("reconnect"), nics, clock.now()))
	step("stopped", detachVM(context.Background(), w, s, vm("stopped")))
	step("release", detachVM(context.Background(), w, s, vm("release")))
	step("started", attachPorts(context.Background(), w, s, vm("started"), nics, clock.now()))
	// db01 gets vnet2 while web01's stop was never recorded.
	step("db started", attachPorts(context.Background(), w, s, db, []desired.Port{{Tap: "vnet2", MAC: "52:54:00:bb:00:01", Bridge: "br1"}}, clock.now()))
	step("unplug", detachNICs(context.Background(), w, s, vm("device-removed"), []string{"52:54:00:AA:00:01", "52:54:00:aa:00:09"}))

	var got []string
	for _, f := range fileRecords(t, w.File()) {
		kind := map[string]string{journal.IDAttached: "attached", journal.IDDetached: "detached"}[f[journal.FieldMessageID]]
		got = append(got, fmt.Sprintf("%s %s %s vm=%s op=%s", kind, f[journal.FieldTap], f[journal.FieldBridge], f[journal.FieldVM], f[journal.FieldOp]))
	}
	want := []string{
		"attached vnet1 br0 vm=web01 op=start", // new mapping
		"attached vnet2 br1 vm=web01 op=start",
		// started, start again: the same mapping, nothing recorded
		"attached vnet1 br0 vm=web01 op=reconnect", // reconnect always records
		"attached vnet2 br1 vm=web01 op=reconnect",
		"detached vnet1 br0 vm=web01 op=stopped",
		"detached vnet2 br1 vm=web01 op=stopped",
		// release: already detached
		"attached vnet1 br0 vm=web01 op=started",
		"attached vnet2 br1 vm=web01 op=started",
		"detached vnet2 br1 vm=web01 op=started", // displaced by db01
		"attached vnet2 br1 vm=db01 op=started",
		"detached vnet1 br0 vm=web01 op=device-removed",
	}
	if !slices.Equal(got, want) {
		t.Fatalf("records:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if err := s.Save(); err != nil {
		t.Fatal(err)
	}
	l := who.Lookup{Store: s.Path(), File: w.File(), Journalctl: "/nonexistent/journalctl"}
	if o, err := l.Now(context.Background(), "vnet2"); err != nil || o.VM != "db01" || o.From != "store" {
		t.Fatalf("who vnet2 now: %+v, %v", o, err)
	}
	// vnet1 has no owner now; the file names its last one, from its
	// attach (after the restart) until its unplug.
	var since, until time.Time
	for _, f := range fileRecords(t, w.File()) {
		us, _ := strconv.ParseInt(f[journal.FieldRealtime], 10, 64)
		if f[journal.FieldTap] == "vnet1" && f[journal.FieldMessageID] == journal.IDAttached {
			since = time.UnixMicro(us)
		}
		if f[journal.FieldTap] == "vnet1" && f[journal.FieldOp] == "device-removed" {
			until = time.UnixMicro(us)
		}
	}
	_, err := l.Now(context.Background(), "vnet1")
	var none *who.NoOwnerError
	if !errors.As(err, &none) || !errors.Is(err, who.ErrUnknown) || none.Last == nil {
		t.Fatalf("who vnet1 now: %v, want a NoOwnerError naming its last owner", err)
	}
	got = []string{fmt.Sprint(err), fmt.Sprintf("%+v", *none.Last)}
	last := who.Owner{VM: "web01", UUID: web01.UUID, MAC: "52:54:00:aa:00:01", Tap: "vnet1", Bridge: "br0", Since: since, Until: until, From: w.File()}
	want = []string{fmt.Sprintf(`no VM owns tap "vnet1" now; its last owner was vm "web01" (uuid %s) mac 52:54:00:aa:00:01 on bridge br0, `+
		"attached %s, detached %s [%s]", web01.UUID, since.Format(journal.TimeLayout), until.Format(journal.TimeLayout), w.File()), fmt.Sprintf("%+v", last)}
	if since.IsZero() || until.IsZero() || !slices.Equal(got, want) {
		t.Fatalf("who vnet1 now:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestLoadStoreJournalsRecovery(t *testing.T) {
	dir := t.TempDir()
	clock := &fakeClock{t: time.Date(2025, 3, 4, 14, 0, 0, 0, time.UTC)}
	w := fileWriter(t, dir, &bytes.Buffer{}, clock)
	path := filepath.Join(dir, "ports.json")
	os.WriteFile(path, []byte("\x00\x00\x00"), 0o644)
	s, err := loadStore(context.Background(), w, path)
	if err != nil || s.Recovered() == nil {
		t.Fatalf("loadStore of a corrupt store: %v, %+v", err, s)
	}
	recs := fileRecords(t, w.File())
	if len(recs) != 1 || recs[0][journal.FieldPriority] != "4" || recs[0][journal.FieldStore] != path || recs[0][journal.FieldMovedTo] != s.Recovered().MovedTo {
		t.Fatalf("recovery records: %v", recs)
	}
}
