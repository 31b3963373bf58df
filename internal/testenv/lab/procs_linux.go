package lab

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// proc is a process the lab started. It runs in its own process group so
// that a signal reaches its children too, and is reaped by a goroutine.
type proc struct {
	name string
	cmd  *exec.Cmd
	done chan struct{}
	err  error // valid once done is closed
	log  *os.File
}

// startProc starts cmd in a new process group. log, when non-nil, is closed
// once the process has exited.
func startProc(name string, cmd *exec.Cmd, log *os.File) (*proc, error) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		if log != nil {
			log.Close()
		}
		return nil, fmt.Errorf("starting %s %q: %w", name, cmd.Args, err)
	}
	p := &proc{name: name, cmd: cmd, done: make(chan struct{}), log: log}
	go func() {
		p.err = cmd.Wait()
		if p.log != nil {
			p.log.Close()
		}
		close(p.done)
	}()
	return p, nil
}

func (p *proc) pid() int {
	if p == nil {
		return 0
	}
	return p.cmd.Process.Pid
}

func (p *proc) exited() bool {
	if p == nil {
		return true
	}
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM to the process group, waits up to grace, then sends
// SIGKILL. It returns once the process is reaped. Stopping a nil or exited
// proc is a no-op.
func (p *proc) stop(grace time.Duration) error {
	if p == nil || p.exited() {
		return nil
	}
	// Setpgid made the process the leader of a group named by its pid; the
	// process is not reaped yet (done is open), so the pid is still ours.
	_ = syscall.Kill(-p.pid(), syscall.SIGTERM)
	select {
	case <-p.done:
		return nil
	case <-time.After(grace):
	}
	_ = syscall.Kill(-p.pid(), syscall.SIGKILL)
	select {
	case <-p.done:
		return nil
	case <-time.After(10 * time.Second):
		return fmt.Errorf("stopping %s (pid %d): still running after SIGKILL", p.name, p.pid())
	}
}

// netnsPIDs lists the processes whose network namespace is the one bound at
// nsPath (/run/netns/NAME). It reads /proc, as `ip netns pids` does.
func netnsPIDs(nsPath string) ([]int, error) {
	var want syscall.Stat_t
	if err := syscall.Stat(nsPath, &want); err != nil {
		return nil, fmt.Errorf("reading namespace %s: %w", nsPath, err)
	}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, fmt.Errorf("listing processes: %w", err)
	}
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		var st syscall.Stat_t
		// Fails for processes that have exited meanwhile and for zombies,
		// which hold no namespace any more.
		if err := syscall.Stat(filepath.Join("/proc", e.Name(), "ns", "net"), &st); err != nil {
			continue
		}
		if st.Dev == want.Dev && st.Ino == want.Ino {
			pids = append(pids, pid)
		}
	}
	return pids, nil
}

// killNetns stops every process in the network namespace at nsPath except
// keep (0 keeps none): SIGTERM, up to grace to exit, then SIGKILL. It
// returns an error naming the processes still there after that. A missing
// namespace has no processes.
func killNetns(nsPath string, grace time.Duration, keep int) error {
	if _, err := os.Stat(nsPath); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	list := func() ([]int, error) {
		pids, err := netnsPIDs(nsPath)
		return slices.DeleteFunc(pids, func(p int) bool { return p == keep }), err
	}
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGKILL} {
		pids, err := list()
		if err != nil || len(pids) == 0 {
			return err
		}
		for _, pid := range pids {
			_ = syscall.Kill(pid, sig)
		}
		deadline := time.Now().Add(grace)
		for len(pids) > 0 && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
			if pids, err = list(); err != nil {
				return err
			}
		}
	}
	pids, err := list()
	if err != nil || len(pids) == 0 {
		return err
	}
	return fmt.Errorf("processes left in %s after SIGKILL: %s", nsPath, describePIDs(pids))
}

func describePIDs(pids []int) string {
	var b strings.Builder
	for i, pid := range pids {
		if i > 0 {
			b.WriteString(", ")
		}
		comm, _ := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "comm"))
		fmt.Fprintf(&b, "%d (%s)", pid, strings.TrimSpace(string(comm)))
	}
	return b.String()
}

// procStartTime returns the start time of pid in clock ticks since boot
// (field 22 of /proc/PID/stat), which with the pid names a process uniquely.
func procStartTime(pid int) (uint64, error) {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return 0, fmt.Errorf("reading stat of pid %d: %w", pid, err)
	}
	// comm (field 2) may hold spaces and parentheses: split after its end.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, fmt.Errorf("parsing stat of pid %d: no comm", pid)
	}
	f := strings.Fields(s[i+1:])
	// f[0] is field 3 (state), so field 22 is f[19].
	if len(f) < 20 {
		return 0, fmt.Errorf("parsing stat of pid %d: %d fields", pid, len(f)+2)
	}
	v, err := strconv.ParseUint(f[19], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("parsing stat of pid %d: %w", pid, err)
	}
	return v, nil
}
