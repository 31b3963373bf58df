package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// host is a network namespace playing a hypervisor, with a private mount
// namespace in which /run/systemd (and so journald's socket) is the host's
// own: no journald of the machine, or of someone else's test, is seen.
//
// Programs are started from one OS thread that has entered both
// namespaces once (unshare(CLONE_FS), then setns), so that a measured
// fork+exec costs what it costs libvirtd, without `ip netns exec`'s own
// start-up on every run. The thread is locked and never unlocked: it dies
// with its goroutine when the host is closed, and no other goroutine ever
// runs in those namespaces.
type host struct {
	name string // network namespace, /run/netns/NAME
	dir  string // run, state and log dirs, the config, saved rulesets

	holder   *child    // `sleep infinity` holding the mount namespace
	journald *exec.Cmd // private journald, when asked for
	work     chan func()
	running  bool          // the thread was started
	exited   chan struct{} // closed when the thread has ended
}

// env is the environment libvirtd gives its hook (testdata/hook/hook-env.txt)
// plus where virtbridge keeps its files for this host.
func (h *host) env() []string {
	return []string{
		"HOME=/root", "LC_ALL=C", "LOGNAME=root", "USER=root",
		"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"VIRTBRIDGE_CONFIG=" + filepath.Join(h.dir, "virtbridge.yaml"),
		"VIRTBRIDGE_RUN_DIR=" + filepath.Join(h.dir, "run"),
		"VIRTBRIDGE_STATE_DIR=" + filepath.Join(h.dir, "state"),
		"VIRTBRIDGE_LOG_DIR=" + filepath.Join(h.dir, "log"),
	}
}

// holderScript makes the private mounts and leaves a sleep holding them.
// /run/systemd and /run/log get empty tmpfs so that only the journald
// started here (if any) answers on /run/systemd/journal/socket. `ip netns
// exec` mounted a sysfs of the namespace without the cgroup mounts below
// it, without which journald refuses to start ("Failed to acquire cgroup
// root path"): cgroupScript mounts them again.
const holderScript = `set -e
mount --make-rprivate /
%s
mkdir -p /run/systemd /run/log
mount -t tmpfs -o mode=0755 tmpfs /run/systemd
mkdir /run/systemd/journal
mount -t tmpfs -o mode=0755 tmpfs /run/log
if [ -d /var/log/journal ]; then mount -t tmpfs -o mode=0755 tmpfs /var/log/journal; fi
ip link set lo up
echo ready
exec sleep infinity >/dev/null
`

// newHost creates the namespaces under a name made of prefix and a random
// suffix, with its files below parent. Close removes everything.
func newHost(ctx context.Context, parent, prefix string) (h *host, err error) {
	b := make([]byte, 3)
	rand.Read(b)
	h = &host{name: prefix + "-" + hex.EncodeToString(b), work: make(chan func()), exited: make(chan struct{})}
	h.dir = filepath.Join(parent, h.name)
	for _, d := range []string{"run", "state", "log"} {
		if err := os.MkdirAll(filepath.Join(h.dir, d), 0o755); err != nil {
			return nil, err
		}
	}
	if out, err := runOut(ctx, "ip", "netns", "add", h.name); err != nil {
		return nil, fmt.Errorf("creating network namespace: %w: %s", err, out)
	}
	defer func() {
		if err != nil {
			err = errors.Join(err, h.Close())
		}
	}()
	if err := h.startHolder(ctx); err != nil {
		return h, err
	}
	return h, h.startThread()
}

func (h *host) startHolder(ctx context.Context) error {
	r, w, err := os.Pipe()
	if err != nil {
		return err
	}
	defer r.Close()
	script := fmt.Sprintf(holderScript, cgroupScript())
	cmd := exec.Command("ip", "netns", "exec", h.name, "unshare", "--mount", "--propagation", "private", "sh", "-c", script)
	cmd.Env = toolEnv()
	cmd.Dir = "/"
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = w, &stderr
	h.holder, err = startChild(cmd, syscall.SIGKILL)
	w.Close()
	if err != nil {
		h.holder = nil
		return fmt.Errorf("starting namespace holder: %w", err)
	}
	line := make(chan string, 1)
	go func() {
		s, _ := bufio.NewReader(r).ReadString('\n')
		line <- s
	}()
	select {
	case s := <-line:
		if s != "ready\n" {
			return fmt.Errorf("setting up namespace holder of %s: %q: %s", h.name, s, stderr.String())
		}
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(15 * time.Second):
		return fmt.Errorf("setting up namespace holder of %s: timed out", h.name)
	}
	return nil
}

// cgroupScript mounts the cgroup hierarchies journald looks for, in the
// layout of the machine's own /sys/fs/cgroup: cgroup2 alone, or the
// hybrid layout (tmpfs, name=systemd and unified).
func cgroupScript() string {
	var st unix.Statfs_t
	if unix.Statfs("/sys/fs/cgroup", &st) == nil && st.Type == unix.CGROUP2_SUPER_MAGIC {
		return "mount -t cgroup2 cgroup2 /sys/fs/cgroup"
	}
	return `mount -t tmpfs -o mode=0755 tmpfs /sys/fs/cgroup
mkdir /sys/fs/cgroup/systemd /sys/fs/cgroup/unified
mount -t cgroup -o none,name=systemd cgroup /sys/fs/cgroup/systemd
mount -t cgroup2 cgroup2 /sys/fs/cgroup/unified`
}

// startThread starts the goroutine whose OS thread enters the holder's
// namespaces and then runs what do sends it.
func (h *host) startThread() error {
	ready := make(chan error, 1)
	pid := h.holder.cmd.Process.Pid
	h.running = true
	go func() {
		defer close(h.exited)
		runtime.LockOSThread() // never unlocked: see host
		if err := enterNamespaces(pid); err != nil {
			ready <- err
			return
		}
		ready <- nil
		for fn := range h.work {
			fn()
		}
	}()
	return <-ready
}

// enterNamespaces moves the calling (locked) thread into the network and
// mount namespaces of pid. setns into a mount namespace needs a thread
// that shares its filesystem attributes with no other: unshare(CLONE_FS)
// gives it its own.
func enterNamespaces(pid int) error {
	if err := unix.Unshare(unix.CLONE_FS); err != nil {
		return fmt.Errorf("unsharing filesystem attributes: %w", err)
	}
	for _, ns := range []struct {
		file string
		kind int
	}{{"net", unix.CLONE_NEWNET}, {"mnt", unix.CLONE_NEWNS}} {
		p := fmt.Sprintf("/proc/%d/ns/%s", pid, ns.file)
		fd, err := unix.Open(p, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("opening %s: %w", p, err)
		}
		err = unix.Setns(fd, ns.kind)
		unix.Close(fd)
		if err != nil {
			return fmt.Errorf("entering %s: %w", p, err)
		}
	}
	return unix.Chdir("/")
}

// do runs fn on the host's thread, inside its namespaces, and returns its
// error. Programs fn starts with os/exec inherit the namespaces; goroutines
// it starts do not.
func (h *host) do(fn func() error) error {
	errc := make(chan error, 1)
	select {
	case h.work <- func() { errc <- fn() }:
	case <-h.exited:
		return fmt.Errorf("host %s: its thread has ended", h.name)
	}
	return <-errc
}

// run is one measured process.
type run struct {
	Wall   time.Duration
	CPU    time.Duration // user + system
	Code   int
	Stderr string
	Stdout string
}

// exec runs argv (argv[0] an absolute path) inside the host with env and
// stdin written through a pipe, as libvirtd does, and measures it from
// before fork to after the exit was reaped.
func (h *host) exec(argv, env []string, stdin []byte) (run, error) {
	var r run
	err := h.do(func() error {
		cmd := exec.Command(argv[0], argv[1:]...)
		cmd.Env = env
		cmd.Dir = "/"
		if stdin != nil {
			cmd.Stdin = bytes.NewReader(stdin)
		}
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		begin := time.Now()
		err := cmd.Run()
		r.Wall = time.Since(begin)
		r.Stdout, r.Stderr = out.String(), errb.String()
		if cmd.ProcessState != nil {
			r.CPU = cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
			r.Code = cmd.ProcessState.ExitCode()
		}
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return nil
		}
		return err
	})
	return r, err
}

// sh runs a shell script inside the host (not measured) and returns its
// output; the error carries the script's output.
func (h *host) sh(script string) (string, error) {
	var out []byte
	err := h.do(func() error {
		cmd := exec.Command("/bin/sh", "-c", "set -e\n"+script)
		cmd.Env = toolEnv()
		cmd.Dir = "/"
		var err error
		out, err = cmd.CombinedOutput()
		return err
	})
	if err != nil {
		return string(out), fmt.Errorf("in %s: %w: %s", h.name, err, lastLines(string(out), 10))
	}
	return string(out), nil
}

// startJournald starts a private systemd-journald in the host's mount
// namespace and waits until its socket answers.
func (h *host) startJournald(bin string) error {
	err := h.do(func() error {
		cmd := exec.Command(bin)
		cmd.Env = toolEnv()
		logf, err := os.Create(filepath.Join(h.dir, "journald.log"))
		if err != nil {
			return err
		}
		defer logf.Close()
		cmd.Stdout, cmd.Stderr = logf, logf
		// Sent when the host's thread ends, should Close not be reached.
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
		if err := cmd.Start(); err != nil {
			return fmt.Errorf("starting %s: %w", bin, err)
		}
		h.journald = cmd
		return nil
	})
	if err != nil {
		return err
	}
	sock := fmt.Sprintf("/proc/%d/root/run/systemd/journal/socket", h.holder.cmd.Process.Pid)
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if fi, err := os.Stat(sock); err == nil && fi.Mode()&os.ModeSocket != 0 {
			return nil
		}
	}
	return fmt.Errorf("journald in %s does not answer after 10s", h.name)
}

// Close stops journald and the holder by their pids, ends the thread and
// deletes the namespace. It is idempotent.
func (h *host) Close() error {
	var errs []error
	if h.journald != nil {
		stopProcess(h.journald, syscall.SIGTERM, 10*time.Second)
		h.journald = nil
	}
	if h.running {
		select {
		case <-h.exited:
		default:
			close(h.work)
			<-h.exited
		}
		h.running = false
	}
	if h.holder != nil {
		h.holder.stop(syscall.SIGKILL, 5*time.Second)
		h.holder = nil
	}
	if h.name != "" {
		if out, err := runOut(context.Background(), "ip", "netns", "del", h.name); err != nil {
			errs = append(errs, fmt.Errorf("deleting network namespace %s: %w: %s", h.name, err, out))
		}
		h.name = ""
	}
	return errors.Join(errs...)
}

// stopProcess signals a process we started, by its pid, and reaps it,
// killing it when it outlives grace.
func stopProcess(cmd *exec.Cmd, sig syscall.Signal, grace time.Duration) {
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	cmd.Process.Signal(sig)
	select {
	case <-done:
	case <-time.After(grace):
		cmd.Process.Kill()
		<-done
	}
}

// child is a process started from an OS thread of its own that lives as
// long as the process does: its parent-death signal (sent when the thread
// that forked it ends) comes only when the process ended or the driver
// died, never because some other goroutine's locked thread went away.
type child struct {
	cmd  *exec.Cmd
	done chan struct{} // closed once it has been reaped
}

func startChild(cmd *exec.Cmd, deathSig syscall.Signal) (*child, error) {
	c := &child{cmd: cmd, done: make(chan struct{})}
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Pdeathsig = deathSig
	started := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends after the child
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		cmd.Wait()
		close(c.done)
	}()
	return c, <-started
}

// stop signals the child by its pid and waits for it, killing it when it
// outlives grace.
func (c *child) stop(sig syscall.Signal, grace time.Duration) {
	c.cmd.Process.Signal(sig)
	select {
	case <-c.done:
	case <-time.After(grace):
		c.cmd.Process.Kill()
		<-c.done
	}
}

// toolEnv is the driver's environment with sbin in PATH and C messages.
func toolEnv() []string {
	return append(os.Environ(), "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL=C")
}

// runOut runs a command in the machine's namespaces and returns its
// combined output.
func runOut(ctx context.Context, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = toolEnv()
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
