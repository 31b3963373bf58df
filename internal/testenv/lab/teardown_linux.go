package lab

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// labDirPrefix starts the name of every lab directory in os.TempDir().
const labDirPrefix = "virtbridge-lab-"

// ownerFile in a lab directory names the process that owns the lab and the
// lab's namespaces, so that SweepStale can remove labs whose owner died
// without calling Close (a test binary killed on timeout, for instance).
const ownerFile = "owner"

// Close tears the lab down: it destroys and undefines the domains and
// networks, stops libvirtd, virtlogd and dnsmasq by pid, kills every
// process left in the lab's namespaces (qemu, hooks, the namespace holder),
// deletes the namespaces and removes the lab directory. The private mounts
// vanish with the last process of the mount namespace. Close is idempotent;
// later calls return the first call's result.
func (l *Lab) Close() error {
	l.closeOnce.Do(func() { l.closeErr = l.teardown() })
	return l.closeErr
}

func (l *Lab) teardown() error {
	begin := time.Now()
	var errs []error
	if l.LibvirtdPID() != 0 {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		errs = append(errs, l.removeDomains(ctx))
		cancel()
	}
	l.mu.Lock()
	errs = append(errs, l.libvirtd.stop(15*time.Second))
	l.mu.Unlock()
	errs = append(errs, l.virtlogd.stop(5*time.Second), l.dnsmasq.stop(5*time.Second))

	// What is left: qemu (daemonized, so not in libvirtd's process group),
	// hooks still running, the namespace holder. The holder goes last, as
	// it keeps the mount namespace alive.
	for _, ns := range l.createdNS {
		errs = append(errs, killNetns(filepath.Join("/run/netns", ns), 5*time.Second, l.sleeper.pid()))
	}
	errs = append(errs, l.sleeper.stop(2*time.Second))
	errs = append(errs, deleteNamespaces(l.createdNS...)...)
	if err := errors.Join(errs...); err != nil {
		// The directory stays: its logs tell what went wrong and its owner
		// file lets SweepStale finish the job once this process is gone.
		return fmt.Errorf("tearing down lab %s (directory %s kept): %w", l.tag, l.dir, err)
	}
	if l.dir != "" {
		if err := os.RemoveAll(l.dir); err != nil {
			return fmt.Errorf("tearing down lab %s: removing directory: %w", l.tag, err)
		}
	}
	l.logf("lab %s down in %v", l.tag, time.Since(begin).Round(time.Millisecond))
	return nil
}

// removeDomains destroys and undefines every domain, then every network.
func (l *Lab) removeDomains(ctx context.Context) error {
	var errs []error
	names, err := l.Domains(ctx)
	if err != nil {
		return err
	}
	for _, n := range names {
		errs = append(errs, l.DestroyUndefine(ctx, n))
	}
	out, err := l.Virsh(ctx, "net-list", "--all", "--name")
	if err != nil {
		return errors.Join(append(errs, err)...)
	}
	active, err := l.Virsh(ctx, "net-list", "--name")
	if err != nil {
		return errors.Join(append(errs, err)...)
	}
	for _, n := range strings.Fields(active) {
		if _, err := l.Virsh(ctx, "net-destroy", n); err != nil {
			errs = append(errs, err)
		}
	}
	for _, n := range strings.Fields(out) {
		// A transient network is gone once destroyed; undefining it fails.
		if _, err := l.Virsh(ctx, "net-info", n); err != nil {
			continue
		}
		if _, err := l.Virsh(ctx, "net-undefine", n); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func deleteNamespaces(names ...string) []error {
	var errs []error
	for _, ns := range names {
		if ns == "" {
			continue
		}
		if _, err := os.Stat(filepath.Join("/run/netns", ns)); errors.Is(err, os.ErrNotExist) {
			continue
		}
		if _, err := run(context.Background(), "ip", "netns", "del", ns); err != nil {
			errs = append(errs, fmt.Errorf("deleting namespace %s: %w", ns, err))
		}
	}
	return errs
}

// writeOwner records this process and the namespaces the lab has created
// so far: "PID STARTTIME" on the first line, one namespace per line after.
func writeOwner(dir string, namespaces []string) error {
	pid := os.Getpid()
	st, err := procStartTime(pid)
	if err != nil {
		return err
	}
	data := fmt.Sprintf("%d %d\n", pid, st)
	for _, ns := range namespaces {
		data += ns + "\n"
	}
	// Written by rename so that SweepStale never reads half a file.
	tmp := filepath.Join(dir, ownerFile+".tmp")
	if err := os.WriteFile(tmp, []byte(data), 0o644); err != nil {
		return fmt.Errorf("writing lab owner: %w", err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, ownerFile)); err != nil {
		return fmt.Errorf("writing lab owner: %w", err)
	}
	return nil
}

// SweepStale removes labs in os.TempDir() whose owning process has exited
// without closing them: it kills the processes in their namespaces, deletes
// the namespaces and removes their directories. Labs of live processes are
// left alone, so it is safe while other labs run. It is idempotent.
func SweepStale() error {
	dirs, err := filepath.Glob(filepath.Join(os.TempDir(), labDirPrefix+"*"))
	if err != nil {
		return fmt.Errorf("listing labs: %w", err)
	}
	var errs []error
	for _, dir := range dirs {
		b, err := os.ReadFile(filepath.Join(dir, ownerFile))
		if err != nil {
			continue // being created, or not a lab
		}
		lines := strings.Split(strings.TrimSpace(string(b)), "\n")
		var pid int
		var start uint64
		if _, err := fmt.Sscanf(lines[0], "%d %d", &pid, &start); err != nil {
			continue
		}
		if st, err := procStartTime(pid); err == nil && st == start {
			continue // owner alive
		}
		var lerrs []error
		for _, ns := range lines[1:] {
			if ns = strings.TrimSpace(ns); strings.HasPrefix(ns, "vbhv-") || strings.HasPrefix(ns, "vbup-") {
				lerrs = append(lerrs, killNetns(filepath.Join("/run/netns", ns), 5*time.Second, 0))
				lerrs = append(lerrs, deleteNamespaces(ns)...)
			}
		}
		if err := errors.Join(lerrs...); err != nil {
			errs = append(errs, fmt.Errorf("removing stale lab %s: %w", dir, err))
			continue
		}
		if err := os.RemoveAll(dir); err != nil {
			errs = append(errs, fmt.Errorf("removing stale lab %s: %w", dir, err))
		}
	}
	return errors.Join(errs...)
}
