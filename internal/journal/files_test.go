package journal

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/virtbridge/virtbridge/internal/paths"
	"github.com/virtbridge/virtbridge/internal/testenv/pathstest"
)

// TestFallbackFileModes: the JSON-lines file, its marker and its directory
// get their modes whatever the umask.
func TestFallbackFileModes(t *testing.T) {
	pathstest.Umask(t, 0o077)
	dir := t.TempDir()
	w := fileWriter(t, dir, &bytes.Buffer{}, &fakeClock{t: time.Unix(0, 0)})
	if err := w.Refused(context.Background(), web01, "test"); err != nil {
		t.Fatal(err)
	}
	for p, want := range map[string]os.FileMode{
		filepath.Dir(w.File()): paths.DirMode, w.File(): FileMode, w.File() + NoticeSuffix: FileMode,
	} {
		if st, err := os.Lstat(p); err != nil || st.Mode().Perm() != want {
			t.Errorf("%s: mode %v (%v), want %04o", p, st.Mode().Perm(), err, want)
		}
	}
}

// TestFallbackFileRefusesPlantedLinks: a symlink planted as the fallback
// file, as its notice marker or as its directory is never written
// through; the record fails with an error naming the link.
func TestFallbackFileRefusesPlantedLinks(t *testing.T) {
	for _, at := range []string{"file", "marker", "dir"} {
		t.Run(at, func(t *testing.T) {
			v := pathstest.NewVictim(t)
			dir := t.TempDir()
			var stderr bytes.Buffer
			w := fileWriter(t, dir, &stderr, &fakeClock{t: time.Unix(0, 0)})
			logDir := filepath.Dir(w.File())
			link := map[string]string{"file": w.File(), "marker": w.File() + NoticeSuffix, "dir": logDir}[at]
			target := v.Path
			if at == "dir" {
				target = filepath.Dir(v.Path)
			} else if err := os.Mkdir(logDir, 0o755); err != nil {
				t.Fatal(err)
			}
			pathstest.Plant(t, target, link)
			err := w.Refused(context.Background(), web01, "test")
			var ue *paths.UnsafeError
			switch at {
			case "marker":
				// The record is written; the notice is given without a
				// marker rather than through the link.
				if err != nil {
					t.Fatal(err)
				}
			default:
				if !errors.As(err, &ue) || ue.Path != link || !strings.Contains(err.Error(), "symbolic link") {
					t.Fatalf("Write: %v, want a refusal of %s", err, link)
				}
				t.Logf("refused: %v", err)
			}
			v.Unchanged(t)
			if ents, _ := os.ReadDir(filepath.Dir(v.Path)); len(ents) != 1 {
				t.Errorf("files created next to the victim: %v", ents)
			}
		})
	}
}
