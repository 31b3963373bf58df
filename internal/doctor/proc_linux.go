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
	procs, err := procsHere(root, daemonNames)
	if err != nil {
		return nil, err
	}
	boot, err := bootTime(root, now())
	if err != nil {
		return nil, err
	}
	var out []Daemon
	for _, pr := range procs {
		stat, err := os.ReadFile(filepath.Join(root, strconv.Itoa(pr.pid), "stat"))
		if err != nil {
			continue // exited meanwhile
		}
		ticks, err := startTicks(string(stat))
		if err != nil {
			return nil, fmt.Errorf("pid %d: %w", pr.pid, err)
		}
		started := boot.Add(time.Duration(ticks) * time.Second / userHZ)
		out = append(out, Daemon{Name: pr.name, PID: pr.pid, Started: started})
	}
	return out, nil
}

// proc is a process procsHere found.
type proc struct {
	pid  int
	name string // its comm
}

// procsHere returns the processes under the proc file system root whose
// command name is one of names and that run in the caller's network
// namespace (a process elsewhere — a test lab, a container — acts on
// other links), sorted by pid. Processes that exit meanwhile are left
// out. Read-only.
func procsHere(root string, names []string) ([]proc, error) {
	self, err := os.Readlink(filepath.Join(root, "self", "ns", "net"))
	if err != nil {
		return nil, fmt.Errorf("reading own network namespace: %w", err)
	}
	ents, err := os.ReadDir(root)
	if err != nil {
		return nil, fmt.Errorf("listing processes: %w", err)
	}
	var out []proc
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		dir := filepath.Join(root, e.Name())
		comm, err := os.ReadFile(filepath.Join(dir, "comm"))
		name := strings.TrimSpace(string(comm))
		if err != nil || !slices.Contains(names, name) {
			continue
		}
		ns, err := os.Readlink(filepath.Join(dir, "ns", "net"))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("reading network namespace of pid %d: %w", pid, err)
		}
		if ns == self {
			out = append(out, proc{pid: pid, name: name})
		}
	}
	slices.SortFunc(out, func(a, b proc) int { return a.pid - b.pid })
	return out, nil
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
