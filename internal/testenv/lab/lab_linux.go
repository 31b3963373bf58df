package lab

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Addresses of the upstream network; they exist only inside the lab.
const (
	UpstreamAddr    = "10.77.0.1"
	UpstreamCIDR    = "10.77.0.1/24"
	UpstreamDHCPLow = "10.77.0.100"
	UpstreamDHCPHi  = "10.77.0.150"
	// UplinkName is the veth end in the hypervisor namespace: the NIC a
	// test enslaves into a bridge to give VMs a way out.
	UplinkName = "uplink0"
	// UpstreamLinkName is the veth end in the upstream namespace.
	UpstreamLinkName = "upstream0"
)

// Options configures Start. The zero value is a lab without hook and without
// upstream.
type Options struct {
	// HookPath is a program copied to the lab's private
	// /etc/libvirt/hooks/qemu; empty installs no qemu hook.
	HookPath string
	// HookFiles are written below the private /etc/libvirt/hooks, keyed by
	// relative path ("qemu.d/10-x"), with mode 0755.
	HookFiles map[string][]byte
	// EtcVirtbridge are written below the private /etc/virtbridge, keyed by
	// relative path ("virtbridge.yaml"), with mode 0644. libvirtd runs
	// hooks with a scrubbed environment, so a fixed path like this is how a
	// hook finds its configuration.
	EtcVirtbridge map[string][]byte
	// Upstream adds the upstream namespace, its veth pair and dnsmasq.
	Upstream bool
	// Prefix is the unique tag in this lab's names (vbhv-<tag>,
	// vbup-<tag>); empty picks a random one so parallel labs never collide.
	// At most 12 characters of [a-z0-9].
	Prefix string
	// LibvirtdEnv is added to the environment libvirtd starts with.
	LibvirtdEnv []string
	// Logf, when set, receives progress messages (t.Logf fits).
	Logf func(format string, args ...any)
}

// Lab is a running libvirtd in private namespaces. Its methods are safe for
// concurrent use.
type Lab struct {
	opts Options
	tag  string
	dir  string
	hvNS string
	upNS string
	// createdNS are the namespaces this lab created, in order; only they
	// are torn down.
	createdNS []string

	sleeper  *proc // holds the mount namespace; its pid is the nsenter target
	virtlogd *proc
	dnsmasq  *proc

	mu       sync.Mutex
	libvirtd *proc

	closeOnce sync.Once
	closeErr  error
}

// privateDirs maps each path replaced inside the lab's mount namespace to
// the lab subdirectory bound over it. /run/libvirt is a private tmpfs;
// /var/cache/libvirt is shared by all labs (see cacheDir).
var privateDirs = []struct{ path, sub string }{
	{"/etc/libvirt", "etc-libvirt"},
	{"/var/lib/libvirt", "var-lib-libvirt"},
	{"/var/log/libvirt", "var-log-libvirt"},
	{"/var/cache/libvirt", "var-cache-libvirt"},
	{"/etc/virtbridge", "etc-virtbridge"},
	{"/run/virtbridge", "run-virtbridge"},
	{"/var/lib/virtbridge", "var-lib-virtbridge"},
	// The JSON-lines journal of a hook or daemon running in the lab
	// without journald must not land in the machine's own directory.
	{"/var/log/virtbridge", "var-log-virtbridge"},
}

var tagRE = regexp.MustCompile(`^[a-z0-9]{1,12}$`)

// Start creates the namespaces, starts virtlogd and libvirtd (and dnsmasq
// when opts.Upstream) and returns once virsh answers. It calls
// EnsureHostPrereqs and removes labs left behind by dead processes first.
// On error everything created so far is torn down.
func Start(ctx context.Context, opts Options) (*Lab, error) {
	if err := Unavailable(opts.Upstream); err != nil {
		return nil, fmt.Errorf("starting lab: %w", err)
	}
	if err := EnsureHostPrereqs(); err != nil {
		return nil, fmt.Errorf("starting lab: %w", err)
	}
	l := &Lab{opts: opts, tag: opts.Prefix}
	if err := SweepStale(); err != nil {
		l.logf("removing stale labs: %v", err)
	}
	if l.tag == "" {
		var b [3]byte
		if _, err := rand.Read(b[:]); err != nil {
			return nil, fmt.Errorf("starting lab: %w", err)
		}
		l.tag = hex.EncodeToString(b[:])
	}
	if !tagRE.MatchString(l.tag) {
		return nil, fmt.Errorf("starting lab: prefix %q is not 1-12 characters of [a-z0-9]", l.tag)
	}
	l.hvNS = "vbhv-" + l.tag
	if opts.Upstream {
		l.upNS = "vbup-" + l.tag
	}
	dir, err := os.MkdirTemp("", labDirPrefix+l.tag+"-")
	if err != nil {
		return nil, fmt.Errorf("starting lab: %w", err)
	}
	l.dir = dir

	begin := time.Now()
	if err := l.start(ctx); err != nil {
		if cerr := l.Close(); cerr != nil {
			err = errors.Join(err, fmt.Errorf("tearing down failed lab: %w", cerr))
		}
		return nil, fmt.Errorf("starting lab %s: %w", l.tag, err)
	}
	l.logf("lab %s up in %v (dir %s)", l.tag, time.Since(begin).Round(time.Millisecond), l.dir)
	return l, nil
}

func (l *Lab) start(ctx context.Context) error {
	if err := writeOwner(l.dir, nil); err != nil {
		return err
	}
	if err := l.populate(); err != nil {
		return err
	}
	if err := l.addNetns(ctx, l.hvNS); err != nil {
		return err
	}
	if l.opts.Upstream {
		if err := l.startUpstream(ctx); err != nil {
			return err
		}
	}
	if err := l.startSleeper(ctx); err != nil {
		return err
	}
	if err := l.startVirtlogd(ctx); err != nil {
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.startLibvirtdLocked(ctx)
}

// addNetns creates a network namespace and records it as the lab's. Only
// namespaces recorded so are ever torn down: a name that exists already
// (someone else's) makes Start fail without touching it.
func (l *Lab) addNetns(ctx context.Context, name string) error {
	if _, err := run(ctx, "ip", "netns", "add", name); err != nil {
		return err
	}
	l.createdNS = append(l.createdNS, name)
	return writeOwner(l.dir, l.createdNS)
}

// populate creates the private directories and installs hook and files.
func (l *Lab) populate() error {
	for _, d := range privateDirs {
		if err := os.MkdirAll(l.source(d.sub), 0o755); err != nil {
			return fmt.Errorf("creating lab directory: %w", err)
		}
	}
	if err := l.makeKVMNode(); err != nil {
		return err
	}
	for _, sub := range []string{"var-lib-libvirt/qemu", "var-log-libvirt/qemu", "etc-libvirt/hooks", "xml"} {
		if err := os.MkdirAll(filepath.Join(l.dir, sub), 0o755); err != nil {
			return fmt.Errorf("creating lab directory: %w", err)
		}
	}
	hooks := filepath.Join(l.dir, "etc-libvirt", "hooks")
	if l.opts.HookPath != "" {
		data, err := os.ReadFile(l.opts.HookPath)
		if err != nil {
			return fmt.Errorf("reading hook: %w", err)
		}
		if err := os.WriteFile(filepath.Join(hooks, "qemu"), data, 0o755); err != nil {
			return fmt.Errorf("installing hook: %w", err)
		}
	}
	if err := writeTree(hooks, l.opts.HookFiles, 0o755); err != nil {
		return fmt.Errorf("installing hook files: %w", err)
	}
	if err := writeTree(filepath.Join(l.dir, "etc-virtbridge"), l.opts.EtcVirtbridge, 0o644); err != nil {
		return fmt.Errorf("installing /etc/virtbridge files: %w", err)
	}
	return nil
}

// cacheDir holds libvirt's qemu capabilities cache for all labs. Probing
// qemu takes 10-50 s here; libvirt revalidates the cache itself (qemu and
// libvirtd binaries, kernel, KVM) and writes it by rename.
func cacheDir() string { return filepath.Join(os.TempDir(), "virtbridge-labcache") }

// source returns the directory bound over a private directory.
func (l *Lab) source(sub string) string {
	if sub == "var-cache-libvirt" {
		return cacheDir()
	}
	return filepath.Join(l.dir, sub)
}

// makeKVMNode makes a copy of /dev/kvm owned by group kvm with mode 0660, as
// Debian's udev rules leave it, to bind over /dev/kvm in the lab. Where the
// host's node is root-only, libvirtd sees KVM as unusable for libvirt-qemu
// while its probe finds it enabled, declares its capabilities cache
// outdated at every look-up and probes qemu again: a define took 36 s.
// The host's node is left alone; a host without /dev/kvm gets no node.
func (l *Lab) makeKVMNode() error {
	var st syscall.Stat_t
	if err := syscall.Stat("/dev/kvm", &st); err != nil {
		return nil
	}
	g, err := user.LookupGroup("kvm")
	if err != nil {
		return fmt.Errorf("making kvm node: %w", err)
	}
	gid, err := strconv.Atoi(g.Gid)
	if err != nil {
		return fmt.Errorf("making kvm node: group kvm has gid %q", g.Gid)
	}
	p := filepath.Join(l.dir, "dev-kvm")
	if err := syscall.Mknod(p, syscall.S_IFCHR|0o660, int(st.Rdev)); err != nil {
		return fmt.Errorf("making kvm node %s: %w", p, err)
	}
	if err := os.Chown(p, 0, gid); err != nil {
		return fmt.Errorf("making kvm node: %w", err)
	}
	if err := os.Chmod(p, 0o660); err != nil {
		return fmt.Errorf("making kvm node: %w", err)
	}
	return nil
}

func writeTree(root string, files map[string][]byte, mode os.FileMode) error {
	for name, data := range files {
		clean := filepath.Clean(name)
		if filepath.IsAbs(clean) || clean == "." || strings.HasPrefix(clean, "..") {
			return fmt.Errorf("file name %q is not a relative path inside the directory", name)
		}
		p := filepath.Join(root, clean)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(p, data, mode); err != nil {
			return err
		}
		// WriteFile keeps the mode of an existing file and obeys umask.
		if err := os.Chmod(p, mode); err != nil {
			return err
		}
	}
	return nil
}

func (l *Lab) startUpstream(ctx context.Context) error {
	if err := l.addNetns(ctx, l.upNS); err != nil {
		return err
	}
	steps := [][]string{
		{"ip", "-n", l.upNS, "link", "set", "lo", "up"},
		// Both ends are created inside the hypervisor namespace and one is
		// moved: no link ever appears in the machine's own namespace.
		{"ip", "-n", l.hvNS, "link", "add", UplinkName, "type", "veth", "peer", "name", UpstreamLinkName, "netns", l.upNS},
		{"ip", "-n", l.hvNS, "link", "set", UplinkName, "up"},
		{"ip", "-n", l.upNS, "addr", "add", UpstreamCIDR, "dev", UpstreamLinkName},
		{"ip", "-n", l.upNS, "link", "set", UpstreamLinkName, "up"},
	}
	for _, s := range steps {
		if _, err := run(ctx, s[0], s[1:]...); err != nil {
			return err
		}
	}
	logf, err := os.Create(filepath.Join(l.dir, "dnsmasq.log"))
	if err != nil {
		return fmt.Errorf("creating dnsmasq log: %w", err)
	}
	cmd := exec.Command("ip", "netns", "exec", l.upNS, "dnsmasq",
		"--no-daemon", "--conf-file=/dev/null", "--port=0", "--no-resolv", "--no-hosts",
		"--interface="+UpstreamLinkName, "--bind-interfaces",
		"--dhcp-range="+UpstreamDHCPLow+","+UpstreamDHCPHi+",12h",
		"--dhcp-leasefile="+l.leaseFile(),
		// Not /dev/null: dnsmasq unlinks its pid file when it exits, even
		// in --no-daemon mode where it never writes one.
		"--pid-file="+filepath.Join(l.dir, "dnsmasq.pid"),
		"--log-facility=-", "--log-dhcp")
	cmd.Env = toolEnv()
	cmd.Stdout, cmd.Stderr = logf, logf
	if l.dnsmasq, err = startProc("dnsmasq", cmd, logf); err != nil {
		return err
	}
	// Ready once the DHCP socket is bound. /proc/PID/net/udp lists the
	// sockets of that process's network namespace; 0043 is port 67.
	udp := filepath.Join("/proc", fmt.Sprint(l.dnsmasq.pid()), "net", "udp")
	return waitFor(ctx, 10*time.Second, func() (bool, error) {
		if l.dnsmasq.exited() {
			return false, fmt.Errorf("dnsmasq exited: %v: %s", l.dnsmasq.err, tail(filepath.Join(l.dir, "dnsmasq.log"), 20))
		}
		b, err := os.ReadFile(udp)
		return err == nil && strings.Contains(string(b), ":0043 "), nil
	})
}

// startSleeper enters the hypervisor network namespace, makes a private
// mount namespace with the lab's directories bound over the system ones,
// and leaves a sleep there whose namespaces every later command enters.
func (l *Lab) startSleeper(ctx context.Context) error {
	var script strings.Builder
	script.WriteString("set -e\nmount --make-rprivate /\n")
	for _, d := range privateDirs {
		fmt.Fprintf(&script, "mount --bind %s %s\n", shellQuote(l.source(d.sub)), d.path)
	}
	kvm := shellQuote(filepath.Join(l.dir, "dev-kvm"))
	fmt.Fprintf(&script, "if [ -e %s ]; then mount --bind %s /dev/kvm; fi\n", kvm, kvm)
	script.WriteString("mount -t tmpfs -o mode=0755 tmpfs /run/libvirt\n")
	script.WriteString("ip link set lo up\n")
	script.WriteString("echo ready\nexec sleep infinity >/dev/null\n")

	logf, err := os.Create(filepath.Join(l.dir, "sleeper.log"))
	if err != nil {
		return fmt.Errorf("creating sleeper log: %w", err)
	}
	r, w, err := os.Pipe()
	if err != nil {
		logf.Close()
		return fmt.Errorf("creating pipe: %w", err)
	}
	defer r.Close()
	// ip netns exec also remounts /sys, so that /sys/class/net shows the
	// namespace's links to libvirtd and hooks. ip, unshare and sh each exec
	// the next, so the pid ends up being the sleep's.
	cmd := exec.Command("ip", "netns", "exec", l.hvNS,
		"unshare", "--mount", "--propagation", "private", "sh", "-c", script.String())
	cmd.Env = toolEnv()
	cmd.Dir = "/"
	cmd.Stdout, cmd.Stderr = w, logf
	l.sleeper, err = startProc("namespace holder", cmd, logf)
	w.Close()
	if err != nil {
		return err
	}
	ready := make(chan error, 1)
	go func() {
		line, err := bufio.NewReader(r).ReadString('\n')
		if err == nil && line != "ready\n" {
			err = fmt.Errorf("unexpected output %q", line)
		}
		ready <- err
	}()
	select {
	case err = <-ready:
	case <-ctx.Done():
		err = ctx.Err()
	case <-time.After(15 * time.Second):
		err = errors.New("timed out")
	}
	if err != nil {
		return fmt.Errorf("setting up mount namespace: %w: %s", err, tail(filepath.Join(l.dir, "sleeper.log"), 20))
	}
	return nil
}

func (l *Lab) startVirtlogd(ctx context.Context) error {
	logf, err := os.Create(filepath.Join(l.dir, "virtlogd.log"))
	if err != nil {
		return fmt.Errorf("creating virtlogd log: %w", err)
	}
	// The default pid files, /run/virtlogd.pid and /run/libvirtd.pid, are
	// outside the lab's private directories: parallel labs would fight
	// over them.
	cmd := l.hvCommand("virtlogd", "--pid-file", "/run/libvirt/virtlogd.pid")
	// Without it the daemons log to the host's journald when one runs.
	cmd.Env = append(cmd.Env, daemonLogEnv)
	cmd.Stdout, cmd.Stderr = logf, logf
	if l.virtlogd, err = startProc("virtlogd", cmd, logf); err != nil {
		return err
	}
	sock := l.inNS("/run/libvirt/virtlogd-sock")
	return waitFor(ctx, 15*time.Second, func() (bool, error) {
		if l.virtlogd.exited() {
			return false, fmt.Errorf("virtlogd exited: %v: %s", l.virtlogd.err, tail(filepath.Join(l.dir, "virtlogd.log"), 20))
		}
		_, err := os.Stat(sock)
		return err == nil, nil
	})
}

// daemonLogEnv sends warnings and errors of virtlogd and libvirtd to their
// stderr, which the lab writes to files.
const daemonLogEnv = "LIBVIRT_LOG_OUTPUTS=3:stderr"

// libvirtdEnv is what libvirtd starts with. The marker shows in tests that
// libvirtd does not pass its environment on to hooks.
func (l *Lab) libvirtdEnv() []string {
	env := []string{
		"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"HOME=/root", "USER=root", "LOGNAME=root", "LANG=C.UTF-8",
		"VIRTBRIDGE_LAB=" + l.tag,
		daemonLogEnv,
	}
	return append(env, l.opts.LibvirtdEnv...)
}

func (l *Lab) startLibvirtdLocked(ctx context.Context) error {
	logPath := filepath.Join(l.dir, "libvirtd.log")
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("opening libvirtd log: %w", err)
	}
	cmd := l.hvCommand("libvirtd", "--pid-file", "/run/libvirt/libvirtd.pid")
	cmd.Env = l.libvirtdEnv()
	cmd.Stdout, cmd.Stderr = logf, logf
	p, err := startProc("libvirtd", cmd, logf)
	if err != nil {
		return err
	}
	l.libvirtd = p
	return waitFor(ctx, 60*time.Second, func() (bool, error) {
		if p.exited() {
			return false, fmt.Errorf("libvirtd exited: %v: %s", p.err, tail(logPath, 20))
		}
		c, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		_, err := l.Virsh(c, "list", "--all", "--name")
		return err == nil, nil
	})
}

// RestartLibvirtd stops libvirtd by its pid, starts it again and returns
// once virsh answers. Running VMs keep running; libvirtd reconnects to them
// (and calls the qemu hook with "reconnect begin"). A hook installed or
// changed since the last start is picked up.
func (l *Lab) RestartLibvirtd(ctx context.Context) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.libvirtd.stop(15 * time.Second); err != nil {
		return fmt.Errorf("restarting libvirtd: %w", err)
	}
	if err := l.startLibvirtdLocked(ctx); err != nil {
		return fmt.Errorf("restarting libvirtd: %w", err)
	}
	return nil
}

// LibvirtdPID returns the pid of the running libvirtd, or 0.
func (l *Lab) LibvirtdPID() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.libvirtd.exited() {
		return 0
	}
	return l.libvirtd.pid()
}

// Tag returns the unique part of this lab's names.
func (l *Lab) Tag() string { return l.tag }

// Dir returns the lab's temporary directory on the host. It holds the logs
// (libvirtd.log, virtlogd.log, dnsmasq.log, var-log-libvirt/qemu/) and the
// directories bound over the system ones.
func (l *Lab) Dir() string { return l.dir }

// HVNetns returns the name of the hypervisor network namespace.
func (l *Lab) HVNetns() string { return l.hvNS }

// UpNetns returns the name of the upstream network namespace, or "" when the
// lab has no upstream.
func (l *Lab) UpNetns() string { return l.upNS }

// HostPath maps a path inside the lab's mount namespace that lies below one
// of its private directories (/etc/libvirt, /var/lib/libvirt,
// /var/log/libvirt, /var/cache/libvirt, /etc/virtbridge, /run/virtbridge,
// /var/lib/virtbridge) to the same file seen from the host.
func (l *Lab) HostPath(p string) (string, error) {
	clean := filepath.Clean(p)
	for _, d := range privateDirs {
		if clean == d.path || strings.HasPrefix(clean, d.path+"/") {
			return filepath.Join(l.source(d.sub), strings.TrimPrefix(clean, d.path)), nil
		}
	}
	return "", fmt.Errorf("mapping %q to the host: not below a private directory of the lab", p)
}

// inNS returns a host path that reaches p through the namespace holder's
// root, for files not below a bound directory (such as /run/libvirt).
func (l *Lab) inNS(p string) string {
	return filepath.Join("/proc", fmt.Sprint(l.sleeper.pid()), "root", p)
}

func (l *Lab) leaseFile() string { return filepath.Join(l.dir, "dnsmasq.leases") }

func (l *Lab) logf(format string, args ...any) {
	if l.opts.Logf != nil {
		l.opts.Logf(format, args...)
	}
}

// waitFor polls cond every 100 ms until it is true, returns an error, ctx
// ends or limit passes.
func waitFor(ctx context.Context, limit time.Duration, cond func() (bool, error)) error {
	deadline := time.Now().Add(limit)
	for {
		ok, err := cond()
		if err != nil {
			return err
		}
		if ok {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("timed out after %v", limit)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// tail returns the last n lines of a file, for error messages.
func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(no %s: %v)", filepath.Base(path), err)
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return filepath.Base(path) + ": " + strings.Join(lines, "\n")
}

func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
