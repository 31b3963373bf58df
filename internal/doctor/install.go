package doctor

import (
	"debug/buildinfo"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"syscall"
	"time"
)

// DefaultHooksDir is libvirt's hook directory on distribution builds.
const DefaultHooksDir = "/etc/libvirt/hooks"

// hookPackage is the main package of virtbridge-hook, as Go records it in
// the binary's build information.
const hookPackage = "github.com/virtbridge/virtbridge/cmd/hook"

// reload is how libvirt is told to look for hooks again (SIGHUP).
const reload = "`systemctl reload libvirtd` (virtqemud on hosts with modular daemons)"

// reloadMargin absorbs the imprecision of a process start time computed
// from /proc (clock ticks since boot) against file times.
const reloadMargin = time.Second

// Daemon is a running libvirt daemon that runs qemu hooks: libvirtd, or
// the modular virtqemud.
type Daemon struct {
	Name    string
	PID     int
	Started time.Time
}

// Daemons finds the libvirt daemons whose hooks matter here: those in the
// network namespace under inspection.
type Daemons interface {
	Daemons() ([]Daemon, error)
}

// hookFile is one qemu hook libvirt would run.
type hookFile struct {
	path       string
	executable bool // a regular file with an execute bit: libvirt runs only those
	virtbridge bool // virtbridge-hook itself, or a script that calls it
	chain      string
	chainErr   string // what is wrong with the program the script calls
	changed    time.Time
}

// checkInstall reports whether libvirt runs virtbridge's hook: present at
// dir/qemu or in dir/qemu.d (libvirt ≥ 6.5 runs both), executable, and
// seen by the running daemon, which scans for hooks only when it starts or
// reloads (SIGHUP).
func checkInstall(r *Report, dir string, ds Daemons) {
	hooks, err := qemuHooks(dir)
	if err != nil {
		r.add(Finding{Section: SectionInstall, Check: "hook", Status: Fail, Object: dir, Message: err.Error(),
			Why: "the hooks cannot be checked", Fix: "run the doctor as root"})
		return
	}
	i := slices.IndexFunc(hooks, func(h hookFile) bool { return h.virtbridge })
	if i < 0 {
		noHook(r, dir, hooks)
		return
	}
	vb := hooks[i]
	f := Finding{Section: SectionInstall, Check: "hook", Object: vb.path, Status: OK, Message: "virtbridge's hook, executable"}
	if vb.chain != "" {
		f.Message = "executable, calls " + vb.chain
	}
	switch {
	case !vb.executable:
		f.Status, f.Message = Fail, "virtbridge's hook, but not an executable file"
		f.Why = "libvirt runs only executable hooks: it never calls virtbridge"
		f.Fix = fmt.Sprintf("chmod 0755 %s, then %s", vb.path, reload)
	case vb.chainErr != "":
		f.Status, f.Message = Fail, vb.chainErr
		f.Why = "the hook runs, but virtbridge does not: VM starts fail or land on unprepared bridges"
		f.Fix = "install virtbridge-hook where " + vb.path + " expects it"
	}
	r.add(f)
	for _, h := range hooks {
		if !h.virtbridge {
			r.add(Finding{Section: SectionInstall, Check: "hook-other", Status: OK, Object: h.path,
				Message: "another hook, not virtbridge's: libvirt runs it too (qemu first, then qemu.d/* in name order); a failure of it at prepare refuses the start"})
		}
	}
	if vb.executable && vb.chainErr == "" {
		checkDaemons(r, hooks, ds)
	}
}

func noHook(r *Report, dir string, hooks []hookFile) {
	why := "libvirt never calls virtbridge: VMs on a managed bridge fail to start (\"Cannot get interface MTU\") or land on a bridge without uplink or firewall rules"
	main := filepath.Join(dir, "qemu")
	f := Finding{Section: SectionInstall, Check: "hook", Status: Fail, Object: main, Why: why,
		Message: "no qemu hook installed",
		Fix:     "run `virtbridge install-hook --reload`"}
	if len(hooks) > 0 {
		f.Object = hooks[0].path
		f.Message = "another hook is installed, and none of virtbridge's"
		f.Fix = "run `virtbridge install-hook --reload`: it keeps the other hook in " +
			filepath.Join(dir, "qemu.d") + ", where libvirt ≥ 6.5 runs it after virtbridge's"
	}
	r.add(f)
}

// checkDaemons compares when each daemon started with when a qemu hook
// first existed. libvirt caches at start (and at SIGHUP) whether any qemu
// hook exists; if none did, it calls none until it restarts or reloads.
// Files replaced in place (an upgrade) also look new, hence a warning, and
// a reload, which is harmless, as the fix.
func checkDaemons(r *Report, hooks []hookFile, ds Daemons) {
	if ds == nil {
		return
	}
	daemons, err := ds.Daemons()
	if err != nil {
		r.add(Finding{Section: SectionInstall, Check: "daemon", Status: Warn, Object: "libvirtd",
			Message: "cannot tell when libvirtd started: " + err.Error(), Fix: "run the doctor as root"})
		return
	}
	if len(daemons) == 0 {
		r.add(Finding{Section: SectionInstall, Check: "daemon", Status: OK, Object: "libvirtd",
			Message: "neither libvirtd nor virtqemud runs in this network namespace now; it looks for hooks when it starts"})
		return
	}
	var first time.Time
	for _, h := range hooks {
		if h.executable && (first.IsZero() || h.changed.Before(first)) {
			first = h.changed
		}
	}
	for _, d := range daemons {
		obj := fmt.Sprintf("%s (pid %d)", d.Name, d.PID)
		f := Finding{Section: SectionInstall, Check: "daemon", Object: obj, Status: OK,
			Message: fmt.Sprintf("started %s, after the hooks appeared (%s): it calls them", stamp(d.Started), stamp(first))}
		if first.After(d.Started.Add(reloadMargin)) {
			f.Status = Warn
			f.Message = fmt.Sprintf("started %s, before the hooks appeared or changed (%s)", stamp(d.Started), stamp(first))
			f.Why = "libvirt looks for hooks only when it starts or reloads: unless it was reloaded since, it does not call virtbridge (after an in-place upgrade it still does)"
			f.Fix = fmt.Sprintf("`systemctl reload %s` (or kill -HUP %d): it re-scans the hooks, running VMs are not touched", d.Name, d.PID)
		}
		r.add(f)
	}
}

func stamp(t time.Time) string { return t.Local().Format("2006-01-02 15:04:05") }

// qemuHooks lists the hooks libvirt runs for qemu: dir/qemu, then the
// regular files of dir/qemu.d in name order.
func qemuHooks(dir string) ([]hookFile, error) {
	var out []hookFile
	main := filepath.Join(dir, "qemu")
	if h, ok, err := inspectHook(main); err != nil {
		return nil, err
	} else if ok {
		out = append(out, h)
	}
	d := filepath.Join(dir, "qemu.d")
	ents, err := os.ReadDir(d)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("reading %s: %w", d, err)
	}
	for _, e := range ents { // sorted by name, as libvirt runs them
		h, ok, err := inspectHook(filepath.Join(d, e.Name()))
		if err != nil {
			return nil, err
		}
		if ok {
			out = append(out, h)
		}
	}
	return out, nil
}

// inspectHook reads one hook; ok is false when there is no regular file
// at path (libvirt skips anything else).
func inspectHook(path string) (hookFile, bool, error) {
	h := hookFile{path: path}
	st, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return h, false, nil
	}
	if err != nil {
		return h, false, fmt.Errorf("reading hook %s: %w", path, err)
	}
	if !st.Mode().IsRegular() {
		return h, false, nil
	}
	h.executable = st.Mode().Perm()&0o111 != 0
	h.changed = ctime(st)
	// A link (virtbridge install-hook makes qemu one) appeared when it was
	// made; upgrades replace its target, not the link.
	if lst, err := os.Lstat(path); err == nil && lst.Mode()&fs.ModeSymlink != 0 {
		h.changed = ctime(lst)
	}
	h.virtbridge, h.chain, h.chainErr = identifyHook(path)
	return h, true, nil
}

func ctime(st fs.FileInfo) time.Time {
	if s, ok := st.Sys().(*syscall.Stat_t); ok {
		return time.Unix(s.Ctim.Sec, s.Ctim.Nsec)
	}
	return st.ModTime()
}

// chainRE finds the virtbridge-hook a wrapper script calls.
var chainRE = regexp.MustCompile(`[^\s'"=;|&()]*virtbridge-hook\b`)

// identifyHook tells virtbridge's hook: the binary itself (by the main
// package in its Go build information), or a script that calls it.
func identifyHook(path string) (vb bool, chain, chainErr string) {
	if isHookBinary(path) {
		return true, "", ""
	}
	f, err := os.Open(path)
	if err != nil {
		return false, "", ""
	}
	defer f.Close()
	head := make([]byte, 64<<10)
	n, _ := io.ReadFull(f, head)
	head = head[:n]
	if len(head) < 2 || string(head[:2]) != "#!" {
		return false, "", ""
	}
	chain = string(chainRE.Find(head))
	if chain == "" {
		return false, "", ""
	}
	if filepath.IsAbs(chain) {
		if st, err := os.Stat(chain); err != nil || !st.Mode().IsRegular() || st.Mode().Perm()&0o111 == 0 {
			return true, chain, fmt.Sprintf("calls %s, which is missing or not executable", chain)
		}
		if !isHookBinary(chain) {
			return true, chain, fmt.Sprintf("calls %s, which is not virtbridge's hook", chain)
		}
	}
	return true, chain, ""
}

func isHookBinary(path string) bool {
	bi, err := buildinfo.ReadFile(path)
	return err == nil && bi.Path == hookPackage
}
