package main

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/virtbridge/virtbridge/internal/config"
)

func init() {
	register("release", command{summary: "give a bridge's uplink its addresses back and remove the bridge (the way back from a handoff)", run: runRelease})
}

const releaseUsage = `usage: virtbridge release [--config FILE] BRIDGE

The operator's way back from a handoff: the uplink leaves BRIDGE and gets
back what the bridge carried for it. On the kernel path (virtbridge made
the bridge over netlink) its addresses, the routes of every table through
the bridge, multipath legs, permanent neighbours and the rules naming the
bridge move back to the uplink, each added on the uplink before it is
deleted from the bridge, then the uplink leaves the bridge. When
NetworkManager or systemd-networkd made the bridge from virtbridge's
profiles or files, those go and the uplink's own profile or .network is
active again. The bridge is removed unless a VM tap is still in it: then
it stays, without uplink nor addresses, and the taps are named (a bridge a
manager made is then not released at all: stop or move those VMs first).
Under the host lock; every change is journaled (op release, source cli);
a failure undoes what the kernel path changed.

The uplink is the configuration's when it declares BRIDGE, otherwise the
bridge's one port that is no VM tap; a bridge the configuration does not
declare and that lacks virtbridge's alias is someone else's: refused.
While the configuration still
declares BRIDGE, virtbridged (at start, on drift, on reload) or the next
VM start on it makes it again: the output says so; set create: on_demand
for it, or remove it from the configuration.

A bridge with manager: virtbridged: while a running virtbridged keeps
its lease, the release is refused, nothing changed: remove the bridge
from the configuration (or set another manager for it) and run
` + "`systemctl reload virtbridged`" + `: virtbridged stops keeping the lease
(journaled lease-released), which stays on the bridge with what is left
of it. Then release moves the address back to the uplink with that
remaining lifetime, says that nobody renews it and how to start the DHCP
client virtbridged had stopped (the command line it ran with, recorded
when it was stopped; ifup --force for ifupdown), and journals that
(lease-released). It does not start that client itself: ifupdown or a
unit ran it, and their state is theirs.

Exit status: 0 when released, 1 when it could not be (the reason
printed; nothing changed, or what changed undone), 2 on bad usage or a
configuration that does not load.

`

func runRelease(args []string, _ io.Reader, stdout, stderr io.Writer) int {
	fs := newFlags("release", "release [--config FILE] BRIDGE", stderr)
	cfgPath := fs.String("config", config.PathFromEnv(), "configuration `file` ($"+config.EnvPath+" overrides the default)")
	fs.Usage = func() {
		fmt.Fprint(stderr, releaseUsage)
		fs.PrintDefaults()
	}
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	if fs.NArg() != 1 || fs.Arg(0) == "" {
		fs.Usage()
		return exitUsage
	}
	name := fs.Arg(0)
	cfg, err := config.Load(*cfgPath)
	if err != nil {
		fmt.Fprintf(stderr, "virtbridge release: changing nothing: %v\n", err)
		return exitUsage
	}
	if err := keptLease(cfg, *cfgPath, name); err != nil {
		fmt.Fprintf(stderr, "virtbridge release: %v\n", err)
		return exitFound
	}
	e := cliEngine(cfg)
	res, err := e.Release(context.Background(), name)
	for _, c := range res.Changes {
		fmt.Fprintf(stdout, "changed: %s\n", c)
	}
	if err != nil {
		fmt.Fprintf(stderr, "virtbridge release: %v\n", err)
		return exitFound
	}
	leaseBack(context.Background(), e, name, res.Changes, stdout, stderr)
	if len(res.Kept) > 0 {
		fmt.Fprintf(stdout, "bridge %s kept: VM taps %s are still in it; it has no uplink any more\n", name, strings.Join(res.Kept, ", "))
	}
	switch {
	case res.AtStart:
		fmt.Fprintf(stdout, "note: %s still declares bridge %s: virtbridged (at start, on drift, on reload), `virtbridge apply` and the next VM start on it make it again; "+
			"set create: on_demand for it to keep it released until a VM needs it, or remove it from the configuration\n", *cfgPath, name)
	case res.InConfig:
		fmt.Fprintf(stdout, "note: %s still declares bridge %s (create: on_demand): the next VM start on it makes it again; remove it from the configuration to keep it released\n", *cfgPath, name)
	}
	return exitOK
}
