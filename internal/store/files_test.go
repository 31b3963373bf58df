package store

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/virtbridge/virtbridge/internal/paths"
	"github.com/virtbridge/virtbridge/internal/testenv/pathstest"
)

// saveOne loads the store at path, records one NIC and saves it.
func saveOne(path string) (*Store, error) {
	s, err := Load(path)
	if err != nil {
		return nil, err
	}
	if _, _, err := s.Attach(Entry{UUID: uuidA, VM: "web01", MAC: "52:54:00:aa:00:01", Tap: "vnet0", Bridge: "br0", Since: t0}); err != nil {
		return nil, err
	}
	return s, s.Save()
}

// TestModesUnderHostileUmask: the store and a state directory it creates
// get their modes whatever the umask.
func TestModesUnderHostileUmask(t *testing.T) {
	pathstest.Umask(t, 0o077)
	dir := filepath.Join(t.TempDir(), "state")
	path := filepath.Join(dir, "ports.json")
	if _, err := saveOne(path); err != nil {
		t.Fatal(err)
	}
	for p, want := range map[string]os.FileMode{dir: 0o755, path: FileMode} {
		if st, err := os.Lstat(p); err != nil || st.Mode().Perm() != want {
			t.Errorf("%s: mode %v (%v), want %04o", p, st.Mode().Perm(), err, want)
		}
	}
}

// TestPlantedSymlinkAtStore: a symlink at ports.json pointing at a victim
// is moved aside as untrusted (the link itself); the victim is neither
// read as the store nor written.
func TestPlantedSymlinkAtStore(t *testing.T) {
	v := pathstest.NewVictim(t)
	path := filepath.Join(t.TempDir(), "ports.json")
	pathstest.Plant(t, v.Path, path)
	var ue *paths.UnsafeError
	if _, err := Read(path); !errors.As(err, &ue) {
		t.Fatalf("Read through a symlink: %v, want an *UnsafeError", err)
	}
	s, err := saveOne(path)
	if err != nil {
		t.Fatal(err)
	}
	r := s.Recovered()
	if r == nil || !strings.HasPrefix(r.MovedTo, path+".untrusted-") || !errors.As(r.Cause, &ue) {
		t.Fatalf("Recovered() = %+v, want the link moved aside as untrusted", r)
	}
	if st, err := os.Lstat(r.MovedTo); err != nil || st.Mode()&os.ModeSymlink == 0 {
		t.Fatalf("the link itself was not moved to %s: %v", r.MovedTo, err)
	}
	if st, err := os.Lstat(path); err != nil || !st.Mode().IsRegular() {
		t.Fatalf("the store is not a regular file after Save: %v", err)
	}
	v.Unchanged(t)
}

// TestPlantedSymlinkAtTempFile: symlinks named like the store's temp files
// (the only predictable part of the name is the prefix) are removed, never
// written through.
func TestPlantedSymlinkAtTempFile(t *testing.T) {
	v := pathstest.NewVictim(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "ports.json")
	for _, name := range []string{paths.TempPrefix(path) + "1", paths.TempPrefix(path) + "x"} {
		pathstest.Plant(t, v.Path, filepath.Join(dir, name))
	}
	if _, err := saveOne(path); err != nil {
		t.Fatal(err)
	}
	if left, _ := filepath.Glob(filepath.Join(dir, ".ports.json.tmp-*")); len(left) != 0 {
		t.Errorf("temp names left: %v", left)
	}
	v.Unchanged(t)
}

// TestUnsafeStateDir: a state directory that is a symlink to a directory
// elsewhere, writable by others, or owned by someone else is refused with
// the fix; nothing is written into it or its target.
func TestUnsafeStateDir(t *testing.T) {
	base := t.TempDir()
	elsewhere := t.TempDir()
	link := filepath.Join(base, "state-link")
	pathstest.Plant(t, elsewhere, link)
	open := filepath.Join(base, "state-open")
	os.Mkdir(open, 0o755)
	os.Chmod(open, 0o777)
	cases := map[string]string{link: "symbolic link", open: "chmod 755 " + open}
	if os.Geteuid() == 0 {
		other := filepath.Join(base, "state-other")
		os.Mkdir(other, 0o755)
		os.Chown(other, 65534, 65534)
		cases[other] = "chown root:root " + other
	}
	for dir, want := range cases {
		path := filepath.Join(dir, "ports.json")
		_, err := saveOne(path)
		var ue *paths.UnsafeError
		if !errors.As(err, &ue) || ue.Path != dir || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want a refusal of the directory saying %q", dir, err, want)
		}
		s := New(path)
		mustAttach(t, s, Entry{UUID: uuidA, MAC: "52:54:00:aa:00:01", Tap: "vnet0", Bridge: "br0"})
		if err := s.Save(); !errors.As(err, &ue) {
			t.Errorf("Save into %s: %v, want a refusal", dir, err)
		}
		if ents, _ := os.ReadDir(dir); len(ents) != 0 {
			t.Errorf("%s: files written: %v", dir, ents)
		}
	}
}

// TestUntrustedStoreMovedAside: a store others may write (or, as root, one
// another user owns) may hold forged entries: a writer moves it aside.
func TestUntrustedStoreMovedAside(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "ports.json")
	if _, err := saveOne(path); err != nil {
		t.Fatal(err)
	}
	os.Chmod(path, 0o666)
	s, err := saveOne(path)
	if err != nil {
		t.Fatal(err)
	}
	r := s.Recovered()
	if r == nil || !strings.Contains(r.Cause.Error(), "writable by group or others") {
		t.Fatalf("Recovered() = %+v, want the world-writable store moved aside", r)
	}
	if st, _ := os.Stat(path); st.Mode().Perm() != FileMode {
		t.Errorf("new store mode %v", st.Mode().Perm())
	}
}
