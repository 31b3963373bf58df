// Package pathstest helps test that virtbridge's files resist planted
// symlinks and a hostile umask.
package pathstest

import (
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// Victim is a file, outside virtbridge's directories, that a planted
// symlink points at.
type Victim struct{ Path string }

const victimText = "precious\n"

// NewVictim makes a victim file (mode 0600) in a fresh directory.
func NewVictim(t testing.TB) Victim {
	t.Helper()
	v := Victim{filepath.Join(t.TempDir(), "victim")}
	if err := os.WriteFile(v.Path, []byte(victimText), 0o600); err != nil {
		t.Fatal(err)
	}
	return v
}

// Unchanged fails the test when the victim's content or mode changed.
func (v Victim) Unchanged(t testing.TB) {
	t.Helper()
	b, err := os.ReadFile(v.Path)
	st, serr := os.Stat(v.Path)
	if err != nil || serr != nil || string(b) != victimText || st.Mode().Perm() != 0o600 {
		t.Fatalf("the victim %s was touched: %q, mode %v, %v", v.Path, b, st.Mode(), errors.Join(err, serr))
	}
}

// Plant makes link a symlink to target.
func Plant(t testing.TB, target, link string) {
	t.Helper()
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
}

// Umask sets the process umask for the rest of the test (as libvirtd may
// hand the hook one), so that modes prove to be set explicitly. Tests that
// use it must not run in parallel.
func Umask(t testing.TB, mask int) {
	old := syscall.Umask(mask)
	t.Cleanup(func() { syscall.Umask(old) })
}
