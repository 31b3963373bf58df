// Command capturehook is a libvirt qemu hook that records every call it
// gets: argv, stdin, environment and process facts. It is installed as
// /etc/libvirt/hooks/qemu inside a lab (see package lab) to capture the hook
// fixtures in testdata/hook.
//
// libvirtd runs hooks with a scrubbed environment, so the hook takes its
// output directory from a fixed path inside the lab's private mount
// namespace: Dir. Each call becomes a numbered directory there holding
// args (argv[1:], one per line), stdin (bytes as received), env and proc.
// When Dir does not exist the hook does nothing. It never writes to
// stdout, which libvirt reads as a replacement XML for some operations, and
// always exits 0 so that capturing never changes what libvirt does.
package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// Dir is where calls are recorded, inside the lab's mount namespace
// (/run/virtbridge is a private directory of the lab).
const Dir = "/run/virtbridge/hook-capture"

func main() {
	if err := capture(); err != nil {
		fmt.Fprintf(os.Stderr, "capturehook: %v\n", err)
	}
}

func capture() error {
	// Read stdin first and whole: libvirt writes the XML into a pipe and
	// may wait for the hook to take it.
	stdin, err := io.ReadAll(os.Stdin)
	if err != nil {
		return fmt.Errorf("reading stdin: %w", err)
	}
	if _, err := os.Stat(Dir); err != nil {
		return nil
	}
	call, err := nextCallDir()
	if err != nil {
		return err
	}
	cwd, _ := os.Getwd()
	parent, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", os.Getppid()))
	stdinKind := "unknown"
	if fi, err := os.Stdin.Stat(); err == nil {
		switch t := fi.Mode().Type(); {
		case t&os.ModeNamedPipe != 0:
			stdinKind = "pipe"
		case t.IsRegular():
			stdinKind = "file"
		default:
			stdinKind = t.String()
		}
	}
	proc := fmt.Sprintf("argv0=%s\nuid=%d\ngid=%d\neuid=%d\ncwd=%s\nparent=%s\nstdin=%s\n",
		os.Args[0], os.Getuid(), os.Getgid(), os.Geteuid(), cwd,
		strings.TrimSpace(string(parent)), stdinKind)
	files := map[string][]byte{
		"args":  []byte(strings.Join(os.Args[1:], "\n") + "\n"),
		"stdin": stdin,
		"env":   []byte(strings.Join(os.Environ(), "\n") + "\n"),
		"proc":  []byte(proc),
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(call, name), data, 0o644); err != nil {
			return fmt.Errorf("recording call: %w", err)
		}
	}
	// Written last: the reader takes only complete calls.
	return os.WriteFile(filepath.Join(call, "done"), nil, 0o644)
}

// nextCallDir creates the next free numbered directory. libvirtd calls its
// hooks one at a time, but Mkdir's exclusivity keeps the numbers unique
// even if it did not.
func nextCallDir() (string, error) {
	for n := 1; n < 10000; n++ {
		p := filepath.Join(Dir, fmt.Sprintf("%04d", n))
		err := os.Mkdir(p, 0o755)
		if err == nil {
			return p, nil
		}
		if !errors.Is(err, os.ErrExist) {
			return "", fmt.Errorf("creating call directory: %w", err)
		}
	}
	return "", errors.New("creating call directory: too many calls")
}
