package main

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
	"syscall"
	"time"
)

// The journald the hook in the lab writes to: the machine's own when one
// answers (a Debian box booted with systemd), else one the demo starts.
const (
	journalSocket = "/run/systemd/journal/socket"
	journalRunDir = "/run/systemd/journal"
	// The locks of internal/journaltest: test binaries and the demo share a
	// journald that one of them started, and the one that started it waits
	// for the others before stopping it.
	journalStartLock = "/run/lock/virtbridge-journaltest.start"
	journalUsersLock = "/run/lock/virtbridge-journaltest.users"
	// keptJournald records the journald a demo run with --keep left
	// running ("PID STARTTIME"), for --down.
	keptJournald = "/run/lock/virtbridge-demo.journald"
)

var journaldPaths = []string{"/lib/systemd/systemd-journald", "/usr/lib/systemd/systemd-journald"}

// journald is the demo's hold on a journald.
type journald struct {
	users  *os.File   // shared lock held while the demo uses journald
	cmd    *exec.Cmd  // non-nil when the demo started it
	exited chan error // the started journald's exit
}

// ensureJournald returns a hold on a journald that answers, starting one
// when none does. It returns nil, nil where systemd-journald is not
// installed: the hook then writes its records to the lab's JSON-lines file.
// A journald started for a --keep run outlives the demo; otherwise it dies
// with the demo, even a killed one.
func ensureJournald(keep bool) (*journald, error) {
	bin := ""
	for _, p := range journaldPaths {
		if _, err := os.Stat(p); err == nil {
			bin = p
		}
	}
	if bin == "" && !journalAnswers() {
		return nil, nil
	}
	start, err := flockFile(journalStartLock, syscall.LOCK_EX, 2*time.Minute)
	if err != nil {
		return nil, err
	}
	defer start.Close()
	j := &journald{}
	if j.users, err = flockFile(journalUsersLock, syscall.LOCK_SH, 2*time.Minute); err != nil {
		return nil, err
	}
	if journalAnswers() {
		return j, nil
	}
	if err := os.MkdirAll(journalRunDir, 0o755); err != nil {
		j.users.Close()
		return nil, fmt.Errorf("starting journald: %w", err)
	}
	if err := j.start(bin, keep); err != nil {
		j.users.Close()
		return nil, err
	}
	if keep {
		st, err := procStartTime(j.cmd.Process.Pid)
		if err == nil {
			err = os.WriteFile(keptJournald, fmt.Appendf(nil, "%d %d\n", j.cmd.Process.Pid, st), 0o644)
		}
		if err != nil {
			return j, fmt.Errorf("recording the kept journald: %w", err)
		}
	}
	return j, nil
}

// start runs bin from a goroutine locked to its thread: the parent-death
// signal comes when that thread exits, which is when the demo dies.
func (j *journald) start(bin string, keep bool) error {
	started := make(chan error, 1)
	j.exited = make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with the goroutine
		cmd := exec.Command(bin)
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		if !keep {
			cmd.SysProcAttr.Pdeathsig = syscall.SIGTERM
		}
		if err := cmd.Start(); err != nil {
			started <- fmt.Errorf("starting %s: %w", bin, err)
			return
		}
		j.cmd = cmd
		started <- nil
		j.exited <- cmd.Wait()
	}()
	if err := <-started; err != nil {
		return err
	}
	for deadline := time.Now().Add(10 * time.Second); !journalAnswers(); {
		select {
		case err := <-j.exited:
			j.cmd = nil
			return fmt.Errorf("%s exited at start: %v", bin, err)
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			j.stop()
			return fmt.Errorf("%s does not answer on %s after 10 s", bin, journalSocket)
		}
	}
	return nil
}

// started reports whether the demo started this journald.
func (j *journald) started() bool { return j != nil && j.cmd != nil }

// release gives the hold up; a journald the demo started is stopped by its
// pid once no test binary uses it any more. Idempotent.
func (j *journald) release(say func(string, ...any)) error {
	if j == nil || j.users == nil {
		return nil
	}
	defer func() { j.users.Close(); j.users = nil }()
	if j.cmd == nil {
		return nil
	}
	start, err := flockFile(journalStartLock, syscall.LOCK_EX, 2*time.Minute)
	if err != nil {
		return err
	}
	defer start.Close()
	if syscall.Flock(int(j.users.Fd()), syscall.LOCK_EX|syscall.LOCK_NB) != nil {
		say("waiting for test binaries that use the demo's journald to finish")
		if err := flockWait(j.users, syscall.LOCK_EX, 10*time.Minute); err != nil {
			return err
		}
	}
	err = j.stop()
	// Nobody else answered on the socket when the demo started journald:
	// leave none of its sockets behind.
	os.RemoveAll(journalRunDir)
	return err
}

// stop ends the started journald: SIGTERM, SIGKILL after 10 s.
func (j *journald) stop() error {
	if j.cmd == nil {
		return nil
	}
	pid := j.cmd.Process.Pid
	// A --keep run that failed stops its journald: the record of it goes too.
	defer func() {
		if b, err := os.ReadFile(keptJournald); err == nil && strings.HasPrefix(string(b), strconv.Itoa(pid)+" ") && j.cmd == nil {
			os.Remove(keptJournald)
		}
	}()
	_ = j.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-j.exited:
		j.cmd = nil
		return nil
	case <-time.After(10 * time.Second):
	}
	_ = j.cmd.Process.Kill()
	select {
	case <-j.exited:
		j.cmd = nil
		return nil
	case <-time.After(10 * time.Second):
		return fmt.Errorf("journald (pid %d) still running after SIGKILL", pid)
	}
}

// stopKeptJournald stops the journald a --keep run left, if it still runs,
// once no test binary uses it.
func stopKeptJournald() error {
	b, err := os.ReadFile(keptJournald)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	var pid int
	var st uint64
	if _, err := fmt.Sscanf(string(b), "%d %d", &pid, &st); err != nil {
		return fmt.Errorf("reading %s: %w", keptJournald, err)
	}
	if processIs(pid, st) {
		users, err := flockFile(journalUsersLock, syscall.LOCK_EX, 10*time.Minute)
		if err != nil {
			return err
		}
		defer users.Close()
		_ = syscall.Kill(pid, syscall.SIGTERM)
		for i := 0; i < 100 && processIs(pid, st); i++ {
			time.Sleep(100 * time.Millisecond)
		}
		if processIs(pid, st) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		os.RemoveAll(journalRunDir)
	}
	return os.Remove(keptJournald)
}

// processIs reports whether pid is still the process that started at start
// and has not exited: an orphan whose parent does not reap it stays a
// zombie, which has exited all the same.
func processIs(pid int, start uint64) bool {
	st, state, err := procStat(pid)
	return err == nil && st == start && state != "Z"
}

// procStartTime returns the start time of pid in clock ticks since boot
// (field 22 of /proc/PID/stat): with the pid it names a process uniquely.
func procStartTime(pid int) (uint64, error) {
	st, _, err := procStat(pid)
	return st, err
}

// procStat returns fields 22 (start time) and 3 (state) of /proc/PID/stat.
func procStat(pid int) (uint64, string, error) {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return 0, "", err
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 20 {
		return 0, "", fmt.Errorf("parsing /proc/%d/stat", pid)
	}
	st, err := strconv.ParseUint(f[19], 10, 64)
	return st, f[0], err
}

func journalAnswers() bool {
	c, err := net.Dial("unixgram", journalSocket)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

func flockFile(path string, how int, wait time.Duration) (*os.File, error) {
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
			return fmt.Errorf("locking %s: still held after %v", f.Name(), wait)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
