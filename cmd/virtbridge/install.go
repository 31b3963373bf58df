package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/virtbridge/virtbridge/internal/firewall"
	"github.com/virtbridge/virtbridge/internal/install"
	"github.com/virtbridge/virtbridge/internal/lock"
	"github.com/virtbridge/virtbridge/internal/paths"
)

func init() {
	register("install-hook", command{summary: "install the libvirt qemu hook, keeping a hook found there (packages and make install run it)", run: runInstallHook})
	register("uninstall-hook", command{summary: "remove the libvirt qemu hook and put back the hook it replaced", run: runUninstallHook})
	register("firewall-remove", command{summary: "delete virtbridge's firewall chain, jumps and native accept rules (package removal runs it)", run: runFirewallRemove})
}

// reloadHint is said once, by the install that placed the hook.
const reloadHint = `libvirt looks for hooks only when it starts or reloads: if libvirtd or
virtqemud is running, reload it before starting VMs, e.g.
    systemctl reload virtqemud   (or libvirtd; without systemd: kill -HUP its pid)
virtbridge does not do it for you; ` + "`virtbridge install-hook --reload`" + ` would.
`

func runInstallHook(args []string, _ io.Reader, stdout, stderr io.Writer) int {
	fs := newFlags("install-hook", "install-hook [--hooks-dir DIR] [--target FILE] [--reload]", stderr)
	hooksDir := fs.String("hooks-dir", install.DefaultHooksDir, "libvirt's hook `directory`")
	target := fs.String("target", "", "the virtbridge-hook `binary` the hook links to (default: the one next to this program)")
	reload := fs.Bool("reload", false, "reload running libvirtd/virtqemud so that they call the hook now")
	fs.Usage = func() {
		fmt.Fprintf(stderr, `usage: virtbridge install-hook [--hooks-dir DIR] [--target FILE] [--reload]

Makes DIR/qemu a link to the virtbridge-hook binary. A hook of another
program found there is moved, as it is, to
DIR/qemu.d/%s, where libvirt 6.5 and later run it
after virtbridge's hook; uninstall-hook puts it back. Running it again
changes nothing. What it did is recorded in
%s for uninstall-hook.

`, install.SavedName, filepath.Join(paths.StateDir(), install.RecordName))
		fs.PrintDefaults()
	}
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	if *target == "" {
		*target = defaultTarget()
	}
	abs, err := filepath.Abs(*target)
	if err != nil {
		fmt.Fprintf(stderr, "virtbridge install-hook: %v\n", err)
		return exitUsage
	}
	rep, err := install.Install(install.Options{HooksDir: *hooksDir, Target: abs})
	printLines(stdout, rep.Lines)
	if err != nil {
		fmt.Fprintf(stderr, "virtbridge install-hook: %v\n", err)
		return exitFound
	}
	if !rep.NeedsReload {
		return exitOK
	}
	if !*reload {
		fmt.Fprint(stdout, reloadHint)
		return exitOK
	}
	return reloadLibvirt(stdout, stderr)
}

func runUninstallHook(args []string, _ io.Reader, stdout, stderr io.Writer) int {
	fs := newFlags("uninstall-hook", "uninstall-hook [--hooks-dir DIR]", stderr)
	hooksDir := fs.String("hooks-dir", install.DefaultHooksDir, "libvirt's hook `directory`")
	fs.Usage = func() {
		fmt.Fprint(stderr, `usage: virtbridge uninstall-hook [--hooks-dir DIR]

Removes virtbridge's hook DIR/qemu and puts back the hook install-hook
moved to qemu.d, then removes the directories install-hook created if they
are empty. A hook that is not virtbridge's is left alone. Running it again
changes nothing. libvirt needs no reload: it skips a hook that is gone.

`)
		fs.PrintDefaults()
	}
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	rep, err := install.Uninstall(install.Options{HooksDir: *hooksDir})
	printLines(stdout, rep.Lines)
	if err != nil {
		fmt.Fprintf(stderr, "virtbridge uninstall-hook: %v\n", err)
		return exitFound
	}
	return exitOK
}

func runFirewallRemove(args []string, _ io.Reader, stdout, stderr io.Writer) int {
	fs := newFlags("firewall-remove", "firewall-remove", stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, `usage: virtbridge firewall-remove

Deletes virtbridge's iptables chain VIRTBRIDGE-FWD and its jumps from
FORWARD (and DOCKER-USER), in IPv4 and IPv6, for every iptables variant
installed, its accept rules (commented "virtbridge: bridged traffic of
BR") from native nftables forward chains, what it changed in firewalld
(as recorded in /var/lib/virtbridge/firewalld.json: bridges taken out of
their zone, zone forwarding turned off again), and its firewall state file.
Nothing else is touched: bridges,
uplinks, addresses and sysctls stay as they are. The hook or virtbridged
puts the rules back at the next VM start or firewall check, so run it when
virtbridge is being removed.
`)
	}
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	l, err := lock.Acquire(paths.Lock(), 30*time.Second)
	if err != nil {
		fmt.Fprintf(stderr, "virtbridge firewall-remove: %v\n", err)
		return exitFound
	}
	defer l.Release()
	changes, err := firewall.New(firewall.Options{}).Remove(context.Background())
	for _, c := range changes {
		fmt.Fprintf(stdout, "virtbridge: %s\n", c)
	}
	if err != nil {
		fmt.Fprintf(stderr, "virtbridge firewall-remove: %v\n", err)
		return exitFound
	}
	return exitOK
}

// defaultTarget is the virtbridge-hook next to this binary: /usr/bin for
// the packages, $(PREFIX)/bin for make install.
func defaultTarget() string {
	self, err := os.Executable()
	if err != nil {
		return install.DefaultTarget
	}
	if resolved, err := filepath.EvalSymlinks(self); err == nil {
		self = resolved
	}
	return filepath.Join(filepath.Dir(self), "virtbridge-hook")
}

func reloadLibvirt(stdout, stderr io.Writer) int {
	done, err := install.Reload(install.ReloadOptions{})
	printLines(stdout, done)
	if err != nil {
		fmt.Fprintf(stderr, "virtbridge: reloading libvirt: %v\n", err)
		return exitFound
	}
	if len(done) == 0 {
		fmt.Fprintln(stdout, "virtbridge: no libvirtd or virtqemud is running; it will find the hook when it starts")
	}
	return exitOK
}

func printLines(w io.Writer, lines []string) {
	for _, l := range lines {
		fmt.Fprintf(w, "virtbridge: %s\n", l)
	}
}
