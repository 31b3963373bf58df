package paths

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/virtbridge/virtbridge/internal/testenv/pathstest"
)

func wantUnsafe(t *testing.T, err error, path, problem string) {
	t.Helper()
	var ue *UnsafeError
	if !errors.As(err, &ue) || ue.Path != path || !strings.Contains(err.Error(), problem) {
		t.Fatalf("error %v, want an *UnsafeError on %s saying %q", err, path, problem)
	}
	t.Logf("refused: %v", err)
}

func TestEnsureDir(t *testing.T) {
	pathstest.Umask(t, 0o077)
	base := t.TempDir()
	dir := filepath.Join(base, "a", "state")
	if err := EnsureDir(dir); err != nil {
		t.Fatal(err)
	}
	if st, err := os.Lstat(dir); err != nil || st.Mode().Perm() != 0o755 || !st.IsDir() {
		t.Fatalf("created %v %v, want a 0755 directory", st.Mode(), err)
	}
	if err := EnsureDir(dir); err != nil {
		t.Fatalf("second EnsureDir: %v", err)
	}

	// A symlink as the directory itself, to a directory elsewhere.
	elsewhere := t.TempDir()
	link := filepath.Join(base, "linked")
	if err := os.Symlink(elsewhere, link); err != nil {
		t.Fatal(err)
	}
	wantUnsafe(t, EnsureDir(link), link, "symbolic link")

	open := filepath.Join(base, "open")
	if err := os.Mkdir(open, 0o755); err != nil {
		t.Fatal(err)
	}
	os.Chmod(open, 0o777)
	err := EnsureDir(open)
	wantUnsafe(t, err, open, "writable by group or others (mode 0777)")
	if !strings.Contains(err.Error(), "chmod 755 "+open) {
		t.Errorf("no fix in %v", err)
	}
	os.Chmod(open, 0o775)
	wantUnsafe(t, EnsureDir(open), open, "writable by group or others")

	file := filepath.Join(base, "file")
	os.WriteFile(file, nil, 0o644)
	wantUnsafe(t, EnsureDir(file), file, "not a directory")

	if os.Geteuid() == 0 {
		other := filepath.Join(base, "other")
		os.Mkdir(other, 0o755)
		os.Chown(other, 65534, 65534)
		wantUnsafe(t, EnsureDir(other), other, "owned by uid 65534")
	}
}

func TestOpenFile(t *testing.T) {
	pathstest.Umask(t, 0o077)
	dir := t.TempDir()
	path := filepath.Join(dir, "f")
	f, err := OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	if st, _ := os.Stat(path); st.Mode().Perm() != 0o644 {
		t.Fatalf("created with %v under umask 077, want 0644", st.Mode().Perm())
	}
	// An existing file keeps its mode: only a created one is set.
	os.Chmod(path, 0o600)
	if f, err = OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if st, _ := os.Stat(path); st.Mode().Perm() != 0o600 {
		t.Fatalf("existing file's mode changed to %v", st.Mode().Perm())
	}

	v := pathstest.NewVictim(t)
	link := filepath.Join(dir, "link")
	os.Symlink(v.Path, link)
	for _, flag := range []int{os.O_RDONLY, os.O_RDWR | os.O_CREATE, os.O_WRONLY | os.O_APPEND | os.O_CREATE, os.O_WRONLY | os.O_CREATE | os.O_TRUNC} {
		_, err := OpenFile(link, flag, 0o644)
		wantUnsafe(t, err, link, "symbolic link")
	}
	_, err = OpenFile(link, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if !errors.Is(err, os.ErrExist) {
		t.Fatalf("O_EXCL on a symlink: %v, want exists", err)
	}
	// A dangling link must not create its target either.
	dangling := filepath.Join(dir, "dangling")
	target := filepath.Join(t.TempDir(), "created-through-link")
	os.Symlink(target, dangling)
	_, err = OpenFile(dangling, os.O_RDWR|os.O_CREATE, 0o644)
	wantUnsafe(t, err, dangling, "symbolic link")
	if _, err := os.Lstat(target); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a dangling link's target was created: %v", err)
	}
	v.Unchanged(t)

	ww := filepath.Join(dir, "ww")
	os.WriteFile(ww, nil, 0o644)
	os.Chmod(ww, 0o666)
	_, err = OpenFile(ww, os.O_RDONLY, 0)
	wantUnsafe(t, err, ww, "writable by group or others (mode 0666)")

	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { _, err := OpenFile(fifo, os.O_RDONLY, 0); done <- err }()
	select {
	case err := <-done:
		wantUnsafe(t, err, fifo, "not a regular file")
	case <-time.After(10 * time.Second):
		t.Fatal("opening a FIFO blocked")
	}
	_, err = OpenFile("/dev/zero", os.O_RDONLY, 0)
	wantUnsafe(t, err, "/dev/zero", "not a regular file")

	if os.Geteuid() == 0 {
		other := filepath.Join(dir, "other")
		os.WriteFile(other, nil, 0o644)
		os.Chown(other, 65534, 65534)
		_, err = OpenFile(other, os.O_RDWR, 0)
		wantUnsafe(t, err, other, "owned by uid 65534")
	}
}
