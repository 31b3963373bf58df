package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/virtbridge/virtbridge/internal/lock"
)

// TestDeadlineWithTheHostLockHeld: while another process holds the host
// lock (here the test itself), prepare gives up within hook_timeout with a
// refusal naming the lock and its holder's pid, and changes nothing; once
// the lock is free the same prepare succeeds.
func TestDeadlineWithTheHostLockHeld(t *testing.T) {
	h := newHypervisor(t, brA+"hook_timeout: 2s\n")
	path := filepath.Join(h.dir, "lock")
	l, err := lock.Acquire(path, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Release()
	h.settle(t)
	before := h.hv.Dump(t)
	r := h.hook(t, "one-nic", "01-prepare-begin")
	t.Logf("%s", r.stderr)
	for _, want := range []string{`virtbridge: domain "one-nic" (prepare): refused: `, "host lock " + path, fmt.Sprintf("held by pid %d", os.Getpid())} {
		if r.code != 1 || !strings.Contains(r.stderr, want) {
			t.Fatalf("exit %d stderr %q, want a refusal containing %q", r.code, r.stderr, want)
		}
	}
	if after := h.hv.Dump(t); after != before {
		t.Fatalf("the prepare that found the lock busy changed the host:\n--- before\n%s\n--- after\n%s", before, after)
	}
	l.Release()
	if r := h.hook(t, "one-nic", "01-prepare-begin"); r.code != 0 {
		t.Fatalf("prepare with the lock free: %+v", r)
	}
}
