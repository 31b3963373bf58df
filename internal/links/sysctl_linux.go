package links

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Per-link IPv6 settings (net.ipv6.conf.LINK.*) have no netlink request to
// set them: they are files under /proc/sys/net, which show the network
// namespace of the thread that opens them. A Manager made for another
// namespace (NewAt) opens them from a thread of its own that enters that
// namespace and dies with its goroutine (locked, never unlocked), so no
// thread of the process is ever left in the wrong namespace.

// errNoIPv6: the link has no IPv6 settings (IPv6 is off, or the link is
// gone).
var errNoIPv6 = errors.New("no IPv6 on the link")

// inNS runs fn on a thread in the Manager's network namespace.
func (m *Manager) inNS(fn func() error) error {
	if !m.ns.IsOpen() {
		return fn()
	}
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with this goroutine
		if err := unix.Setns(int(m.ns), unix.CLONE_NEWNET); err != nil {
			done <- fmt.Errorf("entering the network namespace: %w", err)
			return
		}
		done <- fn()
	}()
	return <-done
}

// confPath is the file of setting key of link in /proc/sys.
func confPath(link, key string) string {
	return filepath.Join("/proc/sys/net/ipv6/conf", link, key)
}

// ipv6Conf reads the integer settings keys of link (net.ipv6.conf.LINK.KEY).
func (m *Manager) ipv6Conf(link string, keys ...string) ([]int, error) {
	out := make([]int, len(keys))
	err := m.inNS(func() error {
		for i, k := range keys {
			b, err := os.ReadFile(confPath(link, k))
			if err != nil {
				return err
			}
			if out[i], err = strconv.Atoi(strings.TrimSpace(string(b))); err != nil {
				return fmt.Errorf("%s: %w", confPath(link, k), err)
			}
		}
		return nil
	})
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("reading the IPv6 settings of %q: %w", link, errNoIPv6)
	}
	if err != nil {
		return nil, fmt.Errorf("reading the IPv6 settings of %q: %w", link, err)
	}
	return out, nil
}

// setIPv6Conf writes net.ipv6.conf.LINK.KEY and reads it back.
func (m *Manager) setIPv6Conf(link, key string, v int) error {
	err := m.inNS(func() error {
		p := confPath(link, key)
		if err := os.WriteFile(p, []byte(strconv.Itoa(v)+"\n"), 0); err != nil {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if got := strings.TrimSpace(string(b)); got != strconv.Itoa(v) {
			return fmt.Errorf("the kernel kept %s", got)
		}
		return nil
	})
	if errors.Is(err, fs.ErrNotExist) {
		err = errNoIPv6
	}
	if err != nil {
		return fmt.Errorf("setting net.ipv6.conf.%s.%s to %d: %w", link, key, v, err)
	}
	return nil
}
