// Package journaltest gives tests a real systemd-journald on a machine
// without systemd as PID 1: it reuses one that already answers on
// /run/systemd/journal/socket, or starts one and stops it (by its pid) when
// the test binary ends. Test packages that use it call Main from TestMain.
//
// Several test binaries (go test runs packages in parallel) share one
// journald: a lock file serialises starting it, and a shared lock held by
// every user makes the binary that started it wait, before stopping it,
// until the others are done.
package journaltest

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/virtbridge/virtbridge/internal/testenv/journald"
)

// Socket is journald's native socket.
const Socket = journald.Socket

// Journald is the journald that tests write to.
type Journald struct {
	Socket string
	Pid    int  // 0 when it was already running
	Owned  bool // this test binary started it and stops it in Main
}

var (
	once   sync.Once
	shared *Journald
	skip   string // why tests must skip, if they must
	fail   error  // why journald could not be started
	hold   *journald.Hold
)

// Main runs the tests and then stops journald if this binary started it.
// Use it as `func TestMain(m *testing.M) { os.Exit(journaltest.Main(m)) }`.
func Main(m *testing.M) int {
	code := m.Run()
	if err := stop(); err != nil {
		fmt.Fprintln(os.Stderr, "journaltest:", err)
		if code == 0 {
			code = 1
		}
	}
	return code
}

// Require returns a running journald, starting one if none answers. It
// skips the test, saying why, under -short (`make unit`), when not root or
// when systemd-journald or journalctl is not installed (Debian package:
// systemd).
func Require(t testing.TB) *Journald {
	t.Helper()
	if testing.Short() {
		t.Skip("skipped in -short: needs a running journald")
	}
	once.Do(setup)
	if skip != "" {
		t.Skip(skip)
	}
	if fail != nil {
		t.Fatalf("starting journald: %v", fail)
	}
	return shared
}

func setup() {
	if os.Geteuid() != 0 {
		skip = "skipped: needs root to run systemd-journald (run `sudo make test`)"
		return
	}
	bin := journald.Binary()
	if bin == "" {
		skip = "skipped: systemd-journald not found in " + strings.Join(journald.Paths, " or ") + " (apt-get install systemd)"
		return
	}
	if _, err := exec.LookPath("journalctl"); err != nil {
		skip = "skipped: journalctl not found (apt-get install systemd)"
		return
	}
	h, err := journald.Join(journald.Options{Bin: bin, LogPattern: "journaltest-journald-*.log"})
	if err != nil {
		fail = err
		return
	}
	hold = h
	shared = &Journald{Socket: Socket, Pid: h.Pid(), Owned: h.Pid() != 0}
}

// stop leaves the users of journald; when this binary started it, it waits
// for the other users to leave and stops it.
func stop() error {
	err := hold.Release(nil)
	if err != nil && hold.Pid() != 0 {
		// The others outstayed the wait: this binary is ending, and its
		// journald would die with it anyway.
		err = errors.Join(err, hold.Stop())
		os.RemoveAll(journald.RunDir)
	}
	return err
}

// Entries returns the journal entries matching the journalctl matches
// (FIELD=value, ANDed across fields, ORed within one), as field → value.
// Values journalctl prints as byte arrays are decoded.
func (j *Journald) Entries(t testing.TB, matches ...string) []map[string]string {
	t.Helper()
	args := append([]string{"-o", "json", "--all", "--no-pager", "-q"}, matches...)
	cmd := exec.Command("journalctl", args...)
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	out, err := cmd.Output()
	if err != nil {
		var stderr []byte
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = ee.Stderr
		}
		t.Fatalf("journalctl %s: %v: %s", strings.Join(args, " "), err, stderr)
	}
	var entries []map[string]string
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if line == "" {
			continue
		}
		var raw map[string]any
		if err := json.Unmarshal([]byte(line), &raw); err != nil {
			t.Fatalf("journalctl printed a line that is not JSON: %v: %s", err, line)
		}
		e := make(map[string]string, len(raw))
		for k, v := range raw {
			e[k] = value(v)
		}
		entries = append(entries, e)
	}
	return entries
}

func value(v any) string {
	switch v := v.(type) {
	case string:
		return v
	case []any:
		b := make([]byte, 0, len(v))
		for _, x := range v {
			f, ok := x.(float64)
			if !ok {
				return fmt.Sprint(v)
			}
			b = append(b, byte(f))
		}
		return string(b)
	}
	return fmt.Sprint(v)
}

// WaitEntries polls (journald writes what it receives asynchronously) until
// at least n entries match, for at most 10s, and returns them.
func (j *Journald) WaitEntries(t testing.TB, n int, matches ...string) []map[string]string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		e := j.Entries(t, matches...)
		if len(e) >= n || time.Now().After(deadline) {
			if len(e) < n {
				t.Fatalf("journalctl %s: %d entries after 10s, want %d", strings.Join(matches, " "), len(e), n)
			}
			return e
		}
		time.Sleep(50 * time.Millisecond)
	}
}
