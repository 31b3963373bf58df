// Package command runs the external programs virtbridge needs (iptables,
// iptables-restore, journalctl, nmcli, libvirtd --version, systemctl): by
// absolute path with an argv list, never through a shell, in a clean
// environment that nothing of the caller's (libvirtd's, a user's) reaches,
// and with a timeout that also respects the process deadline (package
// deadline) so the hook never outlives its own.
package command

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/virtbridge/virtbridge/internal/deadline"
)

// Dirs are the only directories LookPath searches, and the PATH of every
// command: root-owned system directories, whatever the caller's PATH.
var Dirs = []string{"/usr/sbin", "/usr/bin", "/sbin", "/bin"}

// Env is the whole environment every command starts with: a fixed PATH
// (for the helpers iptables itself runs, such as modprobe) and the C locale
// (so that output and messages parse the same everywhere).
var Env = []string{"PATH=" + strings.Join(Dirs, ":"), "LC_ALL=C"}

// LookPath finds the program name in Dirs only: a PATH handed down by
// libvirtd or a user never decides which binary root runs.
func LookPath(name string) (string, error) {
	if strings.Contains(name, "/") {
		return "", fmt.Errorf("looking up %q: not a bare program name", name)
	}
	for _, d := range Dirs {
		if p, err := exec.LookPath(filepath.Join(d, name)); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s not found in %s: %w", name, strings.Join(Dirs, ", "), exec.ErrNotFound)
}

// DefaultTimeout bounds a command whose Cmd sets no Timeout.
const DefaultTimeout = 10 * time.Second

// ErrTimeout is wrapped by the error of a command stopped at its timeout.
var ErrTimeout = errors.New("timed out")

// Cmd is one command to run.
type Cmd struct {
	Path  string    // absolute, or as exec.LookPath found it
	Args  []string  // without the program name
	Stdin io.Reader // nil: /dev/null
	// Env is added to the package's Env, e.g. "SYSTEMD_PAGER=".
	Env []string
	// Timeout bounds the run; 0 means DefaultTimeout. The process
	// deadline, if any, bounds it further.
	Timeout time.Duration
}

// timeout returns how long c may run from now: its Timeout, cut to the
// time left before the process deadline.
func (c Cmd) timeout() time.Duration {
	t := c.Timeout
	if t <= 0 {
		t = DefaultTimeout
	}
	return deadline.Remaining(t, 0)
}

// Output runs c and returns its stdout. A failure's error carries the argv,
// the exit status and stderr; one stopped at its timeout wraps ErrTimeout.
func (c Cmd) Output(ctx context.Context) ([]byte, error) {
	var stdout, stderr bytes.Buffer
	err := c.run(ctx, &stdout, &stderr)
	return stdout.Bytes(), err
}

// CombinedOutput runs c and returns its stdout and stderr interleaved; a
// failure's error carries the argv, the exit status and that output.
func (c Cmd) CombinedOutput(ctx context.Context) ([]byte, error) {
	var out bytes.Buffer
	err := c.run(ctx, &out, &out)
	return out.Bytes(), err
}

func (c Cmd) run(ctx context.Context, stdout, stderr *bytes.Buffer) error {
	argv := append([]string{c.Path}, c.Args...)
	timeout := c.timeout()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	defer deadline.Doing("running %q", argv)()
	cmd := exec.CommandContext(ctx, c.Path, c.Args...)
	cmd.Env = append(append([]string{}, Env...), c.Env...)
	cmd.Stdin = c.Stdin
	cmd.Stdout, cmd.Stderr = stdout, stderr
	cmd.WaitDelay = time.Second // a child that keeps our pipes open must not keep us
	err := cmd.Run()
	switch {
	case err == nil:
		return nil
	case ctx.Err() != nil && errors.Is(ctx.Err(), context.DeadlineExceeded):
		return fmt.Errorf("running %q: no result within %v: %w", argv, timeout.Round(time.Millisecond), ErrTimeout)
	}
	return fmt.Errorf("running %q: %w: %s", argv, err, strings.TrimSpace(stderr.String()))
}
