package packaging

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/virtbridge/virtbridge/internal/testenv/lab"
	"github.com/virtbridge/virtbridge/internal/testenv/netnstest"
)

// A host is this machine as the package sees it during one test. dpkg
// really installs the package: /usr/bin, /usr/lib/systemd, /usr/share,
// the dpkg database and journald's catalog change. Every command of the
// test (dpkg and the maintainer scripts it runs) runs in a network
// namespace of the test, so firewall-remove and the hook touch only that
// namespace, and with private directories bound over /etc/libvirt (a copy
// of the machine's), /etc/virtbridge, /run/virtbridge, /var/lib/virtbridge
// and /var/log. Those are the lab's mount points too: removing the real
// ones while a lab of another test runs would unmount the lab's copies.
type host struct {
	t    *testing.T
	ns   *netnstest.NS
	view map[string]string // path as the package sees it -> directory bound there
}

// viewDirs are the directories bound over in the view, in mount order.
var viewDirs = []string{"/etc/libvirt", "/etc/virtbridge", "/run/virtbridge", "/var/lib/virtbridge", "/var/log"}

// hostFiles are the machine's own paths the package touches, compared
// before and after, as globs.
var hostFiles = []string{
	"/usr/bin/virtbridge*",
	"/usr/lib/systemd/system/virtbridge*",
	"/usr/lib/tmpfiles.d/virtbridge*",
	"/usr/lib/systemd/catalog/*",
	"/var/lib/systemd/catalog/database",
	"/usr/share/man/man1/virtbridge*",
	"/usr/share/man/man8/virtbridge*",
	"/usr/share/doc/virtbridge",
	"/etc/systemd/system",
	"/var/lib/dpkg/info/virtbridge.*",
}

// requireDebHost skips t unless this machine can run the deb tests, and
// fails it when virtbridge is installed here for real (the test would
// replace it).
func requireDebHost(t *testing.T) {
	t.Helper()
	netnstest.RequireRoot(t)
	requireTools(t, "dpkg", "dpkg-deb", "dpkg-query", "mount", "find")
	if st := packageStatus(t); st != "not-installed" && st != "" {
		t.Fatalf("the virtbridge package is %q on this machine: the test would replace it. "+
			"If a killed test left it, remove it with: dpkg -P virtbridge", st)
	}
}

// packageStatus is dpkg's status of virtbridge: "installed",
// "config-files", "not-installed", ...
func packageStatus(t *testing.T) string {
	cmd := exec.Command("dpkg-query", "-W", "-f=${db:Status-Status}", "virtbridge")
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	out, _ := cmd.Output() // exit status 1 and no output: dpkg never heard of it
	return strings.TrimSpace(string(out))
}

func newHost(t *testing.T) *host {
	t.Helper()
	requireDebHost(t)
	// The mount points must exist; the lab makes them too.
	if err := lab.EnsureHostPrereqs(); err != nil {
		t.Fatal(err)
	}
	h := &host{t: t, ns: netnstest.New(t, "vbpkg"), view: map[string]string{}}
	for _, d := range viewDirs {
		dir := t.TempDir()
		if err := os.Chmod(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if d == "/etc/libvirt" {
			mustRun(t, "cp", "-a", "/etc/libvirt/.", dir)
			if err := os.RemoveAll(filepath.Join(dir, "hooks")); err != nil {
				t.Fatal(err)
			}
		}
		h.view[d] = dir
	}
	// Registered after the namespace's cleanup, so it runs before it.
	t.Cleanup(h.purgeLeftover)
	return h
}

// purgeLeftover purges the package if the test left it installed.
func (h *host) purgeLeftover() {
	if st := packageStatus(h.t); st == "not-installed" || st == "" {
		return
	}
	h.t.Errorf("the test left virtbridge %s; purging it", packageStatus(h.t))
	if out, err := h.exec("dpkg", "-P", "virtbridge"); err == nil {
		return
	} else {
		h.t.Logf("dpkg -P: %v\n%s", err, out)
	}
	// A failing prerm or postrm keeps the package: take them away.
	for _, s := range []string{"prerm", "postrm"} {
		os.Remove("/var/lib/dpkg/info/virtbridge." + s)
	}
	if out, err := h.exec("dpkg", "-P", "--force-remove-reinstreq", "virtbridge"); err != nil {
		h.t.Errorf("dpkg -P without scripts: %v\n%s", err, out)
	}
}

// exec runs a command as the package sees the machine: in the test's
// network namespace, with the view's directories bound.
func (h *host) exec(args ...string) (string, error) { return h.execIn("", args...) }

// execIn is exec with stdin.
func (h *host) execIn(stdin string, args ...string) (string, error) {
	script := "set -e\n"
	for i, d := range viewDirs {
		script += fmt.Sprintf("mount --bind \"$%d\" %s\n", i+1, d)
	}
	script += fmt.Sprintf("shift %d\nexec \"$@\"\n", len(viewDirs))
	argv := []string{"netns", "exec", h.ns.Name, "sh", "-c", script, "sh"}
	for _, d := range viewDirs {
		argv = append(argv, h.view[d])
	}
	cmd := exec.Command("ip", append(argv, args...)...)
	cmd.Env = []string{"LC_ALL=C", "DEBIAN_FRONTEND=noninteractive", "HOME=/root",
		"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s: %w", strings.Join(args, " "), err)
	}
	return string(out), nil
}

func (h *host) mustExec(args ...string) string {
	h.t.Helper()
	out, err := h.exec(args...)
	if err != nil {
		h.t.Fatalf("%v\n%s", err, out)
	}
	return out
}

// path returns where the test process finds p of the view.
func (h *host) path(p string) string {
	for _, d := range viewDirs {
		if p == d || strings.HasPrefix(p, d+"/") {
			return h.view[d] + strings.TrimPrefix(p, d)
		}
	}
	return p
}

// snapshot renders the view's directories and the machine's files the
// package touches: one line per entry with mode, owner, link text or
// content hash.
func (h *host) snapshot() string {
	h.t.Helper()
	var b strings.Builder
	for _, d := range viewDirs {
		if d == "/var/log" { // dpkg.log is dpkg's: only virtbridge's logs count
			if _, err := os.Lstat(h.path("/var/log/virtbridge")); err != nil {
				continue
			}
			d = "/var/log/virtbridge"
		}
		h.walk(&b, d, h.path(d))
	}
	for _, g := range hostFiles {
		matches, _ := filepath.Glob(g)
		for _, m := range matches {
			h.walk(&b, m, m)
		}
	}
	return b.String()
}

func (h *host) walk(b *strings.Builder, name, dir string) {
	err := filepath.WalkDir(dir, func(p string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		st := fi.Sys().(*syscall.Stat_t)
		fmt.Fprintf(b, "%s%s %v %d:%d", name, strings.TrimPrefix(p, dir), fi.Mode(), st.Uid, st.Gid)
		switch {
		case fi.Mode()&os.ModeSymlink != 0:
			text, _ := os.Readlink(p)
			fmt.Fprintf(b, " -> %s", text)
		case fi.Mode().IsRegular():
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			sum := sha256.Sum256(data)
			fmt.Fprintf(b, " %s", hex.EncodeToString(sum[:6]))
		}
		b.WriteByte('\n')
		return nil
	})
	if err != nil {
		h.t.Fatalf("listing %s: %v", name, err)
	}
}

// diff returns the lines only in a and only in b.
func diff(a, b string) string {
	in := func(s string) map[string]bool {
		m := map[string]bool{}
		for _, l := range strings.Split(s, "\n") {
			m[l] = true
		}
		return m
	}
	ma, mb := in(a), in(b)
	var out []string
	for _, l := range strings.Split(a, "\n") {
		if !mb[l] {
			out = append(out, "- "+l)
		}
	}
	for _, l := range strings.Split(b, "\n") {
		if !ma[l] {
			out = append(out, "+ "+l)
		}
	}
	return strings.Join(out, "\n")
}
