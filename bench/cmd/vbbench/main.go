// Command vbbench measures what virtbridge costs a VM start, against what
// people use today, and writes the results into docs/BENCHMARKS.md (between
// the markers of package bench). `make bench` runs it; it needs root.
//
// Every hook candidate runs as libvirtd runs a hook: a fresh process,
// argv `<domain> <op> <subop> -`, a captured domain XML (testdata/hook)
// written to its stdin through a pipe, libvirtd's environment. Each
// candidate runs inside a network namespace made for it (see host), from
// a thread of this program that entered the namespace once, so that no
// `ip netns exec` is measured. Candidates compared with each other run
// interleaved, round-robin, in the same run.
//
//	go run ./bench/cmd/vbbench [-rounds 200] [-only steady,cold,reconcile,daemon,vmstart] [-out docs/BENCHMARKS.md]
//
// With -out "" the report goes to stdout only. Everything it creates
// (namespaces, labs, processes) it removes by name and pid when it ends,
// also on SIGINT.
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
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/virtbridge/virtbridge/bench"
	"github.com/virtbridge/virtbridge/internal/testenv/lab"
)

type options struct {
	rounds, coldRounds, warmup int
	foreignRules, taps         int
	reconcileRounds            int
	hotplugs, vmStarts         int
	idle                       time.Duration
	only                       []string
	out                        string
	keep                       bool
	bin                        string // where `make build` put the binaries
	alt                        string // another hook binary, measured beside the built one
	straceIdle                 bool
	daemonEnv                  []string
}

// bencher runs the suites and collects the report.
type bencher struct {
	opts     options
	root     string // the module's root
	tmp      string // everything this run creates on disk
	bins     binaries
	journald string // systemd-journald binary
	report   bench.Report
	closers  []func() error

	// Kept for the targets.
	steady          map[string]*candidate
	cold            *candidate
	reconcile       map[string]bench.Summary // by "first/SHAPE", "steady/SHAPE"
	reconcileShapes []string
	reconcileHWM    int // kB
	daemon          daemonResult
	vmstart         map[string]bench.Summary
}

type binaries struct {
	hook, daemon, floor, shell, self string
	alts                             []string // -alt-hook
}

func main() {
	var o options
	flag.IntVar(&o.rounds, "rounds", 200, "measured rounds of the steady-state hook suite")
	flag.IntVar(&o.coldRounds, "cold-rounds", 60, "measured rounds of the cold prepare suite")
	flag.IntVar(&o.warmup, "warmup", 5, "unmeasured rounds first")
	flag.IntVar(&o.foreignRules, "rules", 10000, "foreign rules per family in FORWARD for the scale scenario")
	flag.IntVar(&o.taps, "taps", 1000, "taps on the bridges for the scale scenarios")
	flag.IntVar(&o.reconcileRounds, "reconcile-rounds", 5, "reconciles of each kind")
	flag.IntVar(&o.hotplugs, "hotplugs", 60, "NIC hot-plugs measured against the daemon")
	flag.IntVar(&o.vmStarts, "vm-starts", 25, "virsh start runs with and without the hook, each")
	flag.DurationVar(&o.idle, "idle", time.Minute, "how long the daemon's idle CPU use is measured")
	only := flag.String("only", "steady,cold,reconcile,daemon,vmstart", "comma-separated suites to run")
	flag.StringVar(&o.out, "out", "docs/BENCHMARKS.md", "Markdown file to update between its vbbench markers (\"\": stdout only)")
	flag.BoolVar(&o.keep, "keep", false, "keep the temporary directory (logs) for a look afterwards")
	flag.BoolVar(&o.straceIdle, "strace-idle", false, "log the daemon's system calls while idle (strace -c; its CPU figure is then not meaningful)")
	flag.StringVar(&o.bin, "bin", "bin", "directory holding virtbridge-hook and virtbridged as `make build` leaves them")
	flag.StringVar(&o.alt, "alt-hook", "", "other builds of the hook (comma-separated paths), measured beside bin/virtbridge-hook in the same rounds (experiments)")
	denv := flag.String("daemon-env", "", "comma-separated VAR=value added to the daemon's environment (an experiment, e.g. GOGC=50)")
	flag.Parse()
	if *denv != "" {
		o.daemonEnv = strings.Split(*denv, ",")
	}
	o.only = strings.Split(*only, ",")
	log.SetFlags(log.Ltime)
	log.SetPrefix("vbbench: ")

	if len(flag.Args()) > 0 && flag.Arg(0) == "reconcile-child" {
		os.Exit(reconcileChild(flag.Args()[1:]))
	}
	if os.Geteuid() != 0 {
		log.Fatal("needs root: it creates network namespaces, runs journald, libvirtd and VMs (sudo make bench)")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	code := 0
	if err := runMain(ctx, o); err != nil {
		log.Print(err)
		code = 1
	}
	os.Exit(code)
}

func runMain(ctx context.Context, o options) (err error) {
	b := &bencher{opts: o}
	if b.root, err = lab.ModuleRoot(ctx); err != nil {
		return err
	}
	if b.tmp, err = os.MkdirTemp("", "vbbench-"); err != nil {
		return err
	}
	defer func() {
		slices.Reverse(b.closers)
		for _, c := range b.closers {
			err = errors.Join(err, c())
		}
		if o.keep {
			log.Printf("kept %s", b.tmp)
		} else {
			os.RemoveAll(b.tmp)
		}
	}()
	if err := b.build(ctx); err != nil {
		return err
	}
	b.report.Started = time.Now()
	b.report.Command = "make bench"
	if len(os.Args) > 1 {
		b.report.Command = "go run ./bench/cmd/vbbench " + strings.Join(os.Args[1:], " ")
	}
	b.report.Machine = machine(ctx)
	suites := []struct {
		name string
		run  func(context.Context) error
	}{
		{"steady", b.steadySuite},
		{"cold", b.coldSuite},
		{"reconcile", b.reconcileSuite},
		{"daemon", b.daemonSuite},
		{"vmstart", b.vmStartSuite},
	}
	for _, s := range suites {
		if !slices.Contains(o.only, s.name) {
			continue
		}
		begin := time.Now()
		if err := s.run(ctx); err != nil {
			return fmt.Errorf("suite %s: %w", s.name, err)
		}
		b.logf("suite %s done in %v", s.name, time.Since(begin).Round(time.Second))
	}
	b.report.Took = time.Since(b.report.Started)
	b.report.Machine.LoadAfter = loadAverage()
	b.report.Targets = b.targets()
	md := b.report.Markdown()
	fmt.Print(md)
	if o.out == "" {
		return nil
	}
	path := o.out
	if !filepath.IsAbs(path) {
		path = filepath.Join(b.root, path)
	}
	doc, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	if err := os.WriteFile(path, []byte(bench.Splice(string(doc), md)), 0o644); err != nil {
		return err
	}
	b.logf("wrote %s", path)
	return nil
}

func (b *bencher) logf(format string, args ...any) { log.Printf(format, args...) }

// build finds the hook and the daemon as `make build` made them (so that
// what is measured is what the Makefile ships) and compiles the exec floor.
func (b *bencher) build(ctx context.Context) error {
	bin := b.opts.bin
	if !filepath.IsAbs(bin) {
		bin = filepath.Join(b.root, bin)
	}
	b.bins = binaries{
		hook:   filepath.Join(bin, "virtbridge-hook"),
		daemon: filepath.Join(bin, "virtbridged"),
		floor:  filepath.Join(b.tmp, "bin", "floor"),
		shell:  filepath.Join(b.root, "bench", "shell-hook.sh"),
	}
	if b.opts.alt != "" {
		b.bins.alts = strings.Split(b.opts.alt, ",")
	}
	for _, p := range append([]string{b.bins.hook, b.bins.daemon}, b.bins.alts...) {
		if _, err := os.Stat(p); err != nil {
			return fmt.Errorf("%w (run `make build` first, or point -bin at the binaries)", err)
		}
	}
	cmd := exec.CommandContext(ctx, "go", "build", "-o", b.bins.floor, "./bench/floor")
	cmd.Dir = b.root
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("building the exec floor: %w: %s", err, out)
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	b.bins.self = self
	for _, p := range []string{"/lib/systemd/systemd-journald", "/usr/lib/systemd/systemd-journald"} {
		if _, err := os.Stat(p); err == nil {
			b.journald = p
			break
		}
	}
	if b.journald == "" {
		return errors.New("systemd-journald not found (apt-get install systemd)")
	}
	return nil
}

// machine describes this machine for the report.
func machine(ctx context.Context) bench.Machine {
	m := bench.Machine{Cores: runtime.NumCPU(), LoadBefore: loadAverage()}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		m.CPU = bench.CPUModel(string(b))
	}
	var u syscall.Utsname
	if syscall.Uname(&u) == nil {
		m.Kernel = utsString(u.Release[:])
	}
	if out, err := exec.CommandContext(ctx, "go", "version").Output(); err == nil {
		m.Go = strings.TrimSpace(string(out))
	}
	first := func(name string, args ...string) string {
		out, _ := runOut(ctx, name, args...)
		l, _, _ := strings.Cut(strings.TrimSpace(out), "\n")
		return l
	}
	m.Iptables = first("iptables", "--version")
	m.Libvirt = first("libvirtd", "--version")
	m.QEMU = first("qemu-system-x86_64", "--version")
	return m
}

func utsString(b []int8) string {
	s := make([]byte, 0, len(b))
	for _, c := range b {
		if c == 0 {
			break
		}
		s = append(s, byte(c))
	}
	return string(s)
}

func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return ""
	}
	return f[0]
}
