package install

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// fakeHook marks the test's stand-in virtbridge-hook binaries.
const fakeHook = "VIRTBRIDGE-HOOK fake\n"

// host is a temporary host layout: an etc/libvirt with or without hooks,
// the target binary and the state directory.
type host struct {
	t       *testing.T
	root    string
	opts    Options
	version int // libvirt version LibvirtVersion reports; 0 unknown
}

func newHost(t *testing.T) *host {
	t.Helper()
	root := t.TempDir()
	h := &host{t: t, root: root, version: 9_000_000}
	h.opts = Options{
		HooksDir: filepath.Join(root, "etc/libvirt/hooks"),
		Target:   filepath.Join(root, "usr/bin/virtbridge-hook"),
		Record:   filepath.Join(root, "var/lib/virtbridge", RecordName),
		IsVirtbridgeHook: func(p string) bool {
			data, err := os.ReadFile(p)
			return err == nil && bytes.HasPrefix(data, []byte("VIRTBRIDGE-HOOK"))
		},
		LibvirtVersion: func() (int, bool) { return h.version, h.version != 0 },
	}
	h.write("usr/bin/virtbridge-hook", fakeHook, 0o755)
	h.mkdir("etc/libvirt")
	return h
}

func (h *host) path(rel string) string { return filepath.Join(h.root, rel) }

func (h *host) mkdir(rel string) {
	h.t.Helper()
	if err := os.MkdirAll(h.path(rel), 0o755); err != nil {
		h.t.Fatal(err)
	}
}

func (h *host) write(rel, content string, mode os.FileMode) {
	h.t.Helper()
	h.mkdir(filepath.Dir(rel))
	if err := os.WriteFile(h.path(rel), []byte(content), mode); err != nil {
		h.t.Fatal(err)
	}
	if err := os.Chmod(h.path(rel), mode); err != nil {
		h.t.Fatal(err)
	}
}

func (h *host) symlink(rel, text string) {
	h.t.Helper()
	h.mkdir(filepath.Dir(rel))
	if err := os.Symlink(text, h.path(rel)); err != nil {
		h.t.Fatal(err)
	}
}

func (h *host) install() Report {
	h.t.Helper()
	rep, err := Install(h.opts)
	if err != nil {
		h.t.Fatalf("Install: %v", err)
	}
	return rep
}

func (h *host) uninstall() Report {
	h.t.Helper()
	rep, err := Uninstall(h.opts)
	if err != nil {
		h.t.Fatalf("Uninstall: %v", err)
	}
	return rep
}

// tree renders everything below etc/ and var/: one line per entry with its
// mode, owner, and link text or content hash.
func (h *host) tree() string {
	h.t.Helper()
	var b strings.Builder
	for _, top := range []string{"etc", "var"} {
		err := filepath.WalkDir(h.path(top), func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			fi, err := os.Lstat(p)
			if err != nil {
				return err
			}
			rel, _ := filepath.Rel(h.root, p)
			st := fi.Sys().(*syscall.Stat_t)
			fmt.Fprintf(&b, "%s %v %d:%d", rel, fi.Mode(), st.Uid, st.Gid)
			switch {
			case fi.Mode()&os.ModeSymlink != 0:
				text, _ := os.Readlink(p)
				fmt.Fprintf(&b, " -> %s", text)
			case fi.Mode().IsRegular():
				data, _ := os.ReadFile(p)
				sum := sha256.Sum256(data)
				fmt.Fprintf(&b, " %s", hex.EncodeToString(sum[:4]))
			}
			b.WriteByte('\n')
			return nil
		})
		if err != nil && !os.IsNotExist(err) {
			h.t.Fatal(err)
		}
	}
	return b.String()
}

// wantLink checks that the hook is virtbridge's link.
func (h *host) wantLink() {
	h.t.Helper()
	text, err := os.Readlink(h.path("etc/libvirt/hooks/qemu"))
	if err != nil || text != h.opts.Target {
		h.t.Fatalf("hook is %q (%v), want a link to %s", text, err, h.opts.Target)
	}
}

func wantLine(t *testing.T, rep Report, sub string) {
	t.Helper()
	for _, l := range rep.Lines {
		if strings.Contains(l, sub) {
			return
		}
	}
	t.Errorf("report lacks %q:\n%s", sub, strings.Join(rep.Lines, "\n"))
}

// roundTrip installs twice (the second must change nothing), checks the
// result with check, uninstalls twice and wants the tree it started with.
func (h *host) roundTrip(check func(first Report)) {
	h.t.Helper()
	before := h.tree()
	first := h.install()
	h.wantLink()
	installed := h.tree()
	if again := h.install(); len(again.Lines) != 0 || again.NeedsReload {
		h.t.Errorf("second Install changed something: %+v", again)
	}
	if got := h.tree(); got != installed {
		h.t.Errorf("second Install changed the tree:\n%s\nwant\n%s", got, installed)
	}
	check(first)
	h.uninstall()
	if got := h.tree(); got != before {
		h.t.Errorf("after Uninstall the tree is\n%s\nwant what it was before Install:\n%s", got, before)
	}
	if again := h.uninstall(); len(again.Lines) != 0 {
		h.t.Errorf("second Uninstall did something: %+v", again)
	}
}

func TestInstallWithoutHookDir(t *testing.T) {
	h := newHost(t)
	h.roundTrip(func(rep Report) {
		if !rep.NeedsReload {
			t.Errorf("NeedsReload = false for a new hook")
		}
		wantLine(t, rep, "installed the hook")
		if _, err := os.Stat(h.path("etc/libvirt/hooks/qemu.d")); !os.IsNotExist(err) {
			t.Errorf("qemu.d created without a hook to save: %v", err)
		}
	})
}

func TestInstallCreatesMissingParents(t *testing.T) {
	h := newHost(t)
	if err := os.RemoveAll(h.path("etc/libvirt")); err != nil {
		t.Fatal(err)
	}
	h.mkdir("etc")
	h.roundTrip(func(Report) {})
	if _, err := os.Stat(h.path("etc/libvirt")); !os.IsNotExist(err) {
		t.Errorf("etc/libvirt, created by Install, is still there: %v", err)
	}
}

func TestInstallWithEmptyHookDir(t *testing.T) {
	h := newHost(t)
	h.mkdir("etc/libvirt/hooks")
	h.roundTrip(func(rep Report) { wantLine(t, rep, "installed the hook") })
	if _, err := os.Stat(h.path("etc/libvirt/hooks")); err != nil {
		t.Errorf("the hook directory that was there before is gone: %v", err)
	}
}

func TestInstallSavesForeignExecutable(t *testing.T) {
	h := newHost(t)
	h.write("etc/libvirt/hooks/qemu", "#!/bin/sh\necho mine\n", 0o750)
	if os.Geteuid() == 0 {
		if err := os.Chown(h.path("etc/libvirt/hooks/qemu"), 1234, 5678); err != nil {
			t.Fatal(err)
		}
	}
	h.roundTrip(func(rep Report) {
		saved := h.path("etc/libvirt/hooks/qemu.d/" + SavedName)
		data, err := os.ReadFile(saved)
		if err != nil || string(data) != "#!/bin/sh\necho mine\n" {
			t.Fatalf("saved hook: %q, %v", data, err)
		}
		if fi, _ := os.Stat(saved); fi.Mode().Perm() != 0o750 {
			t.Errorf("saved hook mode %v, want 0750", fi.Mode().Perm())
		}
		wantLine(t, rep, "libvirt runs it after virtbridge's hook")
		if !rep.NeedsReload {
			t.Errorf("NeedsReload = false")
		}
	})
}

func TestInstallSavesForeignNonExecutable(t *testing.T) {
	h := newHost(t)
	h.write("etc/libvirt/hooks/qemu", "disabled\n", 0o644)
	h.roundTrip(func(rep Report) {
		wantLine(t, rep, "not executable, so libvirt keeps ignoring it")
		if fi, err := os.Stat(h.path("etc/libvirt/hooks/qemu.d/" + SavedName)); err != nil || fi.Mode().Perm() != 0o644 {
			t.Errorf("saved hook: %v %v", fi, err)
		}
	})
}

func TestInstallKeepsOtherQemuDFiles(t *testing.T) {
	h := newHost(t)
	h.write("etc/libvirt/hooks/qemu", "#!/bin/sh\n", 0o755)
	h.write("etc/libvirt/hooks/qemu.d/10-other", "#!/bin/sh\n", 0o755)
	h.roundTrip(func(Report) {})
}

func TestInstallSavedNameTaken(t *testing.T) {
	h := newHost(t)
	h.write("etc/libvirt/hooks/qemu", "#!/bin/sh\necho new\n", 0o755)
	h.write("etc/libvirt/hooks/qemu.d/"+SavedName, "#!/bin/sh\necho older\n", 0o755)
	h.roundTrip(func(rep Report) {
		data, err := os.ReadFile(h.path("etc/libvirt/hooks/qemu.d/" + SavedName + ".2"))
		if err != nil || string(data) != "#!/bin/sh\necho new\n" {
			t.Errorf("hook saved as .2: %q, %v", data, err)
		}
		data, _ = os.ReadFile(h.path("etc/libvirt/hooks/qemu.d/" + SavedName))
		if string(data) != "#!/bin/sh\necho older\n" {
			t.Errorf("the file that held the name was changed: %q", data)
		}
	})
}

func TestInstallSavesRelativeLink(t *testing.T) {
	h := newHost(t)
	h.write("etc/libvirt/hooks/scripts/mine", "#!/bin/sh\n", 0o755)
	h.symlink("etc/libvirt/hooks/qemu", "scripts/mine")
	if os.Geteuid() == 0 { // the rewritten link keeps the owner (tree shows it)
		if err := os.Lchown(h.path("etc/libvirt/hooks/qemu"), 1234, 5678); err != nil {
			t.Fatal(err)
		}
	}
	h.roundTrip(func(Report) {
		saved := h.path("etc/libvirt/hooks/qemu.d/" + SavedName)
		text, _ := os.Readlink(saved)
		if text != "../scripts/mine" {
			t.Errorf("saved link text %q, want ../scripts/mine", text)
		}
		if fi, err := os.Stat(saved); err != nil || !fi.Mode().IsRegular() {
			t.Errorf("saved link does not reach the script: %v", err)
		}
	})
}

func TestInstallSavesAbsoluteLinkAndDanglingLink(t *testing.T) {
	for name, text := range map[string]string{"absolute": "/opt/vendor/hook", "dangling": "gone"} {
		t.Run(name, func(t *testing.T) {
			h := newHost(t)
			if name == "absolute" {
				h.write("opt/vendor/hook", "#!/bin/sh\n", 0o755)
				text = h.path("opt/vendor/hook")
			}
			h.symlink("etc/libvirt/hooks/qemu", text)
			h.roundTrip(func(Report) {})
		})
	}
}

func TestInstallReplacesOwnCopies(t *testing.T) {
	for name, setup := range map[string]func(h *host){
		"hand copy": func(h *host) { h.write("etc/libvirt/hooks/qemu", fakeHook, 0o755) },
		"link to another": func(h *host) {
			h.write("usr/local/bin/virtbridge-hook", fakeHook, 0o755)
			h.symlink("etc/libvirt/hooks/qemu", h.path("usr/local/bin/virtbridge-hook"))
		},
		"link to a gone one": func(h *host) { h.symlink("etc/libvirt/hooks/qemu", "/usr/local/bin/virtbridge-hook") },
	} {
		t.Run(name, func(t *testing.T) {
			h := newHost(t)
			setup(h)
			rep := h.install()
			h.wantLink()
			wantLine(t, rep, "replaced virtbridge's hook")
			if _, err := os.Lstat(h.path("etc/libvirt/hooks/qemu.d")); !os.IsNotExist(err) {
				t.Errorf("virtbridge's own hook was saved into qemu.d")
			}
			if want := name == "link to a gone one"; rep.NeedsReload != want {
				t.Errorf("NeedsReload = %v, want %v (libvirt already ran the old one: %v)", rep.NeedsReload, want, !want)
			}
			h.uninstall()
			if _, err := os.Lstat(h.path("etc/libvirt/hooks/qemu")); !os.IsNotExist(err) {
				t.Errorf("hook still there after Uninstall: %v", err)
			}
		})
	}
}

func TestInstallRefuses(t *testing.T) {
	for name, c := range map[string]struct {
		setup   func(h *host)
		version int
		want    string
	}{
		"directory":      {func(h *host) { h.mkdir("etc/libvirt/hooks/qemu") }, 9_000_000, "is a directory"},
		"fifo":           {func(h *host) { h.mkdir("etc/libvirt/hooks"); syscall.Mkfifo(h.path("etc/libvirt/hooks/qemu"), 0o644) }, 9_000_000, "special file"},
		"old libvirt":    {func(h *host) { h.write("etc/libvirt/hooks/qemu", "#!/bin/sh\n", 0o755) }, 6_000_000, "libvirt 6.0.0 does not run hooks in"},
		"not our target": {func(h *host) { h.write("usr/bin/virtbridge-hook", "#!/bin/sh\n", 0o755) }, 9_000_000, "is not virtbridge's hook binary"},
	} {
		t.Run(name, func(t *testing.T) {
			h := newHost(t)
			h.version = c.version
			c.setup(h)
			before := h.tree()
			_, err := Install(h.opts)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("Install error = %v, want one saying %q", err, c.want)
			}
			if got := h.tree(); got != before {
				t.Errorf("a refused Install changed the tree:\n%s\nwant\n%s", got, before)
			}
		})
	}
}

func TestInstallOldLibvirtWithoutForeignExecutable(t *testing.T) {
	h := newHost(t)
	h.version = 6_000_000
	h.write("etc/libvirt/hooks/qemu", "off\n", 0o644)
	h.roundTrip(func(Report) {})
}

func TestUninstallLeavesReplacedHook(t *testing.T) {
	h := newHost(t)
	h.write("etc/libvirt/hooks/qemu", "#!/bin/sh\necho first\n", 0o755)
	h.install()
	if err := os.Remove(h.path("etc/libvirt/hooks/qemu")); err != nil {
		t.Fatal(err)
	}
	h.write("etc/libvirt/hooks/qemu", "#!/bin/sh\necho someone else\n", 0o755)
	etc := func() string { // the tree without var/, where the record goes away
		tree, _, _ := strings.Cut(h.tree(), "var ")
		return tree
	}
	before := etc()
	rep := h.uninstall()
	wantLine(t, rep, "it is not virtbridge's hook")
	wantLine(t, rep, "left "+h.path("etc/libvirt/hooks/qemu.d/"+SavedName)+" in place")
	if got := etc(); got != before {
		t.Errorf("Uninstall changed the hooks of someone else:\n%s\nwant\n%s", got, before)
	}
	if _, err := os.Stat(h.opts.Record); !os.IsNotExist(err) {
		t.Errorf("record still there: %v", err)
	}
}

func TestUninstallRestoresWhenHookWasDeleted(t *testing.T) {
	h := newHost(t)
	h.write("etc/libvirt/hooks/qemu", "#!/bin/sh\necho mine\n", 0o755)
	before := h.tree()
	h.install()
	if err := os.Remove(h.path("etc/libvirt/hooks/qemu")); err != nil {
		t.Fatal(err)
	}
	h.uninstall()
	if got := h.tree(); got != before {
		t.Errorf("tree\n%s\nwant\n%s", got, before)
	}
}

func TestUninstallWithoutRecord(t *testing.T) {
	h := newHost(t)
	h.write("etc/libvirt/hooks/qemu", "#!/bin/sh\necho mine\n", 0o755)
	h.install()
	if err := os.Remove(h.opts.Record); err != nil {
		t.Fatal(err)
	}
	rep := h.uninstall()
	wantLine(t, rep, "put back the hook")
	data, err := os.ReadFile(h.path("etc/libvirt/hooks/qemu"))
	if err != nil || string(data) != "#!/bin/sh\necho mine\n" {
		t.Errorf("hook after Uninstall: %q, %v", data, err)
	}
	// Without the record it cannot know it created qemu.d: it stays.
	if _, err := os.Stat(h.path("etc/libvirt/hooks/qemu.d")); err != nil {
		t.Errorf("qemu.d: %v", err)
	}
}

func TestUninstallKeepsDirsThatGotFiles(t *testing.T) {
	h := newHost(t)
	h.install()
	h.write("etc/libvirt/hooks/daemon", "#!/bin/sh\n", 0o755)
	h.uninstall()
	if _, err := os.Stat(h.path("etc/libvirt/hooks/daemon")); err != nil {
		t.Errorf("a file added after Install is gone: %v", err)
	}
}

func TestRebaseLink(t *testing.T) {
	for _, c := range []struct{ text, from, to, want string }{
		{"x", "/h", "/h/qemu.d", "../x"},
		{"../x", "/h/qemu.d", "/h", "x"},
		{"../../y", "/h", "/h/qemu.d", "../../../y"},
		{"/abs", "/h", "/h/qemu.d", "/abs"},
		{"x", "/h/qemu.d", "/h", "qemu.d/x"},
	} {
		if got := rebaseLink(c.text, c.from, c.to); got != c.want {
			t.Errorf("rebaseLink(%q, %q, %q) = %q, want %q", c.text, c.from, c.to, got, c.want)
		}
	}
}

func TestParseVersion(t *testing.T) {
	for in, want := range map[string]int{
		"libvirtd (libvirt) 9.0.0\n":    9_000_000,
		"virtqemud (libvirt) 10.10.0":   10_010_000,
		"libvirtd (libvirt) 6.5.1\n":    6_005_001,
		"something else entirely 1.2.3": -1,
	} {
		got, ok := parseVersion(in)
		if want == -1 && ok || want != -1 && (!ok || got != want) {
			t.Errorf("parseVersion(%q) = %d, %v; want %d", in, got, ok, want)
		}
	}
	if s := versionString(6_005_001); s != "6.5.1" {
		t.Errorf("versionString = %q", s)
	}
}
