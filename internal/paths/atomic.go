package paths

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// TempPrefix names the temporary files WriteAtomic makes beside path
// (".NAME.tmp-"); a killed writer's are removed by the next WriteAtomic.
func TempPrefix(path string) string { return "." + filepath.Base(path) + ".tmp-" }

// WriteAtomic replaces path with data, mode perm whatever the umask: a temp
// file in the same directory (created with O_EXCL, which never follows a
// symlink), written, fsync'd, renamed over path, then the directory
// fsync'd. A crash at any point leaves the old file or the new one, and
// after the call returns the new one survives a power cut. The rename
// replaces whatever is at path, a planted symlink included, never a
// symlink's target. The directory must be safe (EnsureDir; it is created
// if missing). Temp files of earlier writers that were killed are removed
// first: callers serialize their writers (the host lock), so none is a
// live writer's. Idempotent.
func WriteAtomic(path string, data []byte, perm fs.FileMode) error {
	dir := filepath.Dir(path)
	if err := EnsureDir(dir); err != nil {
		return err
	}
	removeStaleTemps(path)
	f, err := os.CreateTemp(dir, TempPrefix(path)+"*")
	if err != nil {
		return fmt.Errorf("creating a temporary file: %w", err)
	}
	tmp := f.Name()
	err = writeSync(f, data, perm)
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	return SyncDir(dir)
}

func writeSync(f *os.File, data []byte, perm fs.FileMode) error {
	_, err := f.Write(data)
	if err == nil {
		err = f.Chmod(perm)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("writing %s: %w", f.Name(), err)
	}
	return nil
}

// removeStaleTemps deletes the temp files of writers killed between
// CreateTemp and Rename, which nothing else would ever delete.
func removeStaleTemps(path string) {
	dir, prefix := filepath.Dir(path), TempPrefix(path)
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), prefix) {
			os.Remove(filepath.Join(dir, e.Name()))
		}
	}
}

// SyncDir fsyncs directory dir, so that a rename or creation in it survives
// a power cut.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("syncing directory %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("syncing directory %s: %w", dir, err)
	}
	return nil
}
