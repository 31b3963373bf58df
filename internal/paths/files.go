package paths

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// UnsafeError is a file or directory virtbridge refuses to use: a symlink,
// not a regular file (or directory), owned by someone else, or writable by
// group or others. Anyone able to plant such a thing could make root write
// elsewhere or feed virtbridge forged state.
type UnsafeError struct {
	Path    string
	Problem string // "it is a symbolic link"
	Fix     string // what the administrator should do
}

func (e *UnsafeError) Error() string {
	return fmt.Sprintf("refusing to use %s: %s; %s", e.Path, e.Problem, e.Fix)
}

// DirMode is the mode of the directories virtbridge creates.
const DirMode = 0o755

// EnsureDir makes dir usable for virtbridge's files: when missing it is
// created (with its parents) with mode 0755 whatever the umask; when
// present it must be a real directory (a symlink as dir itself is
// refused), owned by root or the effective user and not writable by group
// or others, else an *UnsafeError names it and the fix. Idempotent.
func EnsureDir(dir string) error {
	st, err := os.Lstat(dir)
	if errors.Is(err, fs.ErrNotExist) {
		if err := os.MkdirAll(dir, DirMode); err != nil {
			return fmt.Errorf("creating directory %s: %w", dir, err)
		}
		if st, err = os.Lstat(dir); err == nil && st.IsDir() && st.Mode().Perm() != DirMode && owned(st) {
			err = os.Chmod(dir, DirMode) // MkdirAll's mode went through the umask
		}
	}
	if err != nil {
		return fmt.Errorf("checking directory %s: %w", dir, err)
	}
	fix := fmt.Sprintf("make it a directory only its owner can write: chown %s %s; chmod 755 %s", ownerName(), dir, dir)
	switch {
	case st.Mode()&fs.ModeSymlink != 0:
		return &UnsafeError{dir, "it is a symbolic link", fmt.Sprintf("replace it with a real directory: rm %s; mkdir -m 755 %s", dir, dir)}
	case !st.IsDir():
		return &UnsafeError{dir, "it is not a directory", fix}
	}
	return checkOwner(dir, st, fix)
}

// OpenFile opens one of virtbridge's own files: never through a symlink in
// its last component (O_NOFOLLOW: a planted link is refused, its target
// untouched), close-on-exec, and without blocking on a FIFO. The file must
// be a regular file owned by root or the effective user and not writable
// by group or others, else an *UnsafeError says so. A file it creates gets
// exactly perm (fchmod on the open descriptor: the umask libvirtd hands
// the hook does not matter).
func OpenFile(path string, flag int, perm fs.FileMode) (*os.File, error) {
	flag |= unix.O_NOFOLLOW | unix.O_CLOEXEC | unix.O_NONBLOCK
	created := false
	f, err := os.OpenFile(path, flag|excl(flag), perm)
	switch {
	case err == nil && flag&os.O_CREATE != 0:
		created = true
	case errors.Is(err, fs.ErrExist) && flag&os.O_EXCL == 0:
		f, err = os.OpenFile(path, flag&^os.O_CREATE, 0)
	}
	if errors.Is(err, syscall.ELOOP) {
		return nil, &UnsafeError{path, "it is a symbolic link", "remove it: virtbridge never follows links in its own files (rm " + path + ")"}
	}
	if err != nil {
		return nil, err
	}
	if created {
		if err := f.Chmod(perm); err != nil {
			f.Close()
			return nil, fmt.Errorf("setting the mode of %s: %w", path, err)
		}
	}
	st, err := f.Stat()
	if err == nil && !st.Mode().IsRegular() {
		err = &UnsafeError{path, fmt.Sprintf("it is not a regular file (%v)", st.Mode().Type()), "remove it (rm " + path + ")"}
	} else if err == nil {
		err = checkOwner(path, st, fmt.Sprintf("chown %s %s; chmod go-w %s", ownerName(), path, path))
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// excl first tries to create the file exclusively, to know whether this
// open made it (and must set its mode).
func excl(flag int) int {
	if flag&os.O_CREATE != 0 {
		return os.O_EXCL
	}
	return 0
}

func checkOwner(path string, st fs.FileInfo, fix string) error {
	sys, ok := st.Sys().(*syscall.Stat_t)
	switch {
	case !ok:
		return nil
	case !owned(st):
		return &UnsafeError{path, fmt.Sprintf("it is owned by uid %d, not by root or uid %d", sys.Uid, os.Geteuid()), fix}
	case st.Mode().Perm()&0o022 != 0:
		return &UnsafeError{path, fmt.Sprintf("it is writable by group or others (mode %04o)", st.Mode().Perm()), fix}
	}
	return nil
}

func owned(st fs.FileInfo) bool {
	sys, ok := st.Sys().(*syscall.Stat_t)
	return !ok || sys.Uid == 0 || int(sys.Uid) == os.Geteuid()
}

func ownerName() string {
	if os.Geteuid() == 0 {
		return "root:root"
	}
	return fmt.Sprint(os.Geteuid())
}
