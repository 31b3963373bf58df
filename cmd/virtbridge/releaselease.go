package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/virtbridge/virtbridge/internal/change"
	"github.com/virtbridge/virtbridge/internal/config"
	"github.com/virtbridge/virtbridge/internal/engine"
	"github.com/virtbridge/virtbridge/internal/journal"
	"github.com/virtbridge/virtbridge/internal/owner/dhcp"
	"github.com/virtbridge/virtbridge/internal/owner/lease"
	"github.com/virtbridge/virtbridge/internal/paths"
)

// keptLease refuses, before any change, the release of a bridge whose
// lease a running virtbridged keeps: released under its feet, the lease
// would be renewed on a bridge that no longer carries it, or taken over
// again at once. It says how: change the configuration, reload.
func keptLease(cfg *config.Config, cfgPath, name string) error {
	s, ok, err := lease.ReadStatus(paths.RunDir(), name)
	if err != nil || !ok {
		return err
	}
	what := fmt.Sprintf("bridge %q: %s", name, s.Describe(time.Now()))
	if b, ok := cfg.Bridge(name); ok && b.Manager == config.ManagerVirtbridged {
		return fmt.Errorf("%s, and %s still says manager: virtbridged for it: released now, virtbridged would take it over again at once. "+
			"Remove the bridge from %s (or set another manager for it), run `systemctl reload virtbridged` (it then stops keeping the lease, "+
			"which stays on the bridge with what is left of it), then release again; nothing changed", what, cfgPath, cfgPath)
	}
	return fmt.Errorf("%s under a configuration older than %s, which no longer says manager: virtbridged for it: "+
		"run `systemctl reload virtbridged` (it then stops keeping the lease), then release again; nothing changed", what, cfgPath)
}

// leaseBack tells the operator, once the release is done, that a lease
// is back on the uplink with what is left of it and that nobody renews
// it: how to start the DHCP client virtbridged stopped (its recorded
// command line; never started from here: it ran under ifupdown or a
// unit, whose state this command cannot know). Journaled lease-released
// (op release).
func leaseBack(ctx context.Context, e *engine.Engine, name string, cs []change.Change, stdout, stderr io.Writer) {
	uplink := ""
	for _, c := range cs {
		if c.Kind == change.UplinkReleased {
			uplink = c.Object
		}
	}
	st, recorded, _ := lease.ReadStopped(paths.RunDir(), name)
	if uplink == "" {
		uplink = st.Uplink
	}
	ls, _ := dhcp.Leases(uplink)
	if uplink == "" || len(ls) == 0 {
		return
	}
	msg := fmt.Sprintf("%s holds %s with %d s left of its lease, and nobody renews it: start its DHCP client again before then",
		uplink, ls[0].Addr, ls[0].ValidLft)
	if recorded {
		var cmds []string
		for _, p := range st.Clients {
			cmds = append(cmds, "`"+strings.Join(p.Args, " ")+"`")
		}
		msg += fmt.Sprintf(": virtbridged stopped it at %s; it ran as %s", st.At.UTC().Format("2006-01-02 15:04:05 UTC"), strings.Join(cmds, ", "))
	}
	msg += fmt.Sprintf(" (under ifupdown: `ifup --force %s`; under systemd: restart the unit that ran it)", uplink)
	fmt.Fprintf(stdout, "lease: %s\n", msg)
	c := change.Change{Kind: change.LeaseReleased, Object: uplink, Before: "kept by virtbridged on bridge " + name, After: msg}
	if err := e.Journal.HostChanges(ctx, journal.VM{Op: engine.OpRelease, Source: string(e.Source)}, []change.Change{c}); err != nil {
		fmt.Fprintf(stderr, "virtbridge release: journaling: %v\n", err)
	}
	if recorded {
		if err := lease.RemoveStopped(paths.RunDir(), name); err != nil {
			fmt.Fprintf(stderr, "virtbridge release: %v\n", err)
		}
	}
}
