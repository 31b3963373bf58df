package engine

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/virtbridge/virtbridge/internal/desired"
	"github.com/virtbridge/virtbridge/internal/journal"
	"github.com/virtbridge/virtbridge/internal/store"
	"github.com/virtbridge/virtbridge/internal/who"
)

// TestCatchUpFromFile: a store saved before web01 stopped and db01 started
// (their saves failed) catches up from the JSON-lines file: web01 gone,
// db01 on web01's old tap; records of another store in the same file are
// not replayed, and records before the stale time are not needed.
func TestCatchUpFromFile(t *testing.T) {
	dir := t.TempDir()
	clock := &fakeClock{t: time.Now().Add(-time.Hour)}
	w := fileWriter(t, dir, &bytes.Buffer{}, clock)
	path := filepath.Join(dir, "ports.json")
	live := store.New(path) // what the runs did in memory
	db := journal.VM{Name: "db01", UUID: "6f1c7c52-3b7a-4a8e-9d0a-222222222222", Op: "started", Source: "hook"}
	step := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	step(attachPorts(context.Background(), w, live, web01, []desired.Port{{Tap: "vnet1", MAC: "52:54:00:aa:00:01", Bridge: "br0"}}, clock.now()))
	step(live.Save()) // the last good save
	clock.t = clock.t.Add(catchUpSlack)
	stale := clock.now() // a save fails from here on
	stopped := web01
	stopped.Op = "stopped"
	step(detachVM(context.Background(), w, live, stopped))
	step(attachPorts(context.Background(), w, live, db, []desired.Port{{Tap: "vnet1", MAC: "52:54:00:bb:00:01", Bridge: "br0"}}, clock.now()))
	other := store.New(filepath.Join(dir, "other.json")) // another host's store, same file
	step(attachPorts(context.Background(), w, other, web01, []desired.Port{{Tap: "vnet9", MAC: "52:54:00:aa:00:09", Bridge: "br0"}}, clock.now()))

	s, err := store.Load(path)
	step(err)
	l := who.Lookup{Store: path, File: w.File(), Journalctl: "/nonexistent/journalctl"}
	n, complete, err := catchUp(context.Background(), w, l, s, stale)
	step(err)
	entries := func() string {
		var got []string
		for _, e := range s.All() {
			got = append(got, e.VM+" "+e.Tap+" "+e.MAC)
		}
		return strings.Join(got, "\n")
	}
	if got := entries(); n != 2 || !complete || got != "db01 vnet1 52:54:00:bb:00:01" {
		t.Fatalf("CatchUp replayed %d records (complete %v), store:\n%s\nwant db01 on vnet1 alone, from 2 records", n, complete, got)
	}
	// Idempotent: a second catch-up (the save failed again) changes nothing.
	if _, _, err := catchUp(context.Background(), w, l, s, stale); err != nil || entries() != "db01 vnet1 52:54:00:bb:00:01" {
		t.Fatalf("CatchUp again: %v, store:\n%s", err, entries())
	}
}
