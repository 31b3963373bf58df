package journaltest

import (
	"crypto/rand"
	"encoding/hex"
	"testing"

	sdjournal "github.com/coreos/go-systemd/v22/journal"
)

// syncField marks the entries Sync sends.
const syncField = "JOURNALTEST_SYNC"

// Sync returns once journald has stored every entry sent to its socket
// before the call: it sends a marker entry and waits for it, since journald
// reads its socket in order. After Sync, a count of entries is final for
// everything that finished sending before (processes that have exited).
func (j *Journald) Sync(t testing.TB) {
	t.Helper()
	b := make([]byte, 8)
	rand.Read(b)
	marker := hex.EncodeToString(b)
	if err := sdjournal.Send("journaltest sync marker", sdjournal.PriDebug, map[string]string{syncField: marker}); err != nil {
		t.Fatalf("sending a sync marker to journald: %v", err)
	}
	j.WaitEntries(t, 1, syncField+"="+marker)
}
