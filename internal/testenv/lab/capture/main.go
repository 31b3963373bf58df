//go:build linux

// Command capture records what libvirtd really passes to its qemu hook, for
// the fixtures in testdata/hook. For each domain shape it starts a fresh lab
// (package lab) with capturehook installed as the qemu hook, defines and
// starts one VM, destroys it once started, and writes every hook call in
// order as NN-<op>-<subop>.args (argv[1:], one per line) and
// NN-<op>-<subop>.xml (stdin exactly as received).
//
// Run from the repository root, as root:
//
//	go run ./internal/testenv/lab/capture
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/virtbridge/virtbridge/internal/testenv/lab"
)

const captureDir = "/run/virtbridge/hook-capture" // = capturehook.Dir

// shape is one domain layout whose hook calls are captured.
type shape struct {
	name string
	// nics of the VM; the VM's MAC and UUID derive from the shape's index.
	nics func(idx int) []lab.NIC
	// network, when set, is defined and started before the VM.
	network [2]string // name, bridge
	// startFails says `virsh start` is expected to fail.
	startFails bool
	// reconnect restarts libvirtd while the VM runs.
	reconnect bool
}

func mac(idx, nic int) string { return fmt.Sprintf("52:54:00:aa:%02x:%02x", idx, nic) }

var shapes = []shape{
	{name: "one-nic", nics: func(i int) []lab.NIC {
		return []lab.NIC{{Source: "br-a", MAC: mac(i, 1)}}
	}},
	{name: "two-nics", nics: func(i int) []lab.NIC {
		return []lab.NIC{{Source: "br-a", MAC: mac(i, 1)}, {Source: "br-b", MAC: mac(i, 2)}}
	}},
	{name: "custom-tap", nics: func(i int) []lab.NIC {
		return []lab.NIC{{Source: "br-a", MAC: mac(i, 1), Target: "vbtest0"}}
	}},
	{name: "network-bridge", network: [2]string{"lan-a", "br-a"}, nics: func(i int) []lab.NIC {
		return []lab.NIC{{Type: "network", Source: "lan-a", MAC: mac(i, 1)}}
	}},
	{name: "macvtap", nics: func(i int) []lab.NIC {
		return []lab.NIC{{Type: "direct", Source: "dummy0", Mode: "bridge", MAC: mac(i, 1)}}
	}},
	{name: "user", nics: func(i int) []lab.NIC {
		return []lab.NIC{{Type: "user", MAC: mac(i, 1)}}
	}},
	{name: "no-nic", nics: func(int) []lab.NIC { return nil }},
	{name: "missing-bridge", startFails: true, nics: func(i int) []lab.NIC {
		return []lab.NIC{{Source: "br-missing", MAC: mac(i, 1)}}
	}},
	{name: "reconnect", reconnect: true, nics: func(i int) []lab.NIC {
		return []lab.NIC{{Source: "br-a", MAC: mac(i, 1)}}
	}},
}

func main() {
	out := flag.String("out", "", "fixture directory (default testdata/hook of the module)")
	only := flag.String("shapes", "", "comma-separated shapes to capture (default all)")
	verbose := flag.Bool("v", false, "log lab progress")
	flag.Parse()
	log.SetFlags(0)
	log.SetPrefix("capture: ")

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if *out == "" {
		root, err := lab.ModuleRoot(ctx)
		if err != nil {
			log.Fatal(err)
		}
		*out = filepath.Join(root, "testdata", "hook")
	}
	if err := runAll(ctx, *out, *only, *verbose); err != nil {
		log.Fatal(err)
	}
}

func runAll(ctx context.Context, out, only string, verbose bool) error {
	if err := lab.Unavailable(false); err != nil {
		return err
	}
	tmp, err := os.MkdirTemp("", "virtbridge-capture-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	hook := filepath.Join(tmp, "capturehook")
	build := exec.CommandContext(ctx, "go", "build", "-o", hook, "github.com/virtbridge/virtbridge/internal/testenv/lab/capturehook")
	if b, err := build.CombinedOutput(); err != nil {
		return fmt.Errorf("building capturehook: %w: %s", err, b)
	}

	var selected []string
	if only != "" {
		selected = strings.Split(only, ",")
		for _, name := range selected {
			if !slices.ContainsFunc(shapes, func(s shape) bool { return s.name == name }) {
				return fmt.Errorf("unknown shape %q", name)
			}
		}
	}
	wroteContext := false
	for i, s := range shapes {
		if selected != nil && !slices.Contains(selected, s.name) {
			continue
		}
		begin := time.Now()
		calls, err := captureShape(ctx, i+1, s, hook, filepath.Join(out, s.name), verbose)
		if err != nil {
			return fmt.Errorf("shape %s: %w", s.name, err)
		}
		log.Printf("%-15s %d calls in %v: %s", s.name, len(calls), time.Since(begin).Round(time.Millisecond), summary(calls))
		if !wroteContext {
			if err := writeContext(out, calls); err != nil {
				return err
			}
			wroteContext = true
		}
	}
	return writeVersions(ctx, out)
}

// call is one recorded hook call.
type call struct {
	dir   string
	args  []string
	stdin []byte
	env   []byte
	proc  []byte
}

func summary(calls []call) string {
	var parts []string
	for _, c := range calls {
		if len(c.args) >= 3 {
			parts = append(parts, c.args[1]+"/"+c.args[2])
		}
	}
	return strings.Join(parts, " → ")
}

func captureShape(ctx context.Context, idx int, s shape, hook, outDir string, verbose bool) (calls []call, err error) {
	opts := lab.Options{HookPath: hook}
	if verbose {
		opts.Logf = log.Printf
	}
	l, err := lab.Start(ctx, opts)
	if err != nil {
		return nil, err
	}
	defer func() {
		if cerr := l.Close(); cerr != nil {
			err = errors.Join(err, cerr)
		}
	}()
	capDir, err := l.HostPath(captureDir)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(capDir, 0o755); err != nil {
		return nil, err
	}
	if err := setupLinks(ctx, l); err != nil {
		return nil, err
	}
	if err := os.RemoveAll(outDir); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(outDir, 0o755); err != nil {
		return nil, err
	}

	if err := exercise(ctx, l, idx, s, outDir, capDir); err != nil {
		return nil, err
	}
	calls, err = readCalls(capDir)
	if err != nil {
		return nil, err
	}
	if len(calls) == 0 {
		return nil, errors.New("no hook calls captured; see libvirtd.log")
	}
	return calls, writeFixtures(outDir, calls)
}

// exercise runs the shape's life cycle in the lab: define, start, maybe
// restart libvirtd, destroy, undefine. It saves the definitions and the
// start error, if any, next to the fixtures.
func exercise(ctx context.Context, l *lab.Lab, idx int, s shape, outDir, capDir string) error {
	if s.network[0] != "" {
		nx, err := lab.NetworkXML(s.network[0], s.network[1])
		if err != nil {
			return err
		}
		if err := l.DefineStartNetwork(ctx, nx); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(outDir, "defined-network.xml"), []byte(nx), 0o644); err != nil {
			return err
		}
	}
	dx, err := lab.DomainXML(lab.VM{
		Name: s.name,
		UUID: fmt.Sprintf("5b0c0000-0000-4000-8000-0000000000%02x", idx),
		NICs: s.nics(idx),
	})
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(outDir, "defined.xml"), []byte(dx), 0o644); err != nil {
		return err
	}

	startErr := l.DefineStart(ctx, dx)
	switch {
	case s.startFails && startErr == nil:
		return errors.New("start succeeded, expected a failure")
	case s.startFails:
		// The tail of the message is libvirt's own text.
		msg := startErr.Error()
		if i := strings.Index(msg, "error: "); i >= 0 {
			msg = msg[i:]
		}
		if err := os.WriteFile(filepath.Join(outDir, "start-error.txt"), []byte(msg+"\n"), 0o644); err != nil {
			return err
		}
	case startErr != nil:
		return startErr
	}
	if s.reconnect {
		before := countCalls(capDir)
		if err := l.RestartLibvirtd(ctx); err != nil {
			return err
		}
		// libvirtd reconnects to running domains in a thread of their own
		// and may answer virsh before the hook has run.
		deadline := time.Now().Add(15 * time.Second)
		for countCalls(capDir) == before && time.Now().Before(deadline) {
			time.Sleep(100 * time.Millisecond)
		}
	}
	return l.DestroyUndefine(ctx, s.name)
}

// setupLinks creates the links every shape may use. dummy0 is the lower
// device for macvtap; kernels without CONFIG_DUMMY get a veth end instead.
func setupLinks(ctx context.Context, l *lab.Lab) error {
	for _, br := range []string{"br-a", "br-b"} {
		if _, err := l.ExecHV(ctx, "ip", "link", "add", br, "type", "bridge"); err != nil {
			return err
		}
		if _, err := l.ExecHV(ctx, "ip", "link", "set", br, "up"); err != nil {
			return err
		}
	}
	if _, err := l.ExecHV(ctx, "ip", "link", "add", "dummy0", "type", "dummy"); err != nil {
		if _, err2 := l.ExecHV(ctx, "ip", "link", "add", "dummy0", "type", "veth", "peer", "name", "dummy0p"); err2 != nil {
			return errors.Join(err, err2)
		}
		if _, err := l.ExecHV(ctx, "ip", "link", "set", "dummy0p", "up"); err != nil {
			return err
		}
	}
	_, err := l.ExecHV(ctx, "ip", "link", "set", "dummy0", "up")
	return err
}

func countCalls(dir string) int {
	m, _ := filepath.Glob(filepath.Join(dir, "*", "done"))
	return len(m)
}

func readCalls(dir string) ([]call, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var calls []call
	for _, e := range entries {
		d := filepath.Join(dir, e.Name())
		if _, err := os.Stat(filepath.Join(d, "done")); err != nil {
			return nil, fmt.Errorf("hook call %s is incomplete", e.Name())
		}
		c := call{dir: d}
		args, err := os.ReadFile(filepath.Join(d, "args"))
		if err != nil {
			return nil, err
		}
		c.args = strings.Split(strings.TrimSuffix(string(args), "\n"), "\n")
		if c.stdin, err = os.ReadFile(filepath.Join(d, "stdin")); err != nil {
			return nil, err
		}
		if c.env, err = os.ReadFile(filepath.Join(d, "env")); err != nil {
			return nil, err
		}
		if c.proc, err = os.ReadFile(filepath.Join(d, "proc")); err != nil {
			return nil, err
		}
		calls = append(calls, c)
	}
	sort.Slice(calls, func(i, j int) bool { return calls[i].dir < calls[j].dir })
	return calls, nil
}

var unsafeName = regexp.MustCompile(`[^a-z0-9-]+`)

func writeFixtures(outDir string, calls []call) error {
	for i, c := range calls {
		if len(c.args) < 3 {
			return fmt.Errorf("hook call %s has argv %q", c.dir, c.args)
		}
		base := fmt.Sprintf("%02d-%s-%s", i+1,
			unsafeName.ReplaceAllString(c.args[1], "_"), unsafeName.ReplaceAllString(c.args[2], "_"))
		args := strings.Join(c.args, "\n") + "\n"
		if err := os.WriteFile(filepath.Join(outDir, base+".args"), []byte(args), 0o644); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(outDir, base+".xml"), c.stdin, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// writeContext records what a hook process gets besides argv and stdin, and
// checks that every call got the same environment.
func writeContext(out string, calls []call) error {
	for _, c := range calls[1:] {
		if string(c.env) != string(calls[0].env) {
			log.Printf("warning: environment of %s differs from the first call", c.dir)
		}
	}
	env := strings.Split(strings.TrimSpace(string(calls[0].env)), "\n")
	sort.Strings(env)
	if err := os.WriteFile(filepath.Join(out, "hook-env.txt"), []byte(strings.Join(env, "\n")+"\n"), 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(out, "hook-process.txt"), calls[0].proc, 0o644)
}

func writeVersions(ctx context.Context, out string) error {
	var b strings.Builder
	for _, argv := range [][]string{{"libvirtd", "--version"}, {"qemu-system-x86_64", "--version"}, {"uname", "-r"}} {
		cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
		cmd.Env = append(os.Environ(), "PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL=C")
		o, err := cmd.Output()
		if err != nil {
			return fmt.Errorf("running %q: %w", argv, err)
		}
		first, _, _ := strings.Cut(string(o), "\n")
		fmt.Fprintf(&b, "%s: %s\n", argv[0], strings.TrimSpace(first))
	}
	return os.WriteFile(filepath.Join(out, "versions.txt"), []byte(b.String()), 0o644)
}
