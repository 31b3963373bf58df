package engine

import (
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/virtbridge/virtbridge/internal/apply"
	"github.com/virtbridge/virtbridge/internal/config"
	"github.com/virtbridge/virtbridge/internal/firewall"
	"github.com/virtbridge/virtbridge/internal/journal"
	"github.com/virtbridge/virtbridge/internal/links"
	"github.com/virtbridge/virtbridge/internal/owner/handoff"
	"github.com/virtbridge/virtbridge/internal/paths"
	"github.com/virtbridge/virtbridge/internal/sysctl"
)

// ForHost returns an engine over the real backends, acting on the calling
// process's network namespace (the one libvirtd and its hook run in), with
// the lock, store and journal files under internal/paths. lockWait bounds
// the wait for the host lock.
func ForHost(cfg *config.Config, lockWait time.Duration) *Engine {
	return &Engine{
		Config:    cfg,
		Journal:   journal.New(journal.Options{File: filepath.Join(paths.LogDir(), "journal.jsonl")}),
		StorePath: filepath.Join(paths.StateDir(), "ports.json"),
		LockPath:  paths.Lock(),
		LockWait:  lockWait,
		OpenHost:  openHost,
		LinkKind:  linkKind,
	}
}

// linkKind asks the kernel (one RTM_GETLINK) what the link called name is.
func linkKind(name string) (string, error) {
	l, err := netlink.LinkByName(name)
	var nf netlink.LinkNotFoundError
	if errors.As(err, &nf) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("looking up link %q: %w", name, err)
	}
	return l.Type(), nil
}

// VerifyFirewall makes e's firewall verify everything at every run
// (firewall.Options.Verify), for the CLI's explicit runs: `virtbridge
// apply` and `doctor --fix` also put back firewalld settings changed only
// permanently, which the ruleset generation does not show.
func VerifyFirewall(e *Engine) {
	e.OpenHost = func() (*apply.Host, func(), error) { return openHostWith(true, false) }
}

// KeepLeases is for virtbridged, which keeps the lease of a bridge with
// manager: virtbridged itself (internal/owner/lease): e's link backend
// moves such a bridge's dynamic address (links.Manager.KeepsLeases), which
// the hook and the CLI refuse.
func KeepLeases(e *Engine) {
	e.OpenHost = func() (*apply.Host, func(), error) { return openHostWith(false, true) }
}

func openHost() (*apply.Host, func(), error) { return openHostWith(false, false) }

func openHostWith(verify, keepLeases bool) (*apply.Host, func(), error) {
	l, err := links.New()
	if err != nil {
		return nil, nil, err
	}
	l.KeepsLeases = keepLeases
	owners, closeOwners, err := handoff.ForHost()
	if err != nil {
		l.Close()
		return nil, nil, err
	}
	owners.Links = l // the owners read their snapshots with the kernel path's netlink sockets
	h := &apply.Host{
		Links:   l,
		Owners:  owners,
		Sysctls: sysctl.New(""),
		Firewall: firewall.New(firewall.Options{
			StatePath: filepath.Join(paths.RunDir(), "firewall.state"),
			Verify:    verify,
		}),
	}
	return h, func() { closeOwners(); l.Close() }, nil
}
