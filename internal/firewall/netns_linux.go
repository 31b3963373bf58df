package firewall

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"runtime"
	"strings"

	"golang.org/x/sys/unix"
)

// netns is the network namespace the firewall works in: path names a
// namespace file (/run/netns/NAME), "" is the process's own.
type netns struct {
	path string
}

// facts reads what identifies the current ruleset, without running
// iptables. nf_tables not answering is a fact (GenOK false), not an error.
func (n netns) facts() (facts, error) {
	var fx facts
	b, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return fx, fmt.Errorf("reading boot id: %w", err)
	}
	fx.Boot = strings.TrimSpace(string(b))
	if n.path == "" {
		v4, v6, err := legacyTables()
		if err != nil {
			return fx, err
		}
		fx.Legacy = v4 + "|" + v6
		fx.Gen, fx.Cookie, err = nftGeneration(0)
		fx.GenOK = err == nil
		return fx, nil
	}
	f, err := os.Open(n.path)
	if err != nil {
		return fx, fmt.Errorf("opening network namespace: %w", err)
	}
	defer f.Close()
	var v4, v6 string
	if err := inNetNS(int(f.Fd()), func() (err error) { v4, v6, err = legacyTables(); return err }); err != nil {
		return fx, err
	}
	fx.Legacy = v4 + "|" + v6
	fx.Gen, fx.Cookie, err = nftGeneration(int(f.Fd()))
	fx.GenOK = err == nil
	return fx, nil
}

// legacyTables returns the legacy (x_tables) tables the calling thread's
// namespace holds; empty when none exist or legacy support is not loaded.
func legacyTables() (v4, v6 string, err error) {
	read := func(name string) (string, error) {
		b, err := os.ReadFile("/proc/thread-self/net/" + name)
		if errors.Is(err, fs.ErrNotExist) {
			return "", nil
		}
		if err != nil {
			return "", fmt.Errorf("reading legacy iptables tables: %w", err)
		}
		return strings.TrimSpace(string(b)), nil
	}
	if v4, err = read("ip_tables_names"); err != nil {
		return "", "", err
	}
	v6, err = read("ip6_tables_names")
	return v4, v6, err
}

// inNetNS runs fn on an OS thread moved into the namespace fd, and moves
// the thread back before it serves other goroutines. A thread that cannot
// be moved back stays locked, so it ends with its goroutine and no other
// goroutine ever runs in the wrong namespace. (Ending is not enough on its
// own: the runtime cannot end the process's main thread and parks it
// instead, which would keep the namespace alive until the process exits.)
func inNetNS(fd int, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			runtime.UnlockOSThread() // not moved
			errc <- fmt.Errorf("entering network namespace: %w", err)
			return
		}
		defer orig.Close()
		if err := unix.Setns(fd, unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread() // not moved
			errc <- fmt.Errorf("entering network namespace: %w", err)
			return
		}
		err = fn()
		if unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET) == nil {
			runtime.UnlockOSThread()
		}
		errc <- err
	}()
	return <-errc
}
