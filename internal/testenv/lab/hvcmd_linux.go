package lab

import "os/exec"

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
