package install

import (
	"debug/buildinfo"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// kind is what classify found at a path.
type kind int

const (
	kindNone    kind = iota // nothing there
	kindLink                // virtbridge's link to Options.Target, exactly
	kindOurs                // another virtbridge hook: a copy, a link to another install, a dangling link to a virtbridge-hook
	kindForeign             // another program's hook, executable or not
)

// entry is a hook file as classify found it.
type entry struct {
	kind kind
	// executable is what libvirt checks (virFileIsExecutable): links
	// followed, a regular file with an execute bit.
	executable bool
	isLink     bool
	link       string // the link's text
	mode       os.FileMode
}

func (e entry) describe() string {
	switch {
	case e.isLink && e.executable:
		return "a link to " + e.link
	case e.isLink:
		return "a link to " + e.link + ", which libvirt does not run: missing or not executable"
	case e.executable:
		return fmt.Sprintf("an executable file, mode %04o", e.mode.Perm())
	default:
		return fmt.Sprintf("a file, mode %04o, not executable", e.mode.Perm())
	}
}

// classify says what is at p. A directory or special file is an error:
// install-hook will not guess what to do with one.
func classify(o Options, p string) (entry, error) {
	fi, err := os.Lstat(p)
	if errors.Is(err, os.ErrNotExist) {
		return entry{kind: kindNone}, nil
	}
	if err != nil {
		return entry{}, err
	}
	e := entry{mode: fi.Mode()}
	target, terr := os.Stat(p)
	e.executable = terr == nil && target.Mode().IsRegular() && target.Mode().Perm()&0o111 != 0
	switch {
	case fi.Mode()&os.ModeSymlink != 0:
		e.isLink = true
		if e.link, err = os.Readlink(p); err != nil {
			return entry{}, err
		}
		switch {
		case e.link == o.Target:
			e.kind = kindLink
		case terr != nil && filepath.Base(e.link) == "virtbridge-hook":
			e.kind = kindOurs // left by an install whose binary is gone
		case terr == nil && target.Mode().IsRegular() && o.IsVirtbridgeHook(p):
			e.kind = kindOurs
		default:
			e.kind = kindForeign
		}
	case fi.Mode().IsRegular():
		e.kind = kindForeign
		if o.IsVirtbridgeHook(p) {
			e.kind = kindOurs
		}
	case fi.IsDir():
		return entry{}, fmt.Errorf("%s is a directory, not a hook: move it away and run install-hook again", p)
	default:
		return entry{}, fmt.Errorf("%s is a special file (%s), not a hook: move it away and run install-hook again", p, fi.Mode().Type())
	}
	return e, nil
}

// IsVirtbridgeHook reports whether the file at path (links followed) is a
// virtbridge-hook binary, by the main package in its Go build info. It
// runs nothing, so it is safe on any file.
func IsVirtbridgeHook(path string) bool {
	bi, err := buildinfo.ReadFile(path)
	return err == nil && bi.Path == hookMainPackage
}

// placeLink makes the hook a link to the target, replacing whatever is
// there in one rename, so libvirt never sees a missing or partial hook.
func placeLink(o Options) error {
	tmp := filepath.Join(o.HooksDir, ".qemu.virtbridge-new")
	if err := os.Remove(tmp); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	if err := os.Symlink(o.Target, tmp); err != nil {
		return err
	}
	if err := os.Rename(tmp, o.hookPath()); err != nil {
		os.Remove(tmp)
		return err
	}
	return nil
}

// moveEntry renames from to to (replacing to), keeping mode, owner and
// everything else of the file. A relative link is then rewritten so that
// it still points where it pointed: the two places are one directory
// apart. The hook is never in both places at once, so libvirt never runs
// it twice.
func moveEntry(from, to string, e entry) error {
	if err := os.Rename(from, to); err != nil {
		return err
	}
	if !e.isLink {
		return nil
	}
	text := rebaseLink(e.link, filepath.Dir(from), filepath.Dir(to))
	if text == e.link {
		return nil
	}
	fi, err := os.Lstat(to)
	if err != nil {
		return err
	}
	tmp := filepath.Join(filepath.Dir(to), "."+filepath.Base(to)+".virtbridge-new")
	if err := os.Remove(tmp); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	if err := os.Symlink(text, tmp); err != nil {
		return fmt.Errorf("rewriting the link %s: %w", to, err)
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		if err := os.Lchown(tmp, int(st.Uid), int(st.Gid)); err != nil {
			os.Remove(tmp)
			return fmt.Errorf("rewriting the link %s: %w", to, err)
		}
	}
	if err := os.Rename(tmp, to); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("rewriting the link %s: %w", to, err)
	}
	return nil
}

// rebaseLink returns the text a relative link moved from fromDir to toDir
// needs to point at the same file. One level down it gains "../" and one
// level up it loses it again, so a save and a restore give back the text
// exactly.
func rebaseLink(text, fromDir, toDir string) string {
	fromDir, toDir = filepath.Clean(fromDir), filepath.Clean(toDir)
	switch {
	case filepath.IsAbs(text) || fromDir == toDir:
		return text
	case filepath.Dir(toDir) == fromDir:
		return "../" + text
	case filepath.Dir(fromDir) == toDir && strings.HasPrefix(text, "../"):
		return text[len("../"):]
	}
	if rel, err := filepath.Rel(toDir, filepath.Join(fromDir, text)); err == nil {
		return rel
	}
	return text
}

// freeName returns dir/name, or dir/name.N with the smallest free N ≥ 2.
func freeName(dir, name string) (string, error) {
	for i := 1; i < 100; i++ {
		p := filepath.Join(dir, name)
		if i > 1 {
			p = fmt.Sprintf("%s.%d", p, i)
		}
		if _, err := os.Lstat(p); errors.Is(err, os.ErrNotExist) {
			return p, nil
		} else if err != nil {
			return "", err
		}
	}
	return "", fmt.Errorf("no free name for %s in %s: %s.2 to %s.99 are all taken", name, dir, name, name)
}

// mkdirAll creates dir and its missing parents with mode 0755 and returns
// the directories it created, parents first, also when it fails part way.
func mkdirAll(dir string) ([]string, error) {
	dir = filepath.Clean(dir)
	var missing []string
	for d := dir; ; d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		if err == nil {
			if !fi.IsDir() {
				return nil, fmt.Errorf("%s is not a directory", d)
			}
			break
		}
		if !errors.Is(err, os.ErrNotExist) {
			return nil, err
		}
		missing = append(missing, d)
		if filepath.Dir(d) == d {
			break
		}
	}
	var created []string
	for i := len(missing) - 1; i >= 0; i-- {
		if err := os.Mkdir(missing[i], 0o755); err != nil {
			return created, fmt.Errorf("creating %s: %w", missing[i], err)
		}
		created = append(created, missing[i])
	}
	return created, nil
}

// removeEmptyDirs removes each directory that is empty, children first
// (dirs are in creation order, parents first), and returns those removed.
// One that holds files, is gone already or cannot be removed stays: only
// empty directories that install-hook made are taken back.
func removeEmptyDirs(dirs []string) []string {
	var removed []string
	for i := len(dirs) - 1; i >= 0; i-- {
		// rmdir, not os.Remove: a file that took the directory's place stays.
		if err := syscall.Rmdir(dirs[i]); err == nil {
			removed = append(removed, dirs[i])
		}
	}
	return removed
}
