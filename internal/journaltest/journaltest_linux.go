// Package journaltest gives tests a real systemd-journald on a machine
// without systemd as PID 1: it reuses one that already answers on
// /run/systemd/journal/socket, or starts one and stops it (by its pid) when
// the test binary ends. Test packages that use it call Main from TestMain.
//
// Several test binaries (go test runs packages in parallel) share one
// journald: a lock file serialises starting it, and a shared lock held by
// every user makes the binary that started it wait, before stopping it,
// until the others are done.
package journaltest

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// Socket is journald's native socket.
const Socket = "/run/systemd/journal/socket"

// Binaries probed for journald (Debian 12 package systemd).
var journaldPaths = []string{"/lib/systemd/systemd-journald", "/usr/lib/systemd/systemd-journald"}

const (
	startLock = "/run/lock/virtbridge-journaltest.start"
	usersLock = "/run/lock/virtbridge-journaltest.users"
	runDir    = "/run/systemd/journal"
)

// Journald is the journald that tests write to.
type Journald struct {
	Socket string
	Pid    int  // 0 when it was already running
	Owned  bool // this test binary started it and stops it in Main
}

var (
	once     sync.Once
	shared   *Journald
	skip     string // why tests must skip, if they must
	fail     error  // why journald could not be started
	users    *os.File
	proc     *exec.Cmd
	exited   chan error
	stopping atomic.Bool // terminate asked journald to exit
)

// Main runs the tests and then stops journald if this binary started it.
// Use it as `func TestMain(m *testing.M) { os.Exit(journaltest.Main(m)) }`.
func Main(m *testing.M) int {
	code := m.Run()
	if err := stop(); err != nil {
		fmt.Fprintln(os.Stderr, "journaltest:", err)
		if code == 0 {
			code = 1
		}
	}
	return code
}

// Require returns a running journald, starting one if none answers. It
// skips the test, saying why, when not root or when systemd-journald or
// journalctl is not installed (Debian package: systemd).
func Require(t testing.TB) *Journald {
	t.Helper()
	once.Do(setup)
	if skip != "" {
		t.Skip(skip)
	}
	if fail != nil {
		t.Fatalf("starting journald: %v", fail)
	}
	return shared
}

func setup() {
	if os.Geteuid() != 0 {
		skip = "skipped: needs root to run systemd-journald (run `sudo make test`)"
		return
	}
	bin := ""
	for _, p := range journaldPaths {
		if _, err := os.Stat(p); err == nil {
			bin = p
			break
		}
	}
	if bin == "" {
		skip = "skipped: systemd-journald not found in " + strings.Join(journaldPaths, " or ") + " (apt-get install systemd)"
		return
	}
	if _, err := exec.LookPath("journalctl"); err != nil {
		skip = "skipped: journalctl not found (apt-get install systemd)"
		return
	}
	shared, fail = acquire(bin)
}

// acquire joins the users of a running journald, or starts one.
func acquire(bin string) (*Journald, error) {
	start, err := lock(startLock, syscall.LOCK_EX, 2*time.Minute)
	if err != nil {
		return nil, err
	}
	defer start.Close()
	users, err = lock(usersLock, syscall.LOCK_SH, 2*time.Minute)
	if err != nil {
		return nil, err
	}
	if answers(Socket) {
		return &Journald{Socket: Socket}, nil
	}
	if err := os.MkdirAll(runDir, 0o755); err != nil {
		return nil, err
	}
	pid, err := startJournald(bin)
	if err != nil {
		return nil, err
	}
	return &Journald{Socket: Socket, Pid: pid, Owned: true}, nil
}

// startJournald starts bin from a goroutine locked to its OS thread, so
// that the parent-death signal (sent when the forking thread exits) comes
// only when this test binary dies: a crashed test leaves no journald.
func startJournald(bin string) (int, error) {
	logf, err := os.CreateTemp("", "journaltest-journald-*.log")
	if err != nil {
		return 0, err
	}
	started := make(chan error, 1)
	exited = make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread dies with the goroutine, after journald
		cmd := exec.Command(bin)
		cmd.Stdout, cmd.Stderr = logf, logf
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		proc = cmd
		started <- nil
		err := cmd.Wait()
		logf.Close()
		if stopping.Load() {
			os.Remove(logf.Name()) // kept when journald exited on its own
		}
		exited <- err
	}()
	if err := <-started; err != nil {
		return 0, fmt.Errorf("starting %s: %w", bin, err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for !answers(Socket) {
		select {
		case err := <-exited:
			out, _ := os.ReadFile(logf.Name())
			return 0, fmt.Errorf("%s exited at start: %v: %s", bin, err, out)
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			terminate()
			out, _ := os.ReadFile(logf.Name())
			return 0, fmt.Errorf("%s does not answer on %s after 10s: %s", bin, Socket, out)
		}
	}
	return proc.Process.Pid, nil
}

// stop leaves the users; the binary that started journald then waits for
// the other users to leave and stops it.
func stop() error {
	if users == nil {
		return nil
	}
	if shared == nil || !shared.Owned {
		users.Close()
		return nil
	}
	start, err := lock(startLock, syscall.LOCK_EX, 10*time.Minute)
	if err == nil {
		defer start.Close()
		// Converts our shared lock: waits until no other binary uses journald.
		err = flockWait(users, syscall.LOCK_EX, 10*time.Minute)
	}
	defer users.Close()
	terr := terminate()
	// No journald answered when we started ours: leave none of its dead
	// sockets behind (a crashed test binary may have left them).
	os.RemoveAll(runDir)
	return errors.Join(err, terr)
}

// terminate stops the journald we started: SIGTERM (journald closes its
// files cleanly), then SIGKILL after 10s.
func terminate() error {
	if proc == nil {
		return nil
	}
	pid := proc.Process.Pid
	stopping.Store(true)
	proc.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
		return nil
	case <-time.After(10 * time.Second):
	}
	proc.Process.Kill()
	select {
	case <-exited:
		return nil
	case <-time.After(10 * time.Second):
		return fmt.Errorf("journald (pid %d) still running after SIGKILL", pid)
	}
}

func answers(socket string) bool {
	c, err := net.Dial("unixgram", socket)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

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
	deadline := time.Now().Add(wait)
	for {
		err := syscall.Flock(int(f.Fd()), how|syscall.LOCK_NB)
		if err == nil {
			return nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			return fmt.Errorf("locking %s: %w", f.Name(), err)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("locking %s: still held by another test binary after %v", f.Name(), wait)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Entries returns the journal entries matching the journalctl matches
// (FIELD=value, ANDed across fields, ORed within one), as field → value.
// Values journalctl prints as byte arrays are decoded.
func (j *Journald) Entries(t testing.TB, matches ...string) []map[string]string {
	t.Helper()
	args := append([]string{"-o", "json", "--all", "--no-pager", "-q"}, matches...)
	cmd := exec.Command("journalctl", args...)
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	out, err := cmd.Output()
	if err != nil {
		var stderr []byte
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = ee.Stderr
		}
		t.Fatalf("journalctl %s: %v: %s", strings.Join(args, " "), err, stderr)
	}
	var entries []map[string]string
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if line == "" {
			continue
		}
		var raw map[string]any
		if err := json.Unmarshal([]byte(line), &raw); err != nil {
			t.Fatalf("journalctl printed a line that is not JSON: %v: %s", err, line)
		}
		e := make(map[string]string, len(raw))
		for k, v := range raw {
			e[k] = value(v)
		}
		entries = append(entries, e)
	}
	return entries
}

func value(v any) string {
	switch v := v.(type) {
	case string:
		return v
	case []any:
		b := make([]byte, 0, len(v))
		for _, x := range v {
			f, ok := x.(float64)
			if !ok {
				return fmt.Sprint(v)
			}
			b = append(b, byte(f))
		}
		return string(b)
	}
	return fmt.Sprint(v)
}

// WaitEntries polls (journald writes what it receives asynchronously) until
// at least n entries match, for at most 10s, and returns them.
func (j *Journald) WaitEntries(t testing.TB, n int, matches ...string) []map[string]string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		e := j.Entries(t, matches...)
		if len(e) >= n || time.Now().After(deadline) {
			if len(e) < n {
				t.Fatalf("journalctl %s: %d entries after 10s, want %d", strings.Join(matches, " "), len(e), n)
			}
			return e
		}
		time.Sleep(50 * time.Millisecond)
	}
}
