package eventd

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/virtbridge/virtbridge/internal/config"
	"github.com/virtbridge/virtbridge/internal/events"
	"github.com/virtbridge/virtbridge/internal/metrics"
)

// helperEnv makes the test binary run Main instead of the tests: the way
// to test virtbridged as a process (signals, exit codes) before
// cmd/eventd has its real handler.
const helperEnv = "VIRTBRIDGE_EVENTD_HELPER"

func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) == "1" {
		os.Exit(Main(os.Args[1:], os.Stderr, newPrintHandler))
	}
	os.Exit(m.Run())
}

// printHandler prints every call on stdout, one line each.
type printHandler struct{ mu sync.Mutex }

func newPrintHandler(*config.Config, *metrics.Metrics) (Handler, func(), error) {
	return &printHandler{}, func() { fmt.Println("released") }, nil
}

func (p *printHandler) println(s string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Println(s)
}

func (p *printHandler) Handle(_ context.Context, ev events.Event) error {
	p.println(fmt.Sprintf("handle %s %s", ev.Op, ev.Domain))
	return nil
}

func (p *printHandler) Reconcile(_ context.Context, running []events.Event, _ time.Time) error {
	var names []string
	for _, ev := range running {
		names = append(names, ev.Domain)
	}
	p.println("reconcile " + strings.Join(names, ","))
	return nil
}

func (p *printHandler) EnsureHost(_ context.Context, op string) error {
	p.println("host " + op)
	return nil
}

func (p *printHandler) Reload(context.Context) error {
	p.println("reload")
	return nil
}

func (p *printHandler) CheckFirewall(context.Context) error {
	p.println("firewall")
	return nil
}

// helperCmd builds a command running Main in a copy of the test binary.
func helperCmd(args []string, env []string) *exec.Cmd {
	cmd := exec.Command(os.Args[0], args...)
	// Under -race a process sleeps 1 s before it exits; shutdown times
	// are measured here.
	gorace := strings.TrimSpace(os.Getenv("GORACE") + " atexit_sleep_ms=0")
	cmd.Env = append(append(os.Environ(), helperEnv+"=1", "GORACE="+gorace), env...)
	return cmd
}

// runHelper runs virtbridged with args to its end.
func runHelper(t *testing.T, args, env []string) (code int, stdout, stderr string) {
	t.Helper()
	cmd := helperCmd(args, env)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	done := make(chan error, 1)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { done <- cmd.Wait() }()
	var err error
	select {
	case err = <-done:
	case <-time.After(60 * time.Second):
		_ = cmd.Process.Kill()
		<-done
		t.Fatalf("virtbridged %q did not exit within 60 s; stderr:\n%s", args, errb.String())
	}
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatal(err)
	}
	return cmd.ProcessState.ExitCode(), out.String(), errb.String()
}

// writeConfig writes a configuration file and returns its path.
func writeConfig(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "virtbridge.yaml")
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestMainUsage(t *testing.T) {
	fail := func(*config.Config, *metrics.Metrics) (Handler, func(), error) {
		return nil, nil, errors.New("no engine here")
	}
	var out bytes.Buffer
	if code := Main([]string{"--help"}, &out, fail); code != ExitOK {
		t.Errorf("--help: exit %d, want 0", code)
	}
	for _, want := range []string{"--config FILE", "--uri URI", "--once", "READY=1", "RELOADING=1", "SIGHUP", "create: on_demand", "STOPPING=1", "qemu:///system", "firewall_recheck"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("--help does not mention %q:\n%s", want, out.String())
		}
	}
	for _, args := range [][]string{{"--no-such-flag"}, {"extra"}} {
		out.Reset()
		if code := Main(args, &out, fail); code != ExitUsage {
			t.Errorf("%q: exit %d, want %d; output:\n%s", args, code, ExitUsage, out.String())
		}
	}
	out.Reset()
	missing := filepath.Join(t.TempDir(), "none.yaml")
	if code := Main([]string{"--config", missing}, &out, fail); code != ExitFailure || !strings.Contains(out.String(), missing) {
		t.Errorf("missing config: exit %d, want %d naming %s; output:\n%s", code, ExitFailure, missing, out.String())
	}
	out.Reset()
	bad := writeConfig(t, "daemon:\n  firewall_recheck: often\n")
	if code := Main([]string{"--config", bad}, &out, fail); code != ExitFailure || !strings.Contains(out.String(), bad+":2") {
		t.Errorf("bad config: exit %d, want %d naming %s:2; output:\n%s", code, ExitFailure, bad, out.String())
	}
	out.Reset()
	if code := Main([]string{"--config", writeConfig(t, "bridges: {}\n")}, &out, fail); code != ExitFailure || !strings.Contains(out.String(), "no engine here") {
		t.Errorf("handler error: exit %d, want %d with the error; output:\n%s", code, ExitFailure, out.String())
	}
}

// TestOnceUnreachable: --once fails, naming the URI, when libvirtd cannot
// be reached.
func TestOnceUnreachable(t *testing.T) {
	uri := socketURI(filepath.Join(t.TempDir(), "no-sock"))
	code, stdout, stderr := runHelper(t, []string{"--once", "--uri", uri, "--config", writeConfig(t, "bridges: {}\n")}, nil)
	if code != ExitFailure || !strings.Contains(stderr, "no-sock") || stdout != "released\n" {
		t.Errorf("exit %d, stdout %q, stderr:\n%s\nwant exit 1, no reconcile, the URI named", code, stdout, stderr)
	}
}

// notifyListener is a NOTIFY_SOCKET the way systemd makes it.
type notifyListener struct {
	path string
	msgs chan stateNote
}

func listenNotify(t *testing.T) *notifyListener {
	t.Helper()
	p := filepath.Join(tempSocketDir(t), "notify")
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: p, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	n := &notifyListener{path: p, msgs: make(chan stateNote, 1024)}
	go func() {
		buf := make([]byte, 4096)
		for {
			k, err := c.Read(buf)
			if err != nil {
				close(n.msgs)
				return
			}
			n.msgs <- stateNote{string(buf[:k]), time.Now()}
		}
	}()
	return n
}

// next returns the first message with a line matching pattern (where "*"
// matches any text) within limit; every message read is appended to seen.
func (n *notifyListener) next(t *testing.T, pattern string, limit time.Duration, seen *[]stateNote) stateNote {
	t.Helper()
	deadline := time.After(limit)
	for {
		select {
		case m, ok := <-n.msgs:
			if !ok {
				t.Fatalf("notify socket closed waiting for %q", pattern)
			}
			*seen = append(*seen, m)
			if hasLine(m.state, pattern) {
				return m
			}
		case <-deadline:
			t.Fatalf("no %q on NOTIFY_SOCKET within %v; got %v", pattern, limit, *seen)
		}
	}
}

// hasLine reports whether a line of msg matches pattern.
func hasLine(msg, pattern string) bool {
	return slices.ContainsFunc(strings.Split(msg, "\n"), func(l string) bool { return matchWild(pattern, l) })
}

// matchWild matches s against pattern, where "*" matches any text.
func matchWild(pattern, s string) bool {
	parts := strings.Split(pattern, "*")
	if !strings.HasPrefix(s, parts[0]) {
		return false
	}
	s = s[len(parts[0]):]
	for i, p := range parts[1:] {
		if i == len(parts)-2 {
			return strings.HasSuffix(s, p)
		}
		j := strings.Index(s, p)
		if j < 0 {
			return false
		}
		s = s[j+len(p):]
	}
	return s == ""
}

// TestNotifyLifecycle runs the daemon with NOTIFY_SOCKET and WATCHDOG_USEC
// set and libvirtd not reachable yet: it must make the host match the
// configuration and say READY=1 without libvirt (libvirtd is ordered after
// it), ping the watchdog and say why libvirt is not reached, reconcile by
// itself once libvirtd is there (the first Reconcile fails on purpose and
// is retried), and say STOPPING=1 and return within 2 s once its context
// ends.
func TestNotifyLifecycle(t *testing.T) {
	l, _ := startLab(t)
	sock := labSocket(t, l)
	link := filepath.Join(tempSocketDir(t), "libvirt-sock") // not there yet
	nl := listenNotify(t)
	t.Setenv("NOTIFY_SOCKET", nl.path)
	t.Setenv("WATCHDOG_USEC", "200000")
	t.Setenv("WATCHDOG_PID", fmt.Sprint(os.Getpid()))

	rec := newRecorder()
	rec.failReconciles = 1
	stop := runDaemon(t, Options{URI: socketURI(link), Handler: rec, Log: testLog(t), NoLinkWatch: true, BackoffMax: time.Second})
	var seen []stateNote
	ready := nl.next(t, "READY=1", 5*time.Second, &seen)
	nl.next(t, "STATUS=libvirtd at * unreachable, retrying in *: connecting to libvirt *: Failed to connect socket to *: No such file or directory", 5*time.Second, &seen)
	w1 := nl.next(t, "WATCHDOG=1", time.Second, &seen)
	w2 := nl.next(t, "WATCHDOG=1", time.Second, &seen)
	if gap := w2.at.Sub(w1.at); gap < 50*time.Millisecond || gap > 300*time.Millisecond {
		t.Errorf("WATCHDOG=1 every %v, want about 100 ms (WATCHDOG_USEC/2)", gap)
	}
	if calls := rec.snapshot(); len(calls) != 1 || calls[0].kind != "host start" || ready.at.Before(calls[0].at) {
		t.Fatalf("calls without libvirtd: %v; want EnsureHost(start) only, before READY=1", calls)
	}

	if err := os.Symlink(sock, link); err != nil {
		t.Fatal(err)
	}
	appeared := time.Now()
	nl.next(t, "STATUS=reconcile failed*", 10*time.Second, &seen)
	done := nl.next(t, "STATUS=connected to *, 0 running domains reconciled at *", 10*time.Second, &seen)
	t.Logf("reconciled %v after libvirtd appeared", done.at.Sub(appeared).Round(time.Millisecond))
	calls := rec.snapshot()
	if len(calls) != 3 || calls[1].kind != "reconcile" || calls[2].kind != "reconcile" {
		t.Errorf("calls: %v; want EnsureHost, a failed reconcile, then a successful one", calls)
	} else if gap := calls[2].at.Sub(calls[1].at); gap < retryMin {
		t.Errorf("reconcile retried after %v, want at least %v", gap, retryMin)
	}
	for _, m := range seen {
		if hasLine(m.state, "READY=1") && m.at.After(ready.at) {
			t.Errorf("READY=1 sent twice")
		}
	}

	begin := time.Now()
	stop()
	stopping := nl.next(t, "STOPPING=1", 2*time.Second, &seen)
	if d := stopping.at.Sub(begin); d > 500*time.Millisecond {
		t.Errorf("STOPPING=1 %v after the context ended", d)
	}
}

// TestMainSIGTERM runs virtbridged as a process against a lab: READY=1 on
// its NOTIFY_SOCKET, CheckFirewall at the configured period, a reload on
// SIGHUP, and on SIGTERM STOPPING=1 and exit 0 within 2 s.
func TestMainSIGTERM(t *testing.T) {
	_, uri := startLab(t)
	nl := listenNotify(t)
	cfg := writeConfig(t, "daemon:\n  firewall_recheck: 1s\n")
	cmd := helperCmd([]string{"--uri", uri, "--config", cfg}, []string{"NOTIFY_SOCKET=" + nl.path})
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// One goroutine reads stdout to its end, then reaps the process.
	got := make(chan string, 10000)
	exited := make(chan error, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			got <- sc.Text()
		}
		close(got)
		exited <- cmd.Wait()
	}()
	t.Cleanup(func() {
		select {
		case <-exited:
		default:
			_ = cmd.Process.Kill() // by its pid
			<-exited
		}
		if t.Failed() {
			t.Logf("virtbridged stderr:\n%s", stderr.String())
		}
	})

	var seen []stateNote
	nl.next(t, "READY=1", 20*time.Second, &seen)
	waitLine(t, got, "firewall", 3*time.Second)
	// SIGHUP reloads: the daemon re-reads the configuration and
	// reconciles, between RELOADING=1 and READY=1, and runs on.
	killPID(t, cmd.Process.Pid, syscall.SIGHUP)
	nl.next(t, "RELOADING=1", 5*time.Second, &seen)
	waitLine(t, got, "reload", 5*time.Second)
	nl.next(t, "READY=1", 5*time.Second, &seen)
	waitLine(t, got, "firewall", 3*time.Second)
	begin := time.Now()
	killPID(t, cmd.Process.Pid, syscall.SIGTERM)
	nl.next(t, "STOPPING=1", 2*time.Second, &seen)
	waitLine(t, got, "released", 2*time.Second)
	select {
	case err := <-exited:
		t.Logf("virtbridged exited %v after SIGTERM: %v", time.Since(begin).Round(time.Millisecond), err)
		if err != nil {
			t.Errorf("virtbridged exited with %v after SIGTERM, want 0", err)
		}
		exited <- err // for the cleanup
	case <-time.After(2*time.Second - time.Since(begin)):
		t.Fatalf("virtbridged still running 2 s after SIGTERM")
	}
}

func waitLine(t *testing.T, lines <-chan string, want string, limit time.Duration) {
	t.Helper()
	deadline := time.After(limit)
	var seen []string
	for {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("no %q on virtbridged's stdout; got %q", want, seen)
			}
			if l == want {
				return
			}
			seen = append(seen, l)
		case <-deadline:
			t.Fatalf("no %q on virtbridged's stdout within %v; got %q", want, limit, seen)
		}
	}
}
