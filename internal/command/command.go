// Package command runs the external programs virtbridge needs (iptables,
// iptables-restore, journalctl, nmcli, libvirtd --version, systemctl): by
// absolute path with an argv list, never through a shell, in a clean
// environment that nothing of the caller's (libvirtd's, a user's) reaches,
// and with a timeout within the caller's context (package deadline), so
// that the hook never outlives its deadline nor the daemon its SIGTERM.
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

// Cmd is one command to run.
type Cmd struct {
	Path  string    // absolute, or as exec.LookPath found it
	Args  []string  // without the program name
	Stdin io.Reader // nil: /dev/null
	// Env is added to the package's Env, e.g. "SYSTEMD_PAGER=".
	Env []string
	// Timeout caps the run within the caller's context; 0 means
	// DefaultTimeout.
	Timeout time.Duration
}

// Output runs c and returns its stdout. A failure's error carries the argv,
// the exit status and stderr. A run stopped at its Timeout or by ctx (its
// deadline, a cancel) is a *deadline.Error naming the argv: errors.Is
// finds context.DeadlineExceeded or context.Canceled.
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
	timeout := c.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	timeout = deadline.Left(ctx, 0, timeout) // for the message: the cap or what ctx leaves
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	defer deadline.Doing(ctx, "running %q", argv)()
	cmd := exec.CommandContext(ctx, c.Path, c.Args...)
	cmd.Env = append(append([]string{}, Env...), c.Env...)
	cmd.Stdin = c.Stdin
	cmd.Stdout, cmd.Stderr = stdout, stderr
	cmd.WaitDelay = time.Second // a child that keeps our pipes open must not keep us
	err := cmd.Run()
	switch {
	case err == nil:
		return nil
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		return deadline.Ended(ctx, "running %q: no result within %v", argv, timeout.Round(time.Millisecond))
	case ctx.Err() != nil:
		return deadline.Ended(ctx, "running %q", argv)
	}
	return fmt.Errorf("running %q: %w: %s", argv, err, strings.TrimSpace(stderr.String()))
}
