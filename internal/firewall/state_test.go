package firewall

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/virtbridge/virtbridge/internal/testenv/pathstest"
)

// TestSaveStateTraced is run by TestSaveStateIsDurable under strace.
func TestSaveStateTraced(t *testing.T) {
	dir := os.Getenv(pathstest.TraceDirEnv)
	if dir == "" {
		t.Skip("run by TestSaveStateIsDurable")
	}
	if err := saveState(filepath.Join(dir, "firewall.state"), state{Backend: BackendAuto}); err != nil {
		t.Fatal(err)
	}
}

// TestSaveStateIsDurable: the state is replaced like the store, the temp
// file fsync'd before the rename and the directory after, so a power cut
// cannot leave an empty state file.
func TestSaveStateIsDurable(t *testing.T) {
	got := pathstest.TraceSyncs(t, "TestSaveStateTraced")
	want := "fsync DIR/.firewall.state.tmp-*\nrename DIR/.firewall.state.tmp-* DIR/firewall.state\nfsync DIR\n"
	if got != want {
		t.Fatalf("system calls:\n%s\nwant:\n%s", got, want)
	}
}

// TestSaveStateRemovesStaleTemps: a writer SIGKILLed between creating its
// temp file and renaming it leaves the temp file behind; the next save
// removes it, and leaves other files alone.
func TestSaveStateRemovesStaleTemps(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "firewall.state")
	for _, f := range []string{".firewall.state.tmp-123", ".firewall.state.tmp-456", "other"} {
		if err := os.WriteFile(filepath.Join(dir, f), []byte(`{"boot_id":`), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := saveState(path, state{Backend: BackendAuto}); err != nil {
		t.Fatal(err)
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	if len(names) != 2 || names[0] != "firewall.state" || names[1] != "other" {
		t.Fatalf("after a save the directory holds %v, want [firewall.state other]", names)
	}
	if s, err := loadState(path); err != nil || s == nil || s.Backend != BackendAuto {
		t.Fatalf("loadState = %+v, %v", s, err)
	}
}

// TestUntrustedStateIsNoState: a state file that is a symbolic link, or that
// group or others may write, is not believed (the fast path would skip
// reading the rules on its word); the next save replaces the link itself
// and leaves its target alone.
func TestUntrustedStateIsNoState(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.state")
	if err := saveState(good, state{Backend: BackendAuto}); err != nil {
		t.Fatal(err)
	}
	if s, err := loadState(good); err != nil || s == nil {
		t.Fatalf("a saved state reads back: %+v, %v", s, err)
	}
	content, _ := os.ReadFile(good)

	link := filepath.Join(dir, "firewall.state")
	if err := os.Symlink(good, link); err != nil {
		t.Fatal(err)
	}
	if s, err := loadState(link); err != nil || s != nil {
		t.Fatalf("loadState(symlink) = %+v, %v; want no state", s, err)
	}
	if err := saveState(link, state{Backend: BackendLegacy}); err != nil {
		t.Fatal(err)
	}
	if st, err := os.Lstat(link); err != nil || !st.Mode().IsRegular() {
		t.Fatalf("the save did not replace the link with a file: %v %v", st, err)
	}
	if after, _ := os.ReadFile(good); string(after) != string(content) {
		t.Fatalf("the link's target was written: %q", after)
	}

	open := filepath.Join(dir, "open.state")
	if err := os.WriteFile(open, content, 0o666); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(open, 0o666); err != nil {
		t.Fatal(err)
	}
	if s, err := loadState(open); err != nil || s != nil {
		t.Fatalf("loadState(world-writable) = %+v, %v; want no state", s, err)
	}
}
