// Command vbdemo shows virtbridge at work on one machine, as root: it sets
// up a lab (internal/testenv/lab) — a hypervisor network namespace running
// libvirtd with virtbridge's hook, joined to an "upstream" namespace that
// serves DHCP — breaks the hypervisor the way the classic bridged-networking
// how-to leaves a host, starts a disk-less VM on bridge br0, and shows the
// VM getting its address from upstream, the host still reachable, and the
// tap recorded against the VM. Then it stops the VM and tears the lab down,
// also on failure and on Ctrl-C. The machine's own network is not touched.
//
//	vbdemo [--bin DIR] [--keep]   # `make demo` runs it after `make build`
//	vbdemo --down                 # removes what a --keep run left
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/virtbridge/virtbridge/internal/testenv/lab"
)

// Exit codes.
const (
	exitOK          = 0
	exitFailed      = 1
	exitUsage       = 2
	exitInterrupted = 130
)

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("vbdemo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	binDir := fs.String("bin", "bin", "`directory` with virtbridge-hook and virtbridge (make build)")
	keep := fs.Bool("keep", false, "leave the lab up at the end, and say how to enter it and tear it down")
	down := fs.Bool("down", false, "remove the labs and the journald that --keep runs left, then exit")
	fs.Usage = func() {
		fmt.Fprint(stderr, "usage: vbdemo [--bin DIR] [--keep] | vbdemo --down\n\n"+
			"Shows a VM on a virtbridge-managed bridge reaching the outside network, on a host\n"+
			"broken the way the classic how-to leaves it, inside network namespaces of its own.\n"+
			"Needs root and the lab's Debian packages (make deps).\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	if fs.NArg() > 0 {
		fs.Usage()
		return exitUsage
	}
	if os.Geteuid() != 0 {
		fmt.Fprintln(stderr, "vbdemo: needs root (network and mount namespaces, libvirtd): run `sudo make demo`")
		return exitUsage
	}
	if *down {
		return tearDownKept(stdout, stderr)
	}
	if err := lab.Unavailable(true); err != nil {
		fmt.Fprintf(stderr, "vbdemo: %v\nvbdemo: `make deps` installs the Debian packages the lab needs\n", err)
		return exitFailed
	}
	d, err := newDemo(stdout, *binDir, *keep)
	if err != nil {
		fmt.Fprintf(stderr, "vbdemo: %v\n", err)
		return exitUsage
	}
	ctx, stop := interruptible(stdout)
	defer stop()
	begin := time.Now()
	err = d.run(ctx)
	ferr := d.finish(err == nil && ctx.Err() == nil)
	switch {
	case ctx.Err() != nil:
		fmt.Fprintln(stderr, "vbdemo: interrupted")
		reportTeardown(stderr, ferr)
		return exitInterrupted
	case err != nil:
		fmt.Fprintf(stderr, "\nvbdemo: FAILED: %v\n", err)
		reportTeardown(stderr, ferr)
		return exitFailed
	case ferr != nil:
		reportTeardown(stderr, ferr)
		return exitFailed
	}
	fmt.Fprintf(stdout, "\nDone in %v: the VM reached the outside network through virtbridge's bridge.\n",
		time.Since(begin).Round(time.Second))
	return exitOK
}

func reportTeardown(w io.Writer, err error) {
	if err != nil {
		fmt.Fprintf(w, "vbdemo: tearing down: %v\nvbdemo: `sudo bin/vbdemo --down` removes what is left\n", err)
	}
}

// newDemo checks the built binaries.
func newDemo(w io.Writer, binDir string, keep bool) (*demo, error) {
	dir, err := filepath.Abs(binDir)
	if err != nil {
		return nil, err
	}
	d := &demo{w: w, keep: keep,
		hook: filepath.Join(dir, "virtbridge-hook"), cli: filepath.Join(dir, "virtbridge")}
	for _, p := range []string{d.hook, d.cli} {
		if fi, err := os.Stat(p); err != nil || fi.Mode()&0o111 == 0 {
			return nil, fmt.Errorf("%s is missing or not executable: run `make build` (or give --bin)", p)
		}
	}
	return d, nil
}

// interruptible returns a context that ends at the first SIGINT, SIGTERM
// or SIGHUP. Later signals are caught too, so that the tear-down they
// would interrupt goes on.
func interruptible(w io.Writer) (context.Context, func()) {
	ctx, cancel := context.WithCancel(context.Background())
	sig := make(chan os.Signal, 4)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	go func() {
		for s := range sig {
			if ctx.Err() == nil {
				fmt.Fprintf(w, "\n*** %v: stopping the demo and tearing the lab down\n", s)
				cancel()
			} else {
				fmt.Fprintln(w, "*** tearing down; this takes a few seconds")
			}
		}
	}()
	return ctx, func() { signal.Stop(sig); cancel() }
}

// tearDownKept removes the labs --keep runs left (and any lab whose demo
// or test died without tearing it down) and the journald a --keep run
// started.
func tearDownKept(stdout, stderr io.Writer) int {
	n, err := lab.RemoveKept()
	err = errors.Join(err, lab.SweepStale(), stopKeptJournald())
	fmt.Fprintf(stdout, "removed %d kept lab(s)\n", n)
	if err != nil {
		fmt.Fprintf(stderr, "vbdemo --down: %v\n", err)
		return exitFailed
	}
	return exitOK
}
