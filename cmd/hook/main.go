// Command virtbridge-hook is virtbridge's libvirt qemu hook. Install it as
// /etc/libvirt/hooks/qemu; libvirtd runs it on every VM operation as
//
//	qemu <domain> <op> <subop> <extra>   (domain XML on stdin)
//
// and waits for it. It reads /etc/virtbridge/virtbridge.yaml (or
// $VIRTBRIDGE_CONFIG), and at prepare makes the VM's bridges, uplinks,
// sysctls and firewall right. It never writes to stdout.
package main

import (
	"os"
	"time"

	"golang.org/x/sys/unix"

	"github.com/virtbridge/virtbridge/internal/config"
	"github.com/virtbridge/virtbridge/internal/events"
	"github.com/virtbridge/virtbridge/internal/hook"
	"github.com/virtbridge/virtbridge/internal/links"
)

func main() {
	// At migrate and restore libvirt takes anything on stdout as a new
	// domain XML: point fd 1 at stderr so nothing, not even a stray print
	// in a library, can reach it.
	_ = unix.Dup2(2, 1)
	os.Stdout = os.Stderr
	if len(os.Args) == 2 && (os.Args[1] == "--help" || os.Args[1] == "-h") {
		os.Stderr.WriteString(usage)
		os.Exit(0)
	}
	os.Exit(hook.Run(hook.Env{
		Args:        os.Args[1:],
		Stdin:       os.Stdin,
		Stderr:      os.Stderr,
		ConfigPath:  config.PathFromEnv(),
		NetworkDirs: events.NetworkDirs,
		UplinkByMAC: links.NameByMAC,
		Engine:      newEngine,
		Start:       started,
		Exit:        os.Exit,
	}))
}

// started is as close to the process start as Go lets us see: the hook's
// deadline (hook_timeout) counts from it.
var started = time.Now()

const usage = `virtbridge-hook: virtbridge's libvirt qemu hook.

Install it as /etc/libvirt/hooks/qemu, then restart (or SIGHUP) libvirtd:
libvirtd looks for hooks only when it starts. libvirtd runs it as

    qemu <domain> <op> <subop> <extra>     (domain XML on stdin)

At prepare (and reconnect, migrate, restore, attach) it makes the VM's
managed bridges exist, enslaves their uplinks (moving the host's addresses
and routes to the bridge), and sets sysctls and firewall rules. At started
it puts each tap libvirt made for the VM in its bridge and names the VM in
the tap's interface alias. It changes only what the configuration names,
never writes to stdout, never runs a shell and never calls the libvirt API.

Configuration: /etc/virtbridge/virtbridge.yaml, or $VIRTBRIDGE_CONFIG.
Exit status: 1 refuses the operation where libvirt allows (prepare, start,
started, migrate, restore); at reconnect, stopped and release it always
exits 0 and reports problems on stderr. A run that outlasts hook_timeout
(20s by default) gives up with one line saying what it was waiting for.
`
