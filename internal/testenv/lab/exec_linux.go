package lab

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"libvirt.org/go/libvirtxml"
)

// toolEnv is the environment of the commands the lab runs: the caller's,
// with sbin in PATH and C messages.
func toolEnv() []string {
	path := os.Getenv("PATH")
	for _, d := range []string{"/usr/sbin", "/sbin", "/usr/bin", "/bin"} {
		if !slices.Contains(filepath.SplitList(path), d) {
			path += string(filepath.ListSeparator) + d
		}
	}
	return append(os.Environ(), "PATH="+strings.TrimPrefix(path, ":"), "LC_ALL=C")
}

// run runs a command on the host and returns its stdout; the error carries
// argv and output.
func run(ctx context.Context, name string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = toolEnv()
	return output(cmd, "")
}

func output(cmd *exec.Cmd, where string) ([]byte, error) {
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(stderr.String() + "\n" + stdout.String())
		return stdout.Bytes(), fmt.Errorf("running %q%s: %w: %s", cmd.Args, where, err, msg)
	}
	return stdout.Bytes(), nil
}

// hvCommand builds a command that runs inside the hypervisor's network and
// mount namespaces. nsenter execs the program, so the pid is the program's.
func (l *Lab) hvCommand(name string, args ...string) *exec.Cmd {
	argv := append([]string{"-t", fmt.Sprint(l.sleeper.pid()), "-m", "-n", "--", name}, args...)
	cmd := exec.Command("nsenter", argv...)
	cmd.Env = toolEnv()
	cmd.Dir = "/"
	return cmd
}

// ExecHV runs a program inside the hypervisor's network and mount
// namespaces, where libvirtd and the hook run, and returns its stdout. The
// error carries argv, stderr and stdout.
func (l *Lab) ExecHV(ctx context.Context, name string, args ...string) ([]byte, error) {
	return l.runCtx(ctx, l.hvCommand(name, args...), " in "+l.hvNS)
}

// ExecUp runs a program inside the upstream network namespace and returns
// its stdout.
func (l *Lab) ExecUp(ctx context.Context, name string, args ...string) ([]byte, error) {
	if l.upNS == "" {
		return nil, fmt.Errorf("running %q: lab has no upstream", name)
	}
	cmd := exec.Command("ip", append([]string{"netns", "exec", l.upNS, name}, args...)...)
	cmd.Env = toolEnv()
	return l.runCtx(ctx, cmd, " in "+l.upNS)
}

// runCtx runs cmd and kills it when ctx ends. exec.CommandContext cannot
// be used since the command is built before the context is known.
func (l *Lab) runCtx(ctx context.Context, cmd *exec.Cmd, where string) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("running %q%s: %w", cmd.Args, where, err)
	}
	stop := context.AfterFunc(ctx, func() {
		if cmd.Process != nil {
			_ = cmd.Process.Kill()
		}
	})
	defer stop()
	return output(cmd, where)
}

// Virsh runs `virsh -c qemu:///system ARGS` against the lab's libvirtd and
// returns its stdout. The error carries argv, stderr and stdout.
func (l *Lab) Virsh(ctx context.Context, args ...string) (string, error) {
	out, err := l.ExecHV(ctx, "virsh", append([]string{"-c", "qemu:///system"}, args...)...)
	return string(out), err
}

var xmlSeq atomic.Int64

// DefineStart defines the domain described by domainXML and starts it. It
// returns once `virsh start` has returned, i.e. after the hook's
// "started begin" call.
func (l *Lab) DefineStart(ctx context.Context, domainXML string) error {
	var dom libvirtxml.Domain
	if err := dom.Unmarshal(domainXML); err != nil {
		return fmt.Errorf("parsing domain xml: %w", err)
	}
	if err := l.Define(ctx, domainXML); err != nil {
		return err
	}
	if _, err := l.Virsh(ctx, "start", dom.Name); err != nil {
		return fmt.Errorf("starting domain %q: %w", dom.Name, err)
	}
	return nil
}

// Define defines (or redefines) a domain from its XML without starting it.
func (l *Lab) Define(ctx context.Context, domainXML string) error {
	p, err := l.writeXML(domainXML)
	if err != nil {
		return err
	}
	if _, err := l.Virsh(ctx, "define", p); err != nil {
		return fmt.Errorf("defining domain: %w", err)
	}
	return nil
}

// DefineStartNetwork defines a libvirt network from its XML and starts it.
func (l *Lab) DefineStartNetwork(ctx context.Context, networkXML string) error {
	var n libvirtxml.Network
	if err := n.Unmarshal(networkXML); err != nil {
		return fmt.Errorf("parsing network xml: %w", err)
	}
	p, err := l.writeXML(networkXML)
	if err != nil {
		return err
	}
	if _, err := l.Virsh(ctx, "net-define", p); err != nil {
		return fmt.Errorf("defining network %q: %w", n.Name, err)
	}
	if _, err := l.Virsh(ctx, "net-start", n.Name); err != nil {
		return fmt.Errorf("starting network %q: %w", n.Name, err)
	}
	return nil
}

// writeXML stores a document in the lab directory, which the mount
// namespace shares with the host, for virsh to read.
func (l *Lab) writeXML(doc string) (string, error) {
	p := filepath.Join(l.dir, "xml", fmt.Sprintf("%04d.xml", xmlSeq.Add(1)))
	if err := os.WriteFile(p, []byte(doc), 0o644); err != nil {
		return "", fmt.Errorf("writing xml: %w", err)
	}
	return p, nil
}

// Domains lists the names of all defined or running domains.
func (l *Lab) Domains(ctx context.Context) ([]string, error) {
	out, err := l.Virsh(ctx, "list", "--all", "--name")
	if err != nil {
		return nil, err
	}
	return strings.Fields(out), nil
}

// DestroyUndefine stops the domain if it runs and removes its definition.
// A domain that does not exist is not an error.
func (l *Lab) DestroyUndefine(ctx context.Context, name string) error {
	names, err := l.Domains(ctx)
	if err != nil {
		return fmt.Errorf("removing domain %q: %w", name, err)
	}
	if !slices.Contains(names, name) {
		return nil
	}
	running, err := l.Virsh(ctx, "list", "--name")
	if err != nil {
		return fmt.Errorf("removing domain %q: %w", name, err)
	}
	if slices.Contains(strings.Fields(running), name) {
		if _, err := l.Virsh(ctx, "destroy", name); err != nil {
			return fmt.Errorf("destroying domain %q: %w", name, err)
		}
	}
	// A transient domain is gone once destroyed.
	names, err = l.Domains(ctx)
	if err != nil {
		return fmt.Errorf("removing domain %q: %w", name, err)
	}
	if slices.Contains(names, name) {
		if _, err := l.Virsh(ctx, "undefine", name); err != nil {
			return fmt.Errorf("undefining domain %q: %w", name, err)
		}
	}
	return nil
}

// Lease returns the address dnsmasq in the upstream namespace leased to mac.
func (l *Lab) Lease(mac string) (ip string, ok bool) {
	f, err := os.Open(l.leaseFile())
	if err != nil {
		return "", false
	}
	defer f.Close()
	return parseLease(f, mac)
}

// WaitLease waits until dnsmasq has leased an address to mac and returns it.
// A disk-less PXE VM asks 20–40 s after it starts.
func (l *Lab) WaitLease(ctx context.Context, mac string) (string, error) {
	if l.upNS == "" {
		return "", fmt.Errorf("waiting for lease of %s: lab has no upstream", mac)
	}
	for {
		if ip, ok := l.Lease(mac); ok {
			return ip, nil
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("waiting for lease of %s: %w", mac, ctx.Err())
		case <-time.After(250 * time.Millisecond):
		}
	}
}
