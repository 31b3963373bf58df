package lab

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// keptFile marks a lab directory whose lab was handed over by Keep.
const keptFile = "kept"

// Keep lets the lab outlive this process, for a person to look around in
// after a demo: its owner becomes the namespace holder, so that SweepStale
// (which every Start runs) leaves it alone while the holder lives, and a
// marker lets RemoveKept find it. Nothing is stopped; do not Close the lab
// afterwards unless you mean to remove it. Idempotent.
func (l *Lab) Keep() error {
	pid := l.sleeper.pid()
	st, err := procStartTime(pid)
	if err != nil {
		return fmt.Errorf("keeping lab %s: %w", l.tag, err)
	}
	data := fmt.Sprintf("%d %d\n%s\n", pid, st, strings.Join(l.createdNS, "\n"))
	tmp := filepath.Join(l.dir, ownerFile+".tmp")
	if err := os.WriteFile(tmp, []byte(data), 0o644); err != nil {
		return fmt.Errorf("keeping lab %s: %w", l.tag, err)
	}
	if err := os.Rename(tmp, filepath.Join(l.dir, ownerFile)); err != nil {
		return fmt.Errorf("keeping lab %s: %w", l.tag, err)
	}
	if err := os.WriteFile(filepath.Join(l.dir, keptFile), []byte(l.tag+"\n"), 0o644); err != nil {
		return fmt.Errorf("keeping lab %s: %w", l.tag, err)
	}
	return nil
}

// RemoveKept tears down every lab left running by Keep: it kills the
// processes in their namespaces (libvirtd, qemu, dnsmasq, the holder, whose
// end takes the private mounts along), deletes the namespaces and removes
// the directories. Given tags, it removes only those labs. It returns how
// many labs it removed. Labs not handed over by Keep are left alone.
// Idempotent.
func RemoveKept(tags ...string) (int, error) {
	dirs, err := filepath.Glob(filepath.Join(os.TempDir(), labDirPrefix+"*"))
	if err != nil {
		return 0, fmt.Errorf("listing labs: %w", err)
	}
	removed := 0
	var errs []error
	for _, dir := range dirs {
		tag, err := os.ReadFile(filepath.Join(dir, keptFile))
		if err != nil || len(tags) > 0 && !slices.Contains(tags, strings.TrimSpace(string(tag))) {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, ownerFile))
		if err != nil {
			errs = append(errs, fmt.Errorf("removing kept lab %s: %w", dir, err))
			continue
		}
		var lerrs []error
		for _, ns := range strings.Split(strings.TrimSpace(string(b)), "\n")[1:] {
			if ns = strings.TrimSpace(ns); strings.HasPrefix(ns, "vbhv-") || strings.HasPrefix(ns, "vbup-") {
				lerrs = append(lerrs, killNetns(filepath.Join("/run/netns", ns), 5*time.Second, 0))
				lerrs = append(lerrs, deleteNamespaces(ns)...)
			}
		}
		if err := errors.Join(lerrs...); err != nil {
			errs = append(errs, fmt.Errorf("removing kept lab %s: %w", dir, err))
			continue
		}
		if err := os.RemoveAll(dir); err != nil {
			errs = append(errs, fmt.Errorf("removing kept lab %s: %w", dir, err))
			continue
		}
		removed++
	}
	return removed, errors.Join(errs...)
}
