package journal

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// stuckChildEnv makes TestStuckJournaldChild run: in a mount namespace of
// its own, started by TestStuckJournaldLeaksNoGoroutine.
const stuckChildEnv = "VBX_STUCK_JOURNALD_CHILD"

// TestStuckJournaldLeaksNoGoroutine runs TestStuckJournaldChild in a mount
// namespace of its own, where a socket nobody reads stands at journald's
// default path: the machine's journald is never touched.
func TestStuckJournaldLeaksNoGoroutine(t *testing.T) {
	if testing.Short() {
		t.Skip("skipped in -short: needs a mount namespace")
	}
	if os.Geteuid() != 0 {
		t.Skip("skipped: needs root for a mount namespace (run `sudo make test`)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestStuckJournaldChild$", "-test.count=1", "-test.v")
	cmd.SysProcAttr = &syscall.SysProcAttr{Unshareflags: syscall.CLONE_NEWNS} // Go makes its mounts private
	cmd.Env = append(os.Environ(), stuckChildEnv+"=1")
	out, err := cmd.CombinedOutput()
	t.Logf("child:\n%s", out)
	if err != nil || !strings.Contains(string(out), "--- PASS: TestStuckJournaldChild") {
		t.Fatalf("child: %v", err)
	}
}

// TestStuckJournaldChild: with journald's default socket stuck (nobody
// reads it, its queue full), each record's send gives up after the
// timeout and the record goes to the file, and no goroutine is left
// behind per timed-out send; a daemon's log entry gives up too.
func TestStuckJournaldChild(t *testing.T) {
	if os.Getenv(stuckChildEnv) != "1" {
		t.Skip("run by TestStuckJournaldLeaksNoGoroutine")
	}
	if err := syscall.Mount("tmpfs", "/run", "tmpfs", 0, "size=1m,mode=0755"); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(DefaultSocket), 0o755); err != nil {
		t.Fatal(err)
	}
	stuck := stuckSocket(t, DefaultSocket)
	defer stuck.Close()

	const sends = 50
	dir := t.TempDir()
	var stderr bytes.Buffer
	w := New(Options{File: filepath.Join(dir, "journal.jsonl"), Stderr: &stderr, Timeout: 20 * time.Millisecond})
	before := runtime.NumGoroutine()
	p := Port{VM: web01, Tap: "vnet3", MAC: "52:54:00:aa:00:01", Bridge: "br0"}
	for i := 0; i < sends; i++ {
		if err := w.Attached(context.Background(), p); err != nil {
			t.Fatal(err)
		}
	}
	after := runtime.NumGoroutine()
	t.Logf("goroutines: %d before %d timed-out sends, %d after", before, sends, after)
	if after-before >= sends/2 {
		t.Errorf("%d goroutines more after %d timed-out sends: one left per send", after-before, sends)
	}
	if n := len(fileRecords(t, w.File())); n != sends {
		t.Errorf("the file holds %d records, want %d", n, sends)
	}
	if !strings.Contains(stderr.String(), "no answer within 20ms") {
		t.Errorf("notice %q, want it to say the send timed out", stderr.String())
	}
	checkLogGivesUp(t)
}

// checkLogGivesUp: the daemon's log handler, on a stuck journald, returns
// an error after its timeout instead of blocking the daemon.
func checkLogGivesUp(t *testing.T) {
	var st unix.Stat_t
	if err := unix.Fstat(int(os.Stderr.Fd()), &st); err != nil {
		t.Fatal(err)
	}
	t.Setenv("JOURNAL_STREAM", fmt.Sprintf("%d:%d", st.Dev, st.Ino))
	h := LogHandler("vbx-test", os.Stderr)
	if _, ok := h.(*journalHandler); !ok {
		t.Fatalf("LogHandler = %T, want the journald handler", h)
	}
	done := make(chan error, 1)
	go func() {
		done <- h.Handle(context.Background(), slog.NewRecord(time.Now(), slog.LevelWarn, "stuck", 0))
	}()
	select {
	case err := <-done:
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Errorf("log entry to a stuck journald: %v, want a deadline error", err)
		}
	case <-time.After(30 * time.Second):
		t.Errorf("a log entry to a stuck journald still blocks after 30 s")
	}
}

// stuckSocket listens on a unixgram socket at path that nobody reads, and
// fills its queue until a send blocks.
func stuckSocket(t *testing.T, path string) *net.UnixConn {
	t.Helper()
	l, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.Dial("unixgram", path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	msg := []byte("MESSAGE=filler\n")
	for n := 0; ; n++ {
		c.SetWriteDeadline(time.Now().Add(50 * time.Millisecond))
		if _, err := c.Write(msg); errors.Is(err, os.ErrDeadlineExceeded) {
			t.Logf("the socket's queue is full after %d datagrams", n)
			return l
		} else if err != nil || n > 1<<20 {
			t.Fatalf("filling the socket: %v after %d datagrams", err, n)
		}
	}
}
