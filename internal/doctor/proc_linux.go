package doctor

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// daemonNames are the libvirt daemons that run qemu hooks.
var daemonNames = []string{"libvirtd", "virtqemud"}

// userHZ is the unit of process start times in /proc/PID/stat; the kernel
// fixes it at 100 for user space whatever its internal tick rate.
const userHZ = 100

// ProcDaemons finds libvirtd and virtqemud under a proc file system, keeping
// the processes in the caller's network namespace: a daemon elsewhere (a
// test lab, a container) runs hooks that change other links.
type ProcDaemons struct {
	// Root is the proc file system; "" means /proc.
	Root string
	// Now is the current time; nil means time.Now.
	Now func() time.Time
}

var _ Daemons = ProcDaemons{}

// Daemons returns the daemons with their start times, sorted by pid.
func (p ProcDaemons) Daemons() ([]Daemon, error) {
	root := p.Root
	if root == "" {
		root = "/proc"
	}
	now := time.Now
	if p.Now != nil {
		now = p.Now
	}
	self, err := os.Readlink(filepath.Join(root, "self", "ns", "net"))
	if err != nil {
		return nil, fmt.Errorf("reading own network namespace: %w", err)
	}
	boot, err := bootTime(root, now())
	if err != nil {
		return nil, err
	}
	ents, err := os.ReadDir(root)
	if err != nil {
		return nil, fmt.Errorf("listing processes: %w", err)
	}
	var out []Daemon
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		d, ok, err := daemonAt(root, pid, self, boot)
		if err != nil {
			return nil, err
		}
		if ok {
			out = append(out, d)
		}
	}
	slices.SortFunc(out, func(a, b Daemon) int { return a.PID - b.PID })
	return out, nil
}

// daemonAt reads process pid; ok is false for other programs, other
// namespaces and processes that exited meanwhile.
func daemonAt(root string, pid int, selfNS string, boot time.Time) (Daemon, bool, error) {
	dir := filepath.Join(root, strconv.Itoa(pid))
	comm, err := os.ReadFile(filepath.Join(dir, "comm"))
	if err != nil || !slices.Contains(daemonNames, strings.TrimSpace(string(comm))) {
		return Daemon{}, false, nil
	}
	ns, err := os.Readlink(filepath.Join(dir, "ns", "net"))
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, os.ErrNotExist) {
		return Daemon{}, false, nil
	}
	if err != nil {
		return Daemon{}, false, fmt.Errorf("reading network namespace of pid %d: %w", pid, err)
	}
	if ns != selfNS {
		return Daemon{}, false, nil
	}
	stat, err := os.ReadFile(filepath.Join(dir, "stat"))
	if err != nil {
		return Daemon{}, false, nil
	}
	ticks, err := startTicks(string(stat))
	if err != nil {
		return Daemon{}, false, fmt.Errorf("pid %d: %w", pid, err)
	}
	started := boot.Add(time.Duration(ticks) * time.Second / userHZ)
	return Daemon{Name: strings.TrimSpace(string(comm)), PID: pid, Started: started}, true, nil
}

// startTicks returns field 22 of /proc/PID/stat, the start time in clock
// ticks after boot. The command name (field 2) may hold spaces and
// parentheses, so fields are counted after its last ')'.
func startTicks(stat string) (uint64, error) {
	i := strings.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, fmt.Errorf("unexpected /proc stat line %q", stat)
	}
	f := strings.Fields(stat[i+1:])
	if len(f) < 20 {
		return 0, fmt.Errorf("unexpected /proc stat line %q", stat)
	}
	return strconv.ParseUint(f[19], 10, 64) // field 22 is the 20th after the name
}

// bootTime is when the machine booted, from /proc/uptime (boot-time clock,
// which start times use too), to the hundredth of a second.
func bootTime(root string, now time.Time) (time.Time, error) {
	b, err := os.ReadFile(filepath.Join(root, "uptime"))
	if err != nil {
		return time.Time{}, fmt.Errorf("reading uptime: %w", err)
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return time.Time{}, fmt.Errorf("unexpected /proc/uptime %q", b)
	}
	up, err := strconv.ParseFloat(f[0], 64)
	if err != nil {
		return time.Time{}, fmt.Errorf("unexpected /proc/uptime %q", b)
	}
	return now.Add(-time.Duration(up * float64(time.Second))), nil
}
