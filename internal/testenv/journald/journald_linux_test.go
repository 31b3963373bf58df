package journald

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestLocks checks the protocol's two locks on a private file: users share
// the lock, and the one converting its own to exclusive waits for the
// others to leave.
func TestLocks(t *testing.T) {
	path := filepath.Join(t.TempDir(), "users")
	a, err := lock(path, syscall.LOCK_SH, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := lock(path, syscall.LOCK_SH, time.Second)
	if err != nil {
		t.Fatalf("a second user cannot share the lock: %v", err)
	}
	if err := flockWait(a, syscall.LOCK_EX, 100*time.Millisecond); err == nil || !strings.Contains(err.Error(), "still held") {
		t.Fatalf("converting to exclusive while another user holds the lock = %v, want a timeout", err)
	}
	b.Close()
	if err := flockWait(a, syscall.LOCK_EX, time.Second); err != nil {
		t.Fatalf("converting to exclusive once alone: %v", err)
	}
}

func TestProcessIs(t *testing.T) {
	st, err := ProcStartTime(os.Getpid())
	if err != nil || st == 0 {
		t.Fatalf("ProcStartTime(self) = %d, %v", st, err)
	}
	if !processIs(os.Getpid(), st) || processIs(os.Getpid(), st+1) {
		t.Fatalf("processIs(self) does not match its own start time %d only", st)
	}
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	if _, err := ProcStartTime(cmd.Process.Pid); err == nil {
		t.Fatalf("ProcStartTime of a reaped process %d succeeded", cmd.Process.Pid)
	}
	if err := StopKept(cmd.Process.Pid, ^uint64(0)); err != nil {
		t.Fatalf("StopKept of a gone process = %v, want nil", err)
	}
}

func TestAnswers(t *testing.T) {
	if Answers(filepath.Join(t.TempDir(), "no-socket")) {
		t.Fatal("Answers on a missing socket")
	}
	var h *Hold
	if h.Pid() != 0 || h.Release(nil) != nil || h.Stop() != nil {
		t.Fatal("a nil Hold is not inert")
	}
}
