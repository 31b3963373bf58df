// Package journald shares one systemd-journald between the processes that
// need one on a machine without systemd as PID 1: the test binaries (through
// internal/testenv/journaltest) and the demo (cmd/vbdemo). Join reuses the journald
// that answers on Socket, or starts one; Release stops it, by its pid, only
// once no other process uses it.
//
// The protocol: StartLock (exclusive) serialises starting and stopping
// journald; every user holds a shared lock on UsersLock while it uses
// journald, and the process that started journald converts its own into an
// exclusive one, which waits until the others are done, before stopping it.
package journald

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
)

// Socket is journald's native socket.
const Socket = "/run/systemd/journal/socket"

// RunDir holds journald's sockets.
const RunDir = "/run/systemd/journal"

// The lock files of the protocol. Their names are those of the first user,
// internal/testenv/journaltest: every process that shares journald must use these.
const (
	StartLock = "/run/lock/virtbridge-journaltest.start"
	UsersLock = "/run/lock/virtbridge-journaltest.users"
)

// Paths are the systemd-journald binaries probed (Debian 12 package systemd).
var Paths = []string{"/lib/systemd/systemd-journald", "/usr/lib/systemd/systemd-journald"}

// How long Join waits for each lock, and Release or StopKept for each lock.
const (
	joinWait    = 2 * time.Minute
	releaseWait = 10 * time.Minute
)

// Binary returns the first of Paths that exists, or "" when none does.
func Binary() string {
	for _, p := range Paths {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return ""
}

// Answers reports whether a journald answers on socket.
func Answers(socket string) bool {
	c, err := net.Dial("unixgram", socket)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// Options says how Join starts journald when none answers.
type Options struct {
	// Bin is the systemd-journald to start: Binary() when empty.
	Bin string
	// LogPattern, when set, names (as os.CreateTemp does) a temporary file
	// that gets journald's output. It is quoted when journald fails to
	// start, removed once Stop stopped journald, and kept when journald
	// exits on its own. When empty, journald's output is discarded.
	LogPattern string
	// Keep lets a journald that Join starts outlive this process; without
	// it journald gets SIGTERM when this process dies, even when killed.
	Keep bool
}

// Hold is one process's use of the shared journald.
type Hold struct {
	users    *os.File   // shared lock on UsersLock while in use
	cmd      *exec.Cmd  // the journald this hold started, until it exited
	exited   chan error // its exit
	stopping atomic.Bool
}

// Join joins the users of the journald answering on Socket, or starts one
// when none answers. Each Join needs a Release.
func Join(opts Options) (*Hold, error) {
	start, err := lock(StartLock, syscall.LOCK_EX, joinWait)
	if err != nil {
		return nil, err
	}
	defer start.Close()
	h := &Hold{}
	if h.users, err = lock(UsersLock, syscall.LOCK_SH, joinWait); err != nil {
		return nil, err
	}
	if Answers(Socket) {
		return h, nil
	}
	if err := h.start(opts); err != nil {
		h.users.Close()
		return nil, err
	}
	return h, nil
}

// start starts journald from a goroutine locked to its OS thread, so that
// the parent-death signal (sent when the forking thread exits) comes only
// when this process dies.
func (h *Hold) start(opts Options) error {
	bin := opts.Bin
	if bin == "" {
		if bin = Binary(); bin == "" {
			return fmt.Errorf("systemd-journald not found in %s (apt-get install systemd)", strings.Join(Paths, " or "))
		}
	}
	if err := os.MkdirAll(RunDir, 0o755); err != nil {
		return fmt.Errorf("creating journald's directory: %w", err)
	}
	var logf *os.File
	if opts.LogPattern != "" {
		var err error
		if logf, err = os.CreateTemp("", opts.LogPattern); err != nil {
			return fmt.Errorf("creating journald's log: %w", err)
		}
	}
	started := make(chan error, 1)
	h.exited = make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread dies with the goroutine, after journald
		cmd := exec.Command(bin)
		if logf != nil {
			cmd.Stdout, cmd.Stderr = logf, logf
		}
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		if !opts.Keep {
			cmd.SysProcAttr.Pdeathsig = syscall.SIGTERM
		}
		if err := cmd.Start(); err != nil {
			started <- fmt.Errorf("starting %s: %w", bin, err)
			return
		}
		h.cmd = cmd
		started <- nil
		err := cmd.Wait()
		if logf != nil {
			logf.Close()
			if h.stopping.Load() {
				os.Remove(logf.Name())
			}
		}
		h.exited <- err
	}()
	if err := <-started; err != nil {
		return err
	}
	for deadline := time.Now().Add(10 * time.Second); !Answers(Socket); {
		select {
		case err := <-h.exited:
			h.cmd = nil
			return fmt.Errorf("%s exited at start: %v%s", bin, err, logText(logf))
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			h.Stop()
			return fmt.Errorf("%s does not answer on %s after 10s%s", bin, Socket, logText(logf))
		}
	}
	return nil
}

// logText returns what journald wrote to logf, as the tail of an error.
func logText(logf *os.File) string {
	if logf == nil {
		return ""
	}
	out, _ := os.ReadFile(logf.Name())
	return ": " + string(out)
}

// Pid returns the pid of the journald this hold started and has not seen
// exit, or 0. Safe on a nil Hold.
func (h *Hold) Pid() int {
	if h == nil || h.cmd == nil {
		return 0
	}
	return h.cmd.Process.Pid
}

// Release leaves the users of journald. When this hold started journald,
// it first waits until no other process uses it, calling busy (when not
// nil) once if it has to wait, then stops it and removes RunDir. When the
// wait fails it returns the error and leaves journald running (Stop ends
// it regardless). Idempotent; safe on a nil Hold.
func (h *Hold) Release(busy func()) error {
	if h == nil || h.users == nil {
		return nil
	}
	defer func() { h.users.Close(); h.users = nil }()
	if h.cmd == nil {
		return nil
	}
	start, err := lock(StartLock, syscall.LOCK_EX, releaseWait)
	if err != nil {
		return err
	}
	defer start.Close()
	// Converts our shared lock: waits until no other process uses journald.
	if syscall.Flock(int(h.users.Fd()), syscall.LOCK_EX|syscall.LOCK_NB) != nil {
		if busy != nil {
			busy()
		}
		if err := flockWait(h.users, syscall.LOCK_EX, releaseWait); err != nil {
			return err
		}
	}
	err = h.Stop()
	// No journald answered when this hold started one: leave none of its
	// sockets behind (a crashed user may have left dead ones too).
	os.RemoveAll(RunDir)
	return err
}

// Stop stops the journald this hold started, without waiting for the other
// users: SIGTERM (journald closes its files cleanly), then SIGKILL after
// 10s. Idempotent; safe on a nil Hold.
func (h *Hold) Stop() error {
	if h == nil || h.cmd == nil {
		return nil
	}
	pid := h.cmd.Process.Pid
	h.stopping.Store(true)
	_ = h.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-h.exited:
		h.cmd = nil
		return nil
	case <-time.After(10 * time.Second):
	}
	_ = h.cmd.Process.Kill()
	select {
	case <-h.exited:
		h.cmd = nil
		return nil
	case <-time.After(10 * time.Second):
		return fmt.Errorf("journald (pid %d) still running after SIGKILL", pid)
	}
}

// StopKept stops the journald that a process which joined with Keep
// started and left running, named by its pid and ProcStartTime, once no
// other process uses it, and removes RunDir. It does nothing when that
// process has exited (or the pid names another one).
func StopKept(pid int, start uint64) error {
	if !processIs(pid, start) {
		return nil
	}
	users, err := lock(UsersLock, syscall.LOCK_EX, releaseWait)
	if err != nil {
		return err
	}
	defer users.Close()
	_ = syscall.Kill(pid, syscall.SIGTERM)
	for i := 0; i < 100 && processIs(pid, start); i++ {
		time.Sleep(100 * time.Millisecond)
	}
	if processIs(pid, start) {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	os.RemoveAll(RunDir)
	return nil
}

// processIs reports whether pid is still the process that started at start
// and has not exited: an orphan whose parent does not reap it stays a
// zombie, which has exited all the same.
func processIs(pid int, start uint64) bool {
	st, state, err := procStat(pid)
	return err == nil && st == start && state != "Z"
}

// ProcStartTime returns the start time of pid in clock ticks since boot
// (field 22 of /proc/PID/stat): with the pid it names a process uniquely.
func ProcStartTime(pid int) (uint64, error) {
	st, _, err := procStat(pid)
	return st, err
}

// procStat returns fields 22 (start time) and 3 (state) of /proc/PID/stat.
func procStat(pid int) (uint64, string, error) {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return 0, "", err
	}
	// comm (field 2) may hold spaces and parentheses: split after its end.
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 20 {
		return 0, "", fmt.Errorf("parsing /proc/%d/stat", pid)
	}
	st, err := strconv.ParseUint(f[19], 10, 64)
	return st, f[0], err
}

// lock opens (creating) the lock file path and locks it how, waiting at
// most wait.
func lock(path string, how int, wait time.Duration) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("opening lock %s: %w", path, err)
	}
	if err := flockWait(f, how, wait); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

func flockWait(f *os.File, how int, wait time.Duration) error {
	for deadline := time.Now().Add(wait); ; {
		err := syscall.Flock(int(f.Fd()), how|syscall.LOCK_NB)
		if err == nil {
			return nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			return fmt.Errorf("locking %s: %w", f.Name(), err)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("locking %s: still held by another user of journald after %v", f.Name(), wait)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
