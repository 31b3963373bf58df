// Package install places virtbridge's libvirt qemu hook on a host and takes
// it away again, leaving the host's hooks as it found them. The deb and rpm
// maintainer scripts and `make install` all reach it through `virtbridge
// install-hook` and `virtbridge uninstall-hook`, so there is one
// implementation of the rules:
//
//   - The hook is a symbolic link HooksDir/qemu -> Target (the installed
//     virtbridge-hook), so that upgrading the binary upgrades the hook.
//   - Whatever else was at HooksDir/qemu is kept: it is moved, with its
//     mode, owner and (for a link) target, to HooksDir/qemu.d/SavedName.
//     libvirt ≥ 6.5 runs the executables in qemu.d after the main hook, in
//     byte order of their names, feeding each the domain XML (virtbridge's
//     hook prints nothing, which libvirt treats as "XML unchanged"), and
//     skips the ones that are not executable: a foreign hook keeps running
//     (or keeps not running) as it did. Uninstall moves it back.
//   - A hook that is virtbridge's already (the link, a link to another
//     install's virtbridge-hook, or a copy made by hand) is replaced, never
//     saved: reinstalling and upgrading are idempotent.
//   - What Install created (directories, the saved name it chose) is
//     written to a small record, so that Uninstall removes only that.
//
// libvirtd (or virtqemud) looks for hooks when it starts and on SIGHUP;
// Report.NeedsReload says when it must be told.
package install

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/virtbridge/virtbridge/internal/paths"
)

// Defaults for Options.
const (
	DefaultHooksDir = "/etc/libvirt/hooks"
	DefaultTarget   = "/usr/bin/virtbridge-hook"
	// HookName is the qemu driver's hook in HooksDir.
	HookName = "qemu"
	// SavedName is the name, in HooksDir/qemu.d, of the hook Install found
	// in virtbridge's place. "00-" sorts it before the usual "10-…" and
	// lettered names, so it still runs first after the main hook. When the
	// name is taken, Install adds ".2", ".3", …
	SavedName = "00-virtbridge-saved-qemu"
	// RecordName is the record's file name in the state directory.
	RecordName = "hook-install.json"
	// hookMainPackage is the main package path in the build info of every
	// virtbridge-hook binary.
	hookMainPackage = "github.com/virtbridge/virtbridge/cmd/hook"
	// qemuDirSince is the first libvirt version that runs HooksDir/qemu.d.
	qemuDirSince = 6_005_000
)

// Options says where Install and Uninstall work. The zero value is right
// for the host.
type Options struct {
	// HooksDir is libvirt's hook directory; "" means DefaultHooksDir.
	HooksDir string
	// Target is the virtbridge-hook binary the hook links to; "" means
	// DefaultTarget.
	Target string
	// Record is the record file; "" means RecordName in paths.StateDir().
	Record string
	// IsVirtbridgeHook reports whether the file at path (links followed) is
	// a virtbridge-hook binary; nil reads its Go build info, running
	// nothing.
	IsVirtbridgeHook func(path string) bool
	// LibvirtVersion returns the installed libvirt's version as
	// major*1,000,000 + minor*1,000 + micro, ok false when unknown; nil
	// asks virtqemud or libvirtd (--version).
	LibvirtVersion func() (version int, ok bool)
}

func (o Options) withDefaults() Options {
	if o.HooksDir == "" {
		o.HooksDir = DefaultHooksDir
	}
	o.HooksDir = filepath.Clean(o.HooksDir)
	if o.Target == "" {
		o.Target = DefaultTarget
	}
	if o.Record == "" {
		o.Record = filepath.Join(paths.StateDir(), RecordName)
	}
	if o.IsVirtbridgeHook == nil {
		o.IsVirtbridgeHook = IsVirtbridgeHook
	}
	if o.LibvirtVersion == nil {
		o.LibvirtVersion = LibvirtVersion
	}
	return o
}

func (o Options) hookPath() string { return filepath.Join(o.HooksDir, HookName) }
func (o Options) qemuDir() string  { return filepath.Join(o.HooksDir, HookName+".d") }

// Report tells the operator what Install or Uninstall did.
type Report struct {
	// Lines are the changes made, one sentence each, in order.
	Lines []string
	// NeedsReload is true when Install placed the hook where libvirt may
	// have found none when it last looked (it looks when it starts and on
	// reload, and calls no hook it did not find then), so a running
	// libvirtd or virtqemud must be reloaded before it calls the hook.
	// Uninstall never needs it: libvirt skips a hook that is gone.
	NeedsReload bool
}

func (r *Report) add(format string, args ...any) {
	r.Lines = append(r.Lines, fmt.Sprintf(format, args...))
}

// Install makes HooksDir/qemu a link to Target, saving a foreign hook
// found there in qemu.d (see the package comment). It is idempotent: with
// virtbridge's link in place it changes nothing and reports nothing. It
// refuses when Target is not a virtbridge hook, when a directory or special
// file holds the hook's name, and when a foreign executable hook would have
// to move to qemu.d of a libvirt older than 6.5, which would not run it.
func Install(o Options) (Report, error) {
	o = o.withDefaults()
	var rep Report
	if !o.IsVirtbridgeHook(o.Target) {
		return rep, fmt.Errorf("installing the hook: %s is not virtbridge's hook binary (missing, or another program)", o.Target)
	}
	found, err := classify(o, o.hookPath())
	if err != nil {
		return rep, fmt.Errorf("installing the hook: %w", err)
	}
	if found.kind == kindForeign && found.executable {
		if v, ok := o.LibvirtVersion(); ok && v < qemuDirSince {
			return rep, fmt.Errorf("installing the hook: %s is another program's hook (%s) and libvirt %s does not run hooks in %s (6.5 and later do): "+
				"make it call %s itself, or upgrade libvirt, then run install-hook again",
				o.hookPath(), found.describe(), versionString(v), o.qemuDir(), o.Target)
		}
	}
	rec, err := readRecord(o.Record)
	if err != nil {
		return rep, fmt.Errorf("installing the hook: %w", err)
	}
	if rec == nil {
		rec = &record{}
	}
	rec.Hook, rec.Target = o.hookPath(), o.Target
	created, err := mkdirAll(filepath.Dir(o.Record))
	rec.addDirs(created)
	if err != nil {
		return rep, fmt.Errorf("installing the hook: %w", err)
	}
	switch found.kind {
	case kindLink:
		if err := writeRecord(o.Record, rec); err != nil {
			return rep, fmt.Errorf("installing the hook: %w", err)
		}
		return rep, nil
	case kindOurs:
		if err := writeRecord(o.Record, rec); err != nil {
			return rep, fmt.Errorf("installing the hook: %w", err)
		}
		if err := placeLink(o); err != nil {
			return rep, fmt.Errorf("installing the hook: %w", err)
		}
		rep.add("replaced virtbridge's hook %s (%s) with a link to %s", o.hookPath(), found.describe(), o.Target)
		rep.NeedsReload = !found.executable
	case kindNone:
		if err := installFresh(o, rec, &rep); err != nil {
			return rep, fmt.Errorf("installing the hook: %w", err)
		}
	case kindForeign:
		if err := installOver(o, rec, found, &rep); err != nil {
			return rep, fmt.Errorf("installing the hook: %w", err)
		}
	}
	return rep, nil
}

// installFresh places the link where no hook was.
func installFresh(o Options, rec *record, rep *Report) error {
	created, err := mkdirAll(o.HooksDir)
	rec.addDirs(created)
	if err != nil {
		return errors.Join(err, writeRecord(o.Record, rec))
	}
	if err := writeRecord(o.Record, rec); err != nil {
		return err
	}
	if err := placeLink(o); err != nil {
		return err
	}
	rep.add("installed the hook %s -> %s", o.hookPath(), o.Target)
	rep.NeedsReload = true
	return nil
}

// installOver saves the foreign hook found and places the link. The record
// names the saved file before anything moves, so that an interrupted
// install is still undone right.
func installOver(o Options, rec *record, found entry, rep *Report) error {
	created, err := mkdirAll(o.qemuDir())
	rec.addDirs(created)
	if err != nil {
		return errors.Join(err, writeRecord(o.Record, rec))
	}
	saved, err := freeName(o.qemuDir(), SavedName)
	if err != nil {
		return errors.Join(err, writeRecord(o.Record, rec))
	}
	rec.Saved = saved
	if err := writeRecord(o.Record, rec); err != nil {
		return err
	}
	if err := moveEntry(o.hookPath(), saved, found); err != nil {
		return err
	}
	if err := placeLink(o); err != nil {
		// Put the foreign hook back: a host without any hook is worse.
		if back, rerr := classify(o, saved); rerr == nil {
			rerr = moveEntry(saved, o.hookPath(), back)
			err = errors.Join(err, rerr)
		}
		return err
	}
	runs := "libvirt runs it after virtbridge's hook"
	if !found.executable {
		runs = "it is not executable, so libvirt keeps ignoring it"
	}
	rep.add("moved the existing hook %s (%s) to %s: %s; uninstall-hook puts it back", o.hookPath(), found.describe(), saved, runs)
	rep.add("installed the hook %s -> %s", o.hookPath(), o.Target)
	rep.NeedsReload = true
	return nil
}

// Uninstall removes virtbridge's hook, puts back the hook Install saved
// (or, without a record, one saved under SavedName), removes the
// directories Install created if they are empty, and deletes the record.
// A hook that is not virtbridge's is left alone, and so is the saved one
// then (it stays in qemu.d, where libvirt runs it). It is idempotent.
func Uninstall(o Options) (Report, error) {
	o = o.withDefaults()
	var rep Report
	rec, err := readRecord(o.Record)
	if err != nil {
		return rep, fmt.Errorf("removing the hook: %w", err)
	}
	saved := filepath.Join(o.qemuDir(), SavedName)
	if rec != nil {
		saved = rec.Saved
	}
	var savedEntry entry
	if saved != "" {
		savedEntry, err = classify(o, saved)
		switch {
		case err != nil && rec == nil:
			savedEntry = entry{} // not a file install-hook saved: not ours to move
		case err != nil:
			return rep, fmt.Errorf("removing the hook: %w", err)
		}
	}
	found, err := classify(o, o.hookPath())
	if err != nil {
		return rep, fmt.Errorf("removing the hook: %w", err)
	}
	restore := savedEntry.kind != kindNone
	switch {
	case found.kind == kindForeign && rec == nil:
		// Nothing says virtbridge was installed here: nothing to report.
	case found.kind == kindForeign:
		rep.add("left %s alone: it is not virtbridge's hook (%s)", o.hookPath(), found.describe())
		if restore {
			rep.add("left %s in place: libvirt runs it after %s", saved, o.hookPath())
		}
	case restore:
		if err := moveEntry(saved, o.hookPath(), savedEntry); err != nil {
			return rep, fmt.Errorf("removing the hook: putting back %s: %w", saved, err)
		}
		rep.add("put back the hook virtbridge had saved: %s is again %s", o.hookPath(), savedEntry.describe())
	case found.kind != kindNone:
		if err := os.Remove(o.hookPath()); err != nil {
			return rep, fmt.Errorf("removing the hook: %w", err)
		}
		rep.add("removed the hook %s", o.hookPath())
	}
	if err := os.Remove(o.Record); err != nil && !errors.Is(err, os.ErrNotExist) {
		return rep, fmt.Errorf("removing the hook: deleting the record: %w", err)
	}
	if rec != nil {
		for _, d := range removeEmptyDirs(rec.CreatedDirs) {
			rep.add("removed the directory %s, created by install-hook", d)
		}
	}
	return rep, nil
}
