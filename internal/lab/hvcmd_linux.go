package lab

import (
	"os/exec"
	"slices"
)

// CommandHV returns, unstarted, a command that runs a program inside the
// hypervisor's network and mount namespaces, as ExecHV does: for programs
// that must outlive one call, such as virtbridged. nsenter execs the
// program, so once started the command's pid is the program's. The caller
// owns the process: it must stop it by its pid before Close, which
// otherwise kills it with everything else left in the namespace.
func (l *Lab) CommandHV(name string, args ...string) *exec.Cmd {
	return l.hvCommand(name, args...)
}

// HolderPID returns the pid of the process that holds the lab's namespaces
// for its whole life (unlike libvirtd's, which changes on a restart):
// `nsenter -t PID -m -n` enters the lab, and /proc/PID/root/ reaches the
// lab's private /run/libvirt from the host.
func (l *Lab) HolderPID() int { return l.sleeper.pid() }

// The lab's /var/log/virtbridge is private too, so that the JSON-lines
// journal of a hook or daemon running in the lab without journald never
// lands in the machine's own /var/log/virtbridge; HostPath maps it.
func init() {
	const logDir = "/var/log/virtbridge"
	if !slices.ContainsFunc(privateDirs, func(d struct{ path, sub string }) bool { return d.path == logDir }) {
		privateDirs = append(privateDirs, struct{ path, sub string }{logDir, "var-log-virtbridge"})
	}
	if !slices.Contains(hostDirs, logDir) {
		hostDirs = append(hostDirs, logDir)
	}
}
