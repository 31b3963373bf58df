package store

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var t0 = time.Date(2025, 3, 4, 14, 2, 0, 0, time.UTC)

const (
	uuidA = "6f1c7c52-3b7a-4a8e-9d0a-111111111111"
	uuidB = "6f1c7c52-3b7a-4a8e-9d0a-222222222222"
)

// render lists the store as `status` would, one line per entry.
func render(s *Store) string {
	var b strings.Builder
	for _, g := range s.ByBridge() {
		for _, e := range g.Entries {
			fmt.Fprintf(&b, "%s %s vm=%q uuid=%s mac=%s since=%s\n", g.Bridge, e.Tap, e.VM, e.UUID, e.MAC, e.Since.Format(time.RFC3339))
		}
	}
	return b.String()
}

func mustAttach(t *testing.T, s *Store, e Entry) ([]Entry, bool) {
	t.Helper()
	d, changed, err := s.Attach(e)
	if err != nil {
		t.Fatalf("Attach(%+v): %v", e, err)
	}
	return d, changed
}

func TestAttachDetach(t *testing.T) {
	s := New(filepath.Join(t.TempDir(), "ports.json"))
	web0 := Entry{UUID: uuidA, VM: "web01", MAC: "52:54:00:AA:00:01", Tap: "vnet10", Bridge: "br0", Since: t0}
	web1 := Entry{UUID: uuidA, VM: "web01", MAC: "52:54:00:aa:00:02", Tap: "vnet2", Bridge: "br1", Since: t0}
	db0 := Entry{UUID: uuidB, VM: "db01", MAC: "52:54:00:bb:00:01", Tap: "vnet3", Bridge: "br0", Since: t0.Add(time.Hour)}
	for _, e := range []Entry{web0, web1, db0} {
		// Twice: the second attach of the same mapping changes nothing.
		if d, changed := mustAttach(t, s, e); !changed || d != nil {
			t.Fatalf("first Attach(%s): changed=%v displaced=%v, want true, none", e.Tap, changed, d)
		}
		again := e
		again.Since = t0.Add(48 * time.Hour)
		if d, changed := mustAttach(t, s, again); changed || d != nil {
			t.Fatalf("second Attach(%s): changed=%v displaced=%v, want false, none", e.Tap, changed, d)
		}
	}
	want := `br0 vnet3 vm="db01" uuid=6f1c7c52-3b7a-4a8e-9d0a-222222222222 mac=52:54:00:bb:00:01 since=2025-03-04T15:02:00Z
br0 vnet10 vm="web01" uuid=6f1c7c52-3b7a-4a8e-9d0a-111111111111 mac=52:54:00:aa:00:01 since=2025-03-04T14:02:00Z
br1 vnet2 vm="web01" uuid=6f1c7c52-3b7a-4a8e-9d0a-111111111111 mac=52:54:00:aa:00:02 since=2025-03-04T14:02:00Z
`
	if got := render(s); got != want {
		t.Fatalf("store:\n%s\nwant:\n%s", got, want)
	}
	if e, ok := s.ByTap("vnet10"); !ok || e.VM != "web01" || e.MAC != "52:54:00:aa:00:01" {
		t.Errorf("ByTap(vnet10) = %+v, %v", e, ok)
	}
	if _, ok := s.ByTap("vnet99"); ok {
		t.Errorf("ByTap(vnet99) found an entry")
	}
	if got := s.ByVM(uuidA); len(got) != 2 || got[0].Tap != "vnet10" || got[1].Tap != "vnet2" {
		t.Errorf("ByVM(A) = %+v", got)
	}

	// db01 restarts and libvirt hands its NIC vnet10, which web01 held
	// without a recorded stop: web01's entry is displaced, and so is db01's
	// own previous entry, whose tap vnet3 it released.
	d, changed := mustAttach(t, s, Entry{UUID: uuidB, VM: "db01", MAC: "52:54:00:bb:00:01", Tap: "vnet10", Bridge: "br0", Since: t0.Add(2 * time.Hour)})
	if !changed || len(d) != 2 || d[0].VM != "web01" || d[0].Tap != "vnet10" || d[1].VM != "db01" || d[1].Tap != "vnet3" {
		t.Fatalf("Attach over a held tap: changed=%v displaced=%+v", changed, d)
	}
	want = `br0 vnet10 vm="db01" uuid=6f1c7c52-3b7a-4a8e-9d0a-222222222222 mac=52:54:00:bb:00:01 since=2025-03-04T16:02:00Z
br1 vnet2 vm="web01" uuid=6f1c7c52-3b7a-4a8e-9d0a-111111111111 mac=52:54:00:aa:00:02 since=2025-03-04T14:02:00Z
`
	if got := render(s); got != want {
		t.Fatalf("after re-attach:\n%s\nwant:\n%s", got, want)
	}

	if e, ok := s.Detach(uuidA, "52:54:00:AA:00:02"); !ok || e.Tap != "vnet2" {
		t.Fatalf("Detach = %+v, %v", e, ok)
	}
	if _, ok := s.Detach(uuidA, "52:54:00:aa:00:02"); ok {
		t.Fatalf("second Detach found the entry again")
	}
	if got := s.DetachVM(uuidB); len(got) != 1 || got[0].Tap != "vnet10" {
		t.Fatalf("DetachVM(B) = %+v", got)
	}
	if got := s.DetachVM(uuidB); len(got) != 0 {
		t.Fatalf("second DetachVM(B) = %+v", got)
	}
	if got := render(s); got != "" {
		t.Fatalf("store not empty:\n%s", got)
	}
}

func TestAttachRefusesBadEntries(t *testing.T) {
	good := Entry{UUID: uuidA, VM: "web01", MAC: "52:54:00:aa:00:01", Tap: "vnet0", Bridge: "br0"}
	for name, mut := range map[string]func(*Entry){
		"no uuid":        func(e *Entry) { e.UUID = "" },
		"control in vm":  func(e *Entry) { e.VM = "web\n01" },
		"multicast mac":  func(e *Entry) { e.MAC = "01:00:5e:00:00:01" },
		"bad mac":        func(e *Entry) { e.MAC = "nope" },
		"no tap":         func(e *Entry) { e.Tap = "" },
		"long tap":       func(e *Entry) { e.Tap = "vnet0123456789abc" },
		"bridge slash":   func(e *Entry) { e.Bridge = "br/0" },
		"year too large": func(e *Entry) { e.Since = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC) },
	} {
		e := good
		mut(&e)
		s := New("unused")
		if _, _, err := s.Attach(e); err == nil {
			t.Errorf("%s: Attach(%+v) accepted it", name, e)
		}
		if len(s.All()) != 0 {
			t.Errorf("%s: refused entry was stored", name)
		}
	}
	s := New("unused")
	if _, _, err := s.Attach(good); err != nil {
		t.Fatalf("good entry refused: %v", err)
	}
	if e := s.All()[0]; e.Since.IsZero() || e.Since.Location() != time.UTC {
		t.Errorf("zero Since not set to the current UTC time: %v", e.Since)
	}
}

func TestSaveLoadRoundTrip(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "sub", "ports.json")
	s, err := Load(path)
	if err != nil {
		t.Fatalf("Load of a missing store: %v", err)
	}
	if len(s.All()) != 0 || s.Recovered() != nil {
		t.Fatalf("missing store not empty: %+v", s.All())
	}
	mustAttach(t, s, Entry{UUID: uuidA, VM: "web01", MAC: "52:54:00:aa:00:01", Tap: "vnet0", Bridge: "br0", Since: t0})
	mustAttach(t, s, Entry{UUID: uuidB, VM: `db "01"`, MAC: "52:54:00:bb:00:01", Tap: "vnet1", Bridge: "br0", Since: t0})
	if err := s.Save(); err != nil {
		t.Fatalf("Save: %v", err)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o644 {
		t.Errorf("store mode %v, want 0644", st.Mode().Perm())
	}
	// Nothing changed: Save must not write (prove it by removing the file).
	os.Remove(path)
	if err := s.Save(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("Save without changes wrote the file (stat: %v)", err)
	}
	s.Detach(uuidA, "52:54:00:aa:00:01")
	mustAttach(t, s, Entry{UUID: uuidA, VM: "web01", MAC: "52:54:00:aa:00:01", Tap: "vnet0", Bridge: "br0", Since: t0})
	if err := s.Save(); err != nil {
		t.Fatal(err)
	}
	for _, load := range []func(string) (*Store, error){Load, Read} {
		got, err := load(path)
		if err != nil {
			t.Fatalf("loading saved store: %v", err)
		}
		if render(got) != render(s) {
			t.Fatalf("loaded:\n%s\nsaved:\n%s", render(got), render(s))
		}
	}
	if ents, _ := os.ReadDir(filepath.Dir(path)); len(ents) != 1 {
		t.Errorf("store directory holds %d files, want only ports.json: %v", len(ents), ents)
	}
}

func TestCorruptStoreMovedAside(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "ports.json")
	bad := []byte(`{"version":1,"entries":[{"uuid":"x","mac":"52:54:00:aa:00:01","tap":"vnet0","bri`)
	if err := os.WriteFile(path, bad, 0o644); err != nil {
		t.Fatal(err)
	}
	// A reader reports it and leaves it in place.
	_, err := Read(path)
	var ce *CorruptError
	if !errors.As(err, &ce) {
		t.Fatalf("Read of a truncated store: %v, want a *CorruptError", err)
	}
	if data, _ := os.ReadFile(path); string(data) != string(bad) {
		t.Fatalf("Read changed the corrupt file")
	}
	// A writer moves it aside and starts empty.
	s, err := Load(path)
	if err != nil {
		t.Fatalf("Load of a corrupt store: %v", err)
	}
	r := s.Recovered()
	if r == nil || r.Path != path || !strings.HasPrefix(r.MovedTo, path+".corrupt-") || !errors.As(r.Cause, &ce) {
		t.Fatalf("Recovered() = %+v", r)
	}
	if data, err := os.ReadFile(r.MovedTo); err != nil || string(data) != string(bad) {
		t.Fatalf("corrupt file not kept at %s: %v", r.MovedTo, err)
	}
	if len(s.All()) != 0 {
		t.Fatalf("recovered store not empty")
	}
	if err := s.Save(); err != nil {
		t.Fatal(err)
	}
	if got, err := Read(path); err != nil || len(got.All()) != 0 {
		t.Fatalf("store after recovery: %v", err)
	}
}

func TestNewerVersionLeftAlone(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ports.json")
	data := []byte(`{"version":2,"entries":[],"future":true}`)
	os.WriteFile(path, data, 0o644)
	_, err := Load(path)
	var ve *VersionError
	if !errors.As(err, &ve) || ve.Version != 2 {
		t.Fatalf("Load of a version 2 store: %v, want a *VersionError", err)
	}
	if got, _ := os.ReadFile(path); string(got) != string(data) {
		t.Fatalf("Load touched a newer store")
	}
	if m, _ := filepath.Glob(path + ".corrupt-*"); len(m) != 0 {
		t.Fatalf("newer store moved aside: %v", m)
	}
}

func TestParseRefuses(t *testing.T) {
	e := `{"uuid":"u","vm":"v","mac":"52:54:00:aa:00:01","tap":"vnet0","bridge":"br0","since":"2025-03-04T14:02:00Z"}`
	e2 := `{"uuid":"w","vm":"v","mac":"52:54:00:aa:00:02","tap":"vnet0","bridge":"br0","since":"2025-03-04T14:02:00Z"}`
	for _, in := range []string{
		``, `null`, `[]`, `{}`, `{"entries":[]}`, `{"version":0,"entries":[]}`,
		`{"version":1,"entries":[` + e + `,` + e + `]}`,
		`{"version":1,"entries":[` + e + `,` + e2 + `]}`,
		`{"version":1,"entries":[]} {}`,
		`{"version":1,"entries":{}}`,
		`{"version":1,"entries":[{"uuid":"u","mac":"52:54:00:aa:00:01","tap":"vnet0","bridge":"br0","since":"yesterday"}]}`,
	} {
		_, err := Parse([]byte(in))
		var ce *CorruptError
		if !errors.As(err, &ce) {
			t.Errorf("Parse(%s) = %v, want a *CorruptError", in, err)
		}
	}
	if got, err := Parse([]byte(`{"version":1,"entries":null}`)); err != nil || len(got) != 0 {
		t.Errorf("entries null: %v, %v", got, err)
	}
}

func TestSaveRemovesStaleTemps(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "ports.json")
	stale := filepath.Join(dir, ".ports.json.tmp-123")
	other := filepath.Join(dir, ".other.json.tmp-123")
	os.WriteFile(stale, []byte("half a sto"), 0o600)
	os.WriteFile(other, []byte("not ours"), 0o600)
	s := New(path)
	mustAttach(t, s, Entry{UUID: uuidA, MAC: "52:54:00:aa:00:01", Tap: "vnet0", Bridge: "br0"})
	if err := s.Save(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(stale); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("stale temp file left: %v", err)
	}
	if _, err := os.Stat(other); err != nil {
		t.Errorf("another store's temp file removed: %v", err)
	}
}

func TestNaturalCompare(t *testing.T) {
	for _, c := range []struct {
		a, b string
		want int
	}{
		{"vnet2", "vnet10", -1}, {"vnet10", "vnet2", 1}, {"vnet1", "vnet1", 0},
		{"vnet", "vnet0", -1}, {"tap1", "vnet0", -1}, {"vnet01", "vnet1", 1},
		{"a99999999999999999999999", "a1", 1},
	} {
		if got := NaturalCompare(c.a, c.b); got != c.want {
			t.Errorf("NaturalCompare(%q, %q) = %d, want %d", c.a, c.b, got, c.want)
		}
	}
}
