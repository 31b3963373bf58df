package paths_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/virtbridge/virtbridge/internal/paths"
	"github.com/virtbridge/virtbridge/internal/testenv/pathstest"
)

// TestWriteAtomicTraced is run by TestWriteAtomicIsDurable under strace.
func TestWriteAtomicTraced(t *testing.T) {
	dir := os.Getenv(pathstest.TraceDirEnv)
	if dir == "" {
		t.Skip("run by TestWriteAtomicIsDurable")
	}
	if err := paths.WriteAtomic(filepath.Join(dir, "state"), []byte("new\n"), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestWriteAtomicIsDurable checks the system calls: the temp file is
// fsync'd before it is renamed over the file, and the directory after.
func TestWriteAtomicIsDurable(t *testing.T) {
	got := pathstest.TraceSyncs(t, "TestWriteAtomicTraced")
	want := "fsync DIR/.state.tmp-*\nrename DIR/.state.tmp-* DIR/state\nfsync DIR\n"
	if got != want {
		t.Fatalf("system calls:\n%s\nwant:\n%s", got, want)
	}
}

// TestWriteAtomic: the file gets the data and exactly its mode under a
// hostile umask; a symlink planted at the path or at temp names is
// replaced or removed, its target untouched; other files stay.
func TestWriteAtomic(t *testing.T) {
	pathstest.Umask(t, 0o077)
	v := pathstest.NewVictim(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "state")
	pathstest.Plant(t, v.Path, path)
	pathstest.Plant(t, v.Path, filepath.Join(dir, paths.TempPrefix(path)+"1"))
	if err := os.WriteFile(filepath.Join(dir, "other"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, data := range []string{"one\n", "two\n"} {
		if err := paths.WriteAtomic(path, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(path)
		st, serr := os.Lstat(path)
		if err != nil || serr != nil || string(b) != data || st.Mode() != 0o644 {
			t.Fatalf("after writing %q: %q, mode %v, %v %v", data, b, st.Mode(), err, serr)
		}
	}
	v.Unchanged(t)
	if got := dirNames(t, dir); got != "other state" {
		t.Fatalf("directory holds %q, want %q", got, "other state")
	}
}

func dirNames(t *testing.T, dir string) string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return strings.Join(names, " ")
}

// killedWriterEnv makes TestWriteAtomicKilledWriter's child write in a
// loop until it is killed.
const killedWriterEnv = "VBX_KILLED_WRITER"

func TestMain(m *testing.M) {
	if path := os.Getenv(killedWriterEnv); path != "" {
		data := []byte(strings.Repeat("x", 8<<20))
		for {
			if err := paths.WriteAtomic(path, data, 0o644); err != nil {
				os.Stderr.WriteString(err.Error() + "\n")
				os.Exit(1)
			}
		}
	}
	os.Exit(m.Run())
}

// TestWriteAtomicKilledWriter kills (SIGKILL) a process writing the file
// in a loop until one leaves a temp file behind; the next WriteAtomic
// removes it, and the file holds the last complete write.
func TestWriteAtomicKilledWriter(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "state")
	left := ""
	for try := 0; try < 20 && left == ""; try++ {
		cmd := exec.Command(os.Args[0])
		cmd.Env = append(os.Environ(), killedWriterEnv+"="+path)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		waitFor(t, func() bool { return strings.Contains(dirNames(t, dir), paths.TempPrefix(path)) })
		cmd.Process.Signal(syscall.SIGKILL)
		cmd.Wait()
		if names := dirNames(t, dir); strings.Contains(names, paths.TempPrefix(path)) {
			left = names
		}
	}
	if left == "" {
		t.Fatal("20 killed writers left no temp file")
	}
	t.Logf("a killed writer left: %s", left)
	if err := paths.WriteAtomic(path, []byte("after\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := dirNames(t, dir); got != "state" {
		t.Fatalf("directory holds %q, want only state", got)
	}
	if b, _ := os.ReadFile(path); string(b) != "after\n" {
		t.Fatalf("state = %.20q", b)
	}
}

// waitFor polls cond for up to 30 s (a loaded machine is slow).
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); !cond(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("timed out waiting for a temp file")
		}
	}
}
