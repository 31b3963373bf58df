package lab

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"testing"
)

// hostDirs are created on the host when missing: libvirtd needs the libvirt
// ones, and all of them serve as mount points for the lab's private
// directories, which a bind mount cannot create.
var hostDirs = []string{
	"/etc/libvirt",
	"/run/libvirt",
	"/var/lib/libvirt/qemu",
	"/var/log/libvirt",
	"/var/cache/libvirt",
	"/etc/virtbridge",
	"/run/virtbridge",
	"/var/lib/virtbridge",
	"/var/log/virtbridge",
}

// requiredTools are the programs a Lab runs; Upstream labs also run dnsmasq.
var requiredTools = []string{
	"ip", "nsenter", "unshare", "mount", "sh", "sleep",
	"libvirtd", "virtlogd", "virsh", "qemu-system-x86_64",
}

// EnsureHostPrereqs creates what Debian's libvirt packages leave to their
// systemd and postinst parts on a full install: the groups kvm, libvirt and
// libvirt-qemu, the user libvirt-qemu (without it the qemu driver refuses to
// load) and the directories libvirtd and the lab's mounts need. It never
// installs packages. It is idempotent and safe to call concurrently.
func EnsureHostPrereqs() error {
	var errs []error
	for _, g := range []string{"kvm", "libvirt-qemu", "libvirt"} {
		if _, err := user.LookupGroup(g); err == nil {
			continue
		}
		// Exit status 9: the group was created meanwhile by someone else.
		if err := runAllowExit([]int{9}, "groupadd", "-r", g); err != nil {
			errs = append(errs, fmt.Errorf("creating group %q: %w", g, err))
		}
	}
	if _, err := user.Lookup("libvirt-qemu"); err != nil {
		err := runAllowExit([]int{9}, "useradd", "-r", "-g", "libvirt-qemu", "-G", "kvm",
			"-d", "/var/lib/libvirt", "-s", "/usr/sbin/nologin", "libvirt-qemu")
		if err != nil {
			errs = append(errs, fmt.Errorf("creating user %q: %w", "libvirt-qemu", err))
		}
	}
	for _, d := range hostDirs {
		if err := os.MkdirAll(d, 0o755); err != nil {
			errs = append(errs, fmt.Errorf("creating directory: %w", err))
		}
	}
	return errors.Join(errs...)
}

func runAllowExit(okCodes []int, name string, args ...string) error {
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	out, err := cmd.CombinedOutput()
	if err == nil {
		return nil
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		for _, c := range okCodes {
			if ee.ExitCode() == c {
				return nil
			}
		}
	}
	return fmt.Errorf("running %q: %w: %s", append([]string{name}, args...), err, out)
}

// lookTool finds a program in PATH or in the sbin directories, which a
// non-login root shell does not always have in PATH.
func lookTool(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, d := range []string{"/usr/sbin", "/sbin", "/usr/bin", "/bin"} {
		p := filepath.Join(d, name)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("program %q not found in PATH or sbin: %w", name, exec.ErrNotFound)
}

// Unavailable says why a Lab cannot run on this machine, or returns nil.
func Unavailable(upstream bool) error {
	if os.Geteuid() != 0 {
		return errors.New("lab needs root (network and mount namespaces, libvirtd)")
	}
	if _, err := os.Stat("/dev/net/tun"); err != nil {
		return fmt.Errorf("lab needs /dev/net/tun for tap devices: %w", err)
	}
	tools := requiredTools
	if upstream {
		tools = append(tools[:len(tools):len(tools)], "dnsmasq")
	}
	for _, t := range tools {
		if _, err := lookTool(t); err != nil {
			return fmt.Errorf("lab needs %s (Debian: libvirt-daemon-driver-qemu libvirt-clients qemu-system-x86 ipxe-qemu dnsmasq-base iproute2): %w", t, err)
		}
	}
	return nil
}

// SkipIfUnavailable skips t, saying why, when this machine cannot run a
// Lab with an upstream: not root, no /dev/net/tun, or a program such as
// libvirtd missing; and always under -short (`make unit`).
func SkipIfUnavailable(t testing.TB) {
	t.Helper()
	if testing.Short() {
		t.Skip("skipped in -short: needs root, namespaces and libvirtd")
	}
	if err := Unavailable(true); err != nil {
		t.Skipf("skipping: %v", err)
	}
}
