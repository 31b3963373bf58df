package journal

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/virtbridge/virtbridge/internal/deadline"
)

// TestSendEndsWithCtx: a send to a journald that does not read ends with
// its context — at the context's deadline, long before the Writer's own
// timeout, and at once when the context is cancelled (a daemon's SIGTERM)
// — with an error naming the socket; meanwhile the context's Activity
// says what the send waits for. Write then puts the record in the file,
// without telling stderr that journald is missing.
func TestSendEndsWithCtx(t *testing.T) {
	socket := filepath.Join(t.TempDir(), "socket")
	stuck := stuckSocket(t, socket)
	defer stuck.Close()
	r := Record{Message: "stuck", Priority: 6}
	what := "sending a record to journald at " + socket

	ctx, cancel := deadline.Within(context.Background(), time.Now(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := sendNative(ctx, socket, r, time.Hour)
	t.Logf("deadline: %v after %v", err, time.Since(start))
	var de *deadline.Error
	if !errors.As(err, &de) || !errors.Is(err, context.DeadlineExceeded) || err.Error() != what+": timed out" {
		t.Fatalf("send past its context's deadline: %v, want %q", err, what+": timed out")
	}
	if d := time.Since(start); d > 30*time.Second {
		t.Fatalf("the send took %v with a deadline 100 ms away", d)
	}

	ctx, stop := context.WithCancel(context.Background())
	ctx, act := deadline.WithActivity(ctx)
	done := make(chan error, 1)
	go func() { done <- sendNative(ctx, socket, r, time.Hour) }()
	for end := time.Now().Add(30 * time.Second); act.Current() != what; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatalf("the Activity says %q, want %q", act.Current(), what)
		}
	}
	start = time.Now()
	stop()
	select {
	case err := <-done:
		t.Logf("cancelled: %v after %v", err, time.Since(start))
		if !errors.Is(err, context.Canceled) || err.Error() != what+": stopped" {
			t.Fatalf("cancelled send: %v, want %q", err, what+": stopped")
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the send went on 30 s after its context was cancelled")
	}

	var stderr bytes.Buffer
	w := New(Options{Socket: socket, File: filepath.Join(t.TempDir(), "journal.jsonl"), Stderr: &stderr, Timeout: time.Hour})
	if err := w.Write(ctx, r); err != nil {
		t.Fatal(err)
	}
	if n := len(fileRecords(t, w.File())); n != 1 {
		t.Fatalf("the file holds %d records, want the one journald did not take", n)
	}
	if strings.Contains(stderr.String(), "journal records to") {
		t.Errorf("a send cut short by its context blamed journald: %q", stderr.String())
	}
}
