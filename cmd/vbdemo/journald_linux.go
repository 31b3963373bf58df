package main

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/virtbridge/virtbridge/internal/testenv/journald"
)

// keptJournald records the journald a demo run with --keep left running
// ("PID STARTTIME"), for --down.
const keptJournald = "/run/lock/virtbridge-demo.journald"

// ensureJournald returns a hold on the journald the hook in the lab writes
// to: the machine's own when one answers (a Debian box booted with
// systemd), else one the demo starts, shared with test binaries through
// internal/testenv/journald's locks. It returns nil, nil where systemd-journald is
// not installed: the hook then writes its records to the lab's JSON-lines
// file. A journald started for a --keep run outlives the demo; otherwise
// it dies with the demo, even a killed one.
func ensureJournald(keep bool) (*journald.Hold, error) {
	bin := journald.Binary()
	if bin == "" && !journald.Answers(journald.Socket) {
		return nil, nil
	}
	j, err := journald.Join(journald.Options{Bin: bin, Keep: keep})
	if err != nil {
		return nil, err
	}
	if pid := j.Pid(); keep && pid != 0 {
		st, err := journald.ProcStartTime(pid)
		if err == nil {
			err = os.WriteFile(keptJournald, fmt.Appendf(nil, "%d %d\n", pid, st), 0o644)
		}
		if err != nil {
			return j, fmt.Errorf("recording the kept journald: %w", err)
		}
	}
	return j, nil
}

// releaseJournald gives the hold up; a journald the demo started is
// stopped by its pid once no test binary uses it any more. Idempotent.
func releaseJournald(j *journald.Hold, say func(string, ...any)) error {
	pid := j.Pid()
	err := j.Release(func() { say("waiting for test binaries that use the demo's journald to finish") })
	// A --keep run that failed stops its journald: the record of it goes too.
	if pid != 0 && j.Pid() == 0 {
		if b, err := os.ReadFile(keptJournald); err == nil && strings.HasPrefix(string(b), strconv.Itoa(pid)+" ") {
			os.Remove(keptJournald)
		}
	}
	return err
}

// stopKeptJournald stops the journald a --keep run left, if it still runs,
// once no test binary uses it.
func stopKeptJournald() error {
	b, err := os.ReadFile(keptJournald)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	var pid int
	var st uint64
	if _, err := fmt.Sscanf(string(b), "%d %d", &pid, &st); err != nil {
		return fmt.Errorf("reading %s: %w", keptJournald, err)
	}
	if err := journald.StopKept(pid, st); err != nil {
		return err
	}
	return os.Remove(keptJournald)
}
