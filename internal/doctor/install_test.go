package doctor

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

type fakeDaemons []Daemon

func (f fakeDaemons) Daemons() ([]Daemon, error) { return f, nil }

func writeHook(t *testing.T, path, content string, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	writeHook(t, to, string(b), 0o755)
}

func install(dir string, ds Daemons) *Report {
	r := &Report{}
	checkInstall(r, dir, ds)
	return r
}

// TestInstallHook provokes each installation problem in a hooks directory
// of its own and checks the verdict.
func TestInstallHook(t *testing.T) {
	bin := buildHook(t, t.TempDir())
	none := fakeDaemons(nil)
	for _, tc := range []struct {
		name   string
		setup  func(t *testing.T, dir string)
		status Status
		object string
		says   []string
	}{
		{"no hook", func(*testing.T, string) {}, Fail, "qemu", []string{"no qemu hook installed", "virtbridge install-hook --reload"}},
		{"virtbridge's binary", func(t *testing.T, d string) { copyFile(t, bin, filepath.Join(d, "qemu")) }, OK, "qemu",
			[]string{"virtbridge's hook, executable"}},
		{"not executable", func(t *testing.T, d string) {
			copyFile(t, bin, filepath.Join(d, "qemu"))
			os.Chmod(filepath.Join(d, "qemu"), 0o644)
		}, Fail, "qemu", []string{"not an executable file", "chmod 0755"}},
		{"a wrapper script calling it", func(t *testing.T, d string) {
			writeHook(t, filepath.Join(d, "qemu"), "#!/bin/sh\nexec "+bin+" \"$@\"\n", 0o755)
		}, OK, "qemu", []string{"calls " + bin}},
		{"a wrapper calling a missing program", func(t *testing.T, d string) {
			writeHook(t, filepath.Join(d, "qemu"), "#!/bin/sh\nexec /usr/libexec/nowhere/virtbridge-hook \"$@\"\n", 0o755)
		}, Fail, "qemu", []string{"missing or not executable"}},
		{"a wrapper calling another program of that name", func(t *testing.T, d string) {
			fake := filepath.Join(d, "bin", "virtbridge-hook")
			writeHook(t, fake, "#!/bin/sh\nexit 0\n", 0o755)
			writeHook(t, filepath.Join(d, "qemu"), "#!/bin/sh\n"+fake+" \"$@\"\n", 0o755)
		}, Fail, "qemu", []string{"not virtbridge's hook"}},
		{"another hook only", func(t *testing.T, d string) {
			writeHook(t, filepath.Join(d, "qemu"), "#!/bin/sh\n# passthrough helper\nexit 0\n", 0o755)
		}, Fail, "qemu", []string{"another hook is installed", "install-hook --reload`: it keeps the other hook in"}},
		{"a link to virtbridge's binary, as install-hook makes it", func(t *testing.T, d string) {
			if err := os.Symlink(bin, filepath.Join(d, "qemu")); err != nil {
				t.Fatal(err)
			}
		}, OK, "qemu", []string{"virtbridge's hook, executable"}},
		{"virtbridge's in qemu.d beside another", func(t *testing.T, d string) {
			writeHook(t, filepath.Join(d, "qemu"), "#!/bin/sh\nexit 0\n", 0o755)
			copyFile(t, bin, filepath.Join(d, "qemu.d", "50-virtbridge"))
		}, OK, "qemu.d/50-virtbridge", []string{"virtbridge's hook"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			tc.setup(t, dir)
			r := install(dir, none)
			f := one(t, r, "hook", filepath.Join(dir, tc.object))
			want(t, f, tc.status, tc.says...)
			if tc.name == "virtbridge's in qemu.d beside another" {
				want(t, one(t, r, "hook-other", filepath.Join(dir, "qemu")), OK, "another hook")
			}
		})
	}
}

// TestInstallDaemonStartedBeforeHook: a daemon that started before any
// qemu hook existed does not call it; one started after does.
func TestInstallDaemonStartedBeforeHook(t *testing.T) {
	dir := t.TempDir()
	bin := buildHook(t, dir)
	copyFile(t, bin, filepath.Join(dir, "hooks", "qemu"))
	st, err := os.Stat(filepath.Join(dir, "hooks", "qemu"))
	if err != nil {
		t.Fatal(err)
	}
	installed := ctime(st)

	before := install(filepath.Join(dir, "hooks"), fakeDaemons{{Name: "libvirtd", PID: 42, Started: installed.Add(-time.Minute)}})
	want(t, one(t, before, "daemon", "libvirtd (pid 42)"), Warn, "before the hooks appeared", "systemctl reload libvirtd", "kill -HUP 42")

	after := install(filepath.Join(dir, "hooks"), fakeDaemons{{Name: "virtqemud", PID: 7, Started: installed.Add(time.Minute)}})
	want(t, one(t, after, "daemon", "virtqemud (pid 7)"), OK, "it calls them")

	// Within the margin (start times are known to about a tick): no alarm.
	close := install(filepath.Join(dir, "hooks"), fakeDaemons{{Name: "libvirtd", PID: 1, Started: installed.Add(-reloadMargin / 2)}})
	want(t, one(t, close, "daemon", "libvirtd (pid 1)"), OK)

	// A link counts from when it was made: upgrading its target (a new
	// binary, a new ctime) does not make libvirt lose the hook.
	links := filepath.Join(dir, "hooks3")
	os.MkdirAll(links, 0o755)
	if err := os.Symlink(bin, filepath.Join(links, "qemu")); err != nil {
		t.Fatal(err)
	}
	lst, _ := os.Lstat(filepath.Join(links, "qemu"))
	time.Sleep(10 * time.Millisecond)
	if err := os.Chmod(bin, 0o755); err != nil { // the "upgrade": the target's ctime moves on
		t.Fatal(err)
	}
	h, _, err := inspectHook(filepath.Join(links, "qemu"))
	if err != nil || !h.changed.Equal(ctime(lst)) {
		t.Errorf("a link's time is its own: %v, %v; want %v", h.changed, err, ctime(lst))
	}

	// libvirt caches whether any qemu hook exists: a hook that was there
	// before the start (another one) makes it read qemu.d at every call,
	// so virtbridge's, added there later, is called.
	t0 := time.Now().Add(-time.Hour)
	vb := hookFile{path: "qemu.d/virtbridge", executable: true, virtbridge: true, changed: t0.Add(time.Hour)}
	started := fakeDaemons{{Name: "libvirtd", PID: 3, Started: t0.Add(time.Minute)}}
	r := &Report{}
	checkDaemons(r, []hookFile{{path: "qemu", executable: true, changed: t0}, vb}, started)
	want(t, one(t, r, "daemon", "libvirtd (pid 3)"), OK)
	r = &Report{}
	checkDaemons(r, []hookFile{vb}, started)
	want(t, one(t, r, "daemon", "libvirtd (pid 3)"), Warn)
	// A hook that is not executable does not count as present.
	r = &Report{}
	checkDaemons(r, []hookFile{{path: "qemu", changed: t0}, vb}, started)
	want(t, one(t, r, "daemon", "libvirtd (pid 3)"), Warn)

	none := install(filepath.Join(dir, "hooks"), fakeDaemons{})
	want(t, one(t, none, "daemon", "libvirtd"), OK, "looks for hooks when it starts")
}

// TestProcDaemons reads a proc file system laid out like the kernel's:
// only libvirt daemons of the caller's network namespace count, with start
// times from their stat line.
func TestProcDaemons(t *testing.T) {
	root := t.TempDir()
	link := func(target, path string) {
		os.MkdirAll(filepath.Dir(path), 0o755)
		if err := os.Symlink(target, path); err != nil {
			t.Fatal(err)
		}
	}
	file := func(path, content string) {
		os.MkdirAll(filepath.Dir(path), 0o755)
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	stat := func(pid, comm string, ticks string) string {
		// pid (comm) state ppid ... field 22 = starttime
		f := strings.Fields("S 1 1 1 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 " + ticks + " 1000 100")
		return pid + " (" + comm + ") " + strings.Join(f, " ") + "\n"
	}
	link("net:[4026531840]", filepath.Join(root, "self", "ns", "net"))
	file(filepath.Join(root, "uptime"), "1000.00 1800.00\n")
	for _, p := range []struct{ pid, comm, ns, ticks string }{
		{"100", "libvirtd", "net:[4026531840]", "50000"},  // ours, started at 500 s
		{"200", "libvirtd", "net:[4026532999]", "60000"},  // a lab's, elsewhere
		{"300", "bash", "net:[4026531840]", "70000"},      // not a daemon
		{"400", "virtqemud", "net:[4026531840]", "90000"}, // ours, started at 900 s
	} {
		file(filepath.Join(root, p.pid, "comm"), p.comm+"\n")
		link(p.ns, filepath.Join(root, p.pid, "ns", "net"))
		file(filepath.Join(root, p.pid, "stat"), stat(p.pid, p.comm, p.ticks))
	}
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	ds, err := ProcDaemons{Root: root, Now: func() time.Time { return now }}.Daemons()
	if err != nil {
		t.Fatal(err)
	}
	boot := now.Add(-1000 * time.Second)
	wantDs := []Daemon{{"libvirtd", 100, boot.Add(500 * time.Second)}, {"virtqemud", 400, boot.Add(900 * time.Second)}}
	if len(ds) != len(wantDs) {
		t.Fatalf("got %+v, want %+v", ds, wantDs)
	}
	for i := range ds {
		if ds[i].Name != wantDs[i].Name || ds[i].PID != wantDs[i].PID || !ds[i].Started.Equal(wantDs[i].Started) {
			t.Errorf("daemon %d: got %+v, want %+v", i, ds[i], wantDs[i])
		}
	}
}

// TestStartTicks: a command name with spaces and parentheses does not
// shift the fields.
func TestStartTicks(t *testing.T) {
	line := "77 (a) b (c)) S 1 1 1 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 12345 1000 100\n"
	if got, err := startTicks(line); err != nil || got != 12345 {
		t.Fatalf("startTicks = %d, %v; want 12345", got, err)
	}
	if _, err := startTicks("garbage"); err == nil {
		t.Fatal("no error for a line without a command name")
	}
}
