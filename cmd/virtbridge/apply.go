package main

import (
	"context"
	"fmt"
	"io"

	"github.com/virtbridge/virtbridge/internal/config"
	"github.com/virtbridge/virtbridge/internal/engine"
	"github.com/virtbridge/virtbridge/internal/events"
	"github.com/virtbridge/virtbridge/internal/links"
)

func init() {
	register("apply", command{summary: "make every bridge of the configuration now, as virtbridged does at start", run: runApply})
}

const applyUsage = `usage: virtbridge apply [--config FILE]

Makes the host match the configuration once, whether or not a VM uses its
bridges, as virtbridged does at start: every managed bridge without
create: on_demand is created (or made right) with its settings, its uplink
enslaved and the host's addresses and routes moved from the uplink to the
bridge; then the sysctls and the firewall rules are set. Each bridge is
made like at a VM's prepare, under the host lock, and every change is
journaled (op apply, source cli). For hosts that run only the hook, e.g.
from a boot script before libvirtd starts; with virtbridged running it is
not needed. Bridges with create: on_demand are left to the first VM on
them. One bridge that cannot be made does not stop the others.

Prints each change, or that nothing needed changing. Exit status: 0 when
the host matches the configuration, 1 when something could not be made
right (each failure printed), 2 on bad usage or a configuration that does
not load (its file:line errors printed).

`

func runApply(args []string, _ io.Reader, stdout, stderr io.Writer) int {
	fs := newFlags("apply", "apply [--config FILE]", stderr)
	cfgPath := fs.String("config", config.PathFromEnv(), "configuration `file` ($"+config.EnvPath+" overrides the default)")
	fs.Usage = func() {
		fmt.Fprint(stderr, applyUsage)
		fs.PrintDefaults()
	}
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	if fs.NArg() > 0 {
		fs.Usage()
		return exitUsage
	}
	cfg, err := config.Load(*cfgPath)
	if err == nil {
		err = cfg.CheckUplinks(links.NameByMAC)
	}
	if err != nil {
		fmt.Fprintf(stderr, "virtbridge apply: changing nothing: %v\n", err)
		return exitUsage
	}
	res, err := cliEngine(cfg).EnsureHost(context.Background(), engine.OpApply)
	for _, c := range res.Changes {
		fmt.Fprintf(stdout, "changed: %s\n", c)
	}
	for _, w := range res.Warnings {
		fmt.Fprintf(stderr, "virtbridge apply: warning: %v\n", w)
	}
	if err != nil {
		fmt.Fprintf(stderr, "virtbridge apply: %v\n", err)
		return exitFound
	}
	if len(res.Changes) == 0 {
		fmt.Fprintln(stdout, "nothing to change: the host matches the configuration")
	}
	return exitOK
}

// cliEngine is the engine of the CLI's host changes (apply, doctor --fix):
// the hook's backends, lock, store and journal, recorded as the CLI's.
func cliEngine(cfg *config.Config) *engine.Engine {
	e := engine.ForHost(cfg, fixLockWait)
	e.Source = events.SourceCLI
	engine.VerifyFirewall(e)
	return e
}
