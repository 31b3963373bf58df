package install

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/virtbridge/virtbridge/internal/command"
)

// libvirtDaemons are the daemons that run qemu hooks: the modular
// virtqemud and the monolithic libvirtd. A host runs one of them.
var libvirtDaemons = []string{"virtqemud", "libvirtd"}

var versionRE = regexp.MustCompile(`\(libvirt\) (\d+)\.(\d+)\.(\d+)`)

// LibvirtVersion asks virtqemud, then libvirtd, for its version ("libvirtd
// (libvirt) 9.0.0") and returns it as major*1,000,000 + minor*1,000 +
// micro; ok is false when neither is installed or answers.
func LibvirtVersion() (version int, ok bool) {
	for _, d := range libvirtDaemons {
		path, err := lookDaemon(d)
		if err != nil {
			continue
		}
		out, err := command.Cmd{Path: path, Args: []string{"--version"}, Timeout: 10 * time.Second}.Output(context.Background())
		if err != nil {
			continue
		}
		if v, ok := parseVersion(string(out)); ok {
			return v, true
		}
	}
	return 0, false
}

// lookDaemon finds a libvirt daemon in $PATH or in /usr/sbin, where it
// lives but which a normal user's $PATH lacks.
func lookDaemon(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	return exec.LookPath(filepath.Join("/usr/sbin", name))
}

func parseVersion(s string) (int, bool) {
	m := versionRE.FindStringSubmatch(s)
	if m == nil {
		return 0, false
	}
	var n [3]int
	for i := range n {
		n[i], _ = strconv.Atoi(m[i+1])
	}
	return n[0]*1_000_000 + n[1]*1_000 + n[2], true
}

func versionString(v int) string {
	return fmt.Sprintf("%d.%d.%d", v/1_000_000, v/1_000%1_000, v%1_000)
}

// ReloadOptions says how Reload finds the libvirt daemons. The zero value
// is right for the host.
type ReloadOptions struct {
	// Systemd says whether systemd is the service manager; nil means
	// "/run/systemd/system exists".
	Systemd *bool
	// Systemctl runs systemctl with args; nil runs the real one.
	Systemctl func(args ...string) error
	// PIDFiles maps each daemon's process name to its pid file, for hosts
	// without systemd; nil means /run/<name>.pid, where libvirtd and
	// virtqemud write theirs when run as root.
	PIDFiles map[string]string
}

// Reload makes the running libvirt daemons look for hooks again, as
// `systemctl reload` or SIGHUP does (libvirt re-reads its hooks on
// reload). A daemon that is not running is left alone. It returns what it
// did, one line each.
func Reload(o ReloadOptions) ([]string, error) {
	systemd := o.Systemd != nil && *o.Systemd
	if o.Systemd == nil {
		fi, err := os.Stat("/run/systemd/system")
		systemd = err == nil && fi.IsDir()
	}
	if systemd {
		return reloadUnits(o.Systemctl)
	}
	files := o.PIDFiles
	if files == nil {
		files = map[string]string{}
		for _, d := range libvirtDaemons {
			files[d] = filepath.Join("/run", d+".pid")
		}
	}
	var done []string
	var errs []error
	for _, d := range libvirtDaemons {
		pid, err := daemonPID(d, files[d])
		if err != nil || pid == 0 {
			errs = append(errs, err)
			continue
		}
		if err := syscall.Kill(pid, syscall.SIGHUP); err != nil {
			errs = append(errs, fmt.Errorf("sending SIGHUP to %s (pid %d): %w", d, pid, err))
			continue
		}
		done = append(done, fmt.Sprintf("sent SIGHUP to %s (pid %d): it looks for hooks again", d, pid))
	}
	return done, errors.Join(errs...)
}

func reloadUnits(systemctl func(args ...string) error) ([]string, error) {
	if systemctl == nil {
		systemctl = func(args ...string) error {
			path, err := exec.LookPath("systemctl")
			if err != nil {
				return fmt.Errorf("running systemctl %s: %w", strings.Join(args, " "), err)
			}
			_, err = command.Cmd{Path: path, Args: args, Timeout: 90 * time.Second}.CombinedOutput(context.Background())
			return err
		}
	}
	var done []string
	for _, d := range libvirtDaemons {
		unit := d + ".service"
		if systemctl("is-active", "--quiet", unit) != nil {
			continue // not running: it reads the hooks when it starts
		}
		if err := systemctl("reload", unit); err != nil {
			return done, err
		}
		done = append(done, "reloaded "+unit+": it looks for hooks again")
	}
	return done, nil
}

// daemonPID returns the pid in file when that process runs and is named
// name; 0 when the daemon is not running.
func daemonPID(name, file string) (int, error) {
	data, err := os.ReadFile(file)
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("reading %s's pid file: %w", name, err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil || pid <= 0 {
		return 0, fmt.Errorf("pid file %s holds %q, not a pid", file, strings.TrimSpace(string(data)))
	}
	comm, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "comm"))
	if err != nil || strings.TrimSpace(string(comm)) != name {
		return 0, nil // stale pid file: not running
	}
	return pid, nil
}
