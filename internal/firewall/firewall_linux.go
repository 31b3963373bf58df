// Package firewall keeps virtbridge's iptables rules, in IPv4 and IPv6:
// its own filter chain VIRTBRIDGE-FWD accepting the bridged traffic of the
// managed bridges, and one jump to it at the top of FORWARD (and of
// DOCKER-USER when Docker is there). It is the firewall backend apply drives.
//
// Reading a table means one `iptables -S`, and every iptables run fetches
// the whole ruleset (≈50 ms with 10,000 rules). So a Firewall remembers,
// in a small state file, the nf_tables ruleset generation it last verified;
// while the generation, the namespace and the wanted rules are the same, an
// Ensure runs no iptables at all. Any ruleset change by anyone bumps the
// generation and brings a full verify. Legacy iptables has no generation:
// there every Ensure reads each family's table once.
//
// It runs iptables, iptables-save and iptables-restore itself, through
// internal/command, and does not use github.com/coreos/go-iptables, which
// was considered and dropped: it takes no timeout or context (a stuck
// iptables would hold libvirtd's VM start without bound), hands iptables
// the caller's environment and finds it through $PATH (see
// docs/SECURITY.md, "External commands"), and runs one process per rule
// with no restore, which made a cold prepare cost 14 iptables processes
// (docs/BENCHMARKS.md, "Profile and causes"). Do not add it back.
package firewall

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/virtbridge/virtbridge/internal/change"
	"github.com/virtbridge/virtbridge/internal/desired"
	"github.com/virtbridge/virtbridge/internal/paths"
	"github.com/virtbridge/virtbridge/internal/revert"
)

// Options configures a Firewall. The zero value is right for the host.
type Options struct {
	// StatePath is the state file; "" means DefaultStatePath.
	StatePath string
	// NoState disables the state file: every Ensure verifies.
	NoState bool
	// Verify makes every Ensure read and verify everything, firewalld's
	// zone settings included, whatever the state file says, and still
	// record the generation for later runs. An unchanged nf_tables
	// generation covers the rules and firewalld's runtime settings, but
	// not firewalld's permanent ones; explicit runs of an operator's
	// (`virtbridge apply`, `doctor --fix`) set it.
	Verify bool
	// BinDir, when set, is the only directory searched for iptables-nft,
	// ip6tables-legacy-save and the rest. Tests point it at wrappers that
	// run the real commands inside a test namespace.
	BinDir string
	// NetNS, when set, is the network namespace file (/run/netns/NAME)
	// whose nf_tables generation and legacy tables are read; it must be the
	// namespace BinDir's commands act on. "" is the process's own.
	NetNS string
	// Wait is how many seconds iptables waits for the xtables lock; 0 means 5.
	Wait int
	// DBusAddress is the D-Bus system bus firewalld is looked for on; ""
	// is the system bus. Tests point it at a private bus.
	DBusAddress string
	// FirewalldRecord is where virtbridge records what it changed in
	// firewalld; "" means firewalld.json in the state directory (the
	// changes are permanent, so the record lives beside the store, not in
	// /run).
	FirewalldRecord string
}

// Firewall keeps virtbridge's rules with the host's iptables. It keeps no
// state in memory; callers serialize Ensure and Remove (the hook holds the
// host lock).
type Firewall struct {
	state  string
	verify bool
	bins   binaries
	ns     netns
	wait   int
	dbus   string
	record string
}

// New returns a Firewall. It runs nothing.
func New(o Options) *Firewall {
	f := &Firewall{state: o.StatePath, verify: o.Verify, bins: binaries{dir: o.BinDir}, ns: netns{path: o.NetNS}, wait: o.Wait,
		dbus: o.DBusAddress, record: o.FirewalldRecord}
	if f.record == "" {
		f.record = filepath.Join(paths.StateDir(), "firewalld.json")
	}
	if f.state == "" {
		f.state = DefaultStatePath
	}
	if o.NoState {
		f.state = ""
	}
	if f.wait <= 0 {
		f.wait = 5
	}
	return f
}

// Ensure makes both families hold an accept rule for the bridged traffic
// of each bridge in fw.AcceptBridges, in chain VIRTBRIDGE-FWD, jumped to
// from the top of FORWARD (and DOCKER-USER), and no other rule of
// virtbridge's. With no bridges it removes the jumps and the chain. It is
// idempotent: it changes only what differs, reads changed tables back,
// pushes an undo step on rv for every change, and with nf_tables and an
// unchanged ruleset generation it runs no iptables at all. Backend "none"
// changes nothing. The iptables commands end with ctx; undoing them
// (rv.Fail) keeps ctx's deadline but not its cancellation.
func (f *Firewall) Ensure(ctx context.Context, fw desired.Firewall, rv *revert.Reverter) ([]change.Change, error) {
	if fw.Backend == BackendNone {
		return nil, nil
	}
	want, err := variantOf(fw.Backend)
	if err != nil {
		return nil, err
	}
	bridges, err := wantBridges(fw.AcceptBridges)
	if err != nil {
		return nil, err
	}
	leave, err := nativeMode(fw.NativeTables)
	if err != nil {
		return nil, err
	}
	fx, err := f.ns.facts()
	if err != nil {
		return nil, err
	}
	st, err := loadState(f.state)
	if err != nil {
		return nil, err
	}
	if st != nil && !f.verify && st.unchanged(fx, fw.Backend, specHash(NFT, bridges, leave)) {
		return nil, nil
	}
	v := want
	if v == "" {
		if cached, ok := st.cachedVariant(fx); ok {
			v = cached
		} else if v, err = chooseVariant(f.detector(ctx, fx)); err != nil {
			return nil, err
		}
	}
	ts, err := f.tables(v)
	if err != nil {
		return nil, err
	}
	// The native tables first, so that a refusal (native_tables: leave)
	// comes before any change: read only where nf_tables answers, and
	// never on the fast path above (an unchanged generation covers them).
	// firewalld, when it runs, through its own door (D-Bus).
	cs, err := f.ensureFirewalld(ctx, bridges, fw.FirewalldZone, rv)
	if err != nil {
		return cs, err
	}
	nativeChanged := len(cs) > 0
	if fx.GenOK {
		ncs, ch, err := f.ensureNative(ctx, bridges, leave, rv)
		cs, nativeChanged = append(cs, ncs...), nativeChanged || ch
		if err != nil {
			return cs, err
		}
	}
	ics, changed, err := ensureTables(ctx, ts, bridges, rv)
	cs = append(cs, ics...)
	if err != nil {
		return cs, err
	}
	mark := fx // the generation our reads saw
	if len(changed) > 0 || nativeChanged {
		if mark, err = f.ns.facts(); err != nil {
			return cs, err
		}
		// Read back every table, not only the changed ones: the generation
		// recorded must be one at which all of them were seen.
		if err := verifyTables(ctx, ts, bridges); err != nil {
			return cs, err
		}
		if mark.GenOK {
			if err := f.verifyNative(bridges, leave); err != nil {
				return cs, err
			}
		}
	}
	end, err := f.ns.facts()
	if err != nil {
		return cs, err
	}
	// Trust the generation only if nothing changed it between our last
	// changes and the end of our reads.
	end.GenOK = end.GenOK && mark.GenOK && end.Gen == mark.Gen
	return cs, saveState(f.state, state{facts: end, Backend: fw.Backend, Variant: v, Spec: specHash(v, bridges, leave)})
}

// Check lists, one per line, what differs from what Ensure(fw) would
// leave, e.g. "iptables-nft: FORWARD has no jump to VIRTBRIDGE-FWD" or,
// when firewalld runs, "firewalld: runtime: zone public does not forward,
// so it drops bridged frames of br0". It
// changes nothing and uses no remembered state; an empty list means all is
// in place.
func (f *Firewall) Check(ctx context.Context, fw desired.Firewall) ([]string, error) {
	if fw.Backend == BackendNone {
		return []string{}, nil
	}
	v, err := variantOf(fw.Backend)
	if err != nil {
		return nil, err
	}
	bridges, err := wantBridges(fw.AcceptBridges)
	if err != nil {
		return nil, err
	}
	if v == "" {
		fx, err := f.ns.facts()
		if err != nil {
			return nil, err
		}
		if v, err = chooseVariant(f.detector(ctx, fx)); err != nil {
			return nil, err
		}
	}
	ts, err := f.tables(v)
	if err != nil {
		return nil, err
	}
	out, err := checkTables(ctx, ts, bridges)
	if err != nil {
		return out, err
	}
	fps, err := f.checkFirewalld(ctx, bridges, fw.FirewalldZone)
	out = append(out, fps...)
	if err != nil {
		return out, err
	}
	leave, err := nativeMode(fw.NativeTables)
	if err != nil {
		return out, err
	}
	if fx, err := f.ns.facts(); err == nil && fx.GenOK {
		ps, err := f.checkNative(bridges, leave)
		out = append(out, ps...)
		return out, err
	}
	return out, nil
}

// nativeMode reads desired.Firewall.NativeTables: leave or not.
func nativeMode(s string) (leave bool, err error) {
	switch s {
	case "", NativeAccept:
		return false, nil
	case NativeLeave:
		return true, nil
	}
	return false, fmt.Errorf("firewall native_tables %q: want accept or leave", s)
}

// Remove deletes virtbridge's jumps, rules and chain from both families of
// every installed variant, its accept rules from native nftables tables,
// what it changed in firewalld (as recorded), (legacy only where its filter table exists, so
// that looking does not create it; nft only where nf_tables answers), and
// the state file. It is idempotent
// and keeps going past errors, returning them joined. Package removal uses
// it.
func (f *Firewall) Remove(ctx context.Context) ([]change.Change, error) {
	fx, err := f.ns.facts()
	if err != nil {
		return nil, err
	}
	var cs []change.Change
	var errs []error
	for _, v := range []Variant{NFT, Legacy} {
		for _, fam := range families() {
			path, err := f.bins.find(v, fam, "")
			if err != nil || v == Legacy && !fx.legacyHasFilter(fam) || v == NFT && !fx.GenOK {
				continue // not installed, or no table (nf_tables silent): nothing of ours there
			}
			var rv revert.Reverter
			c, _, err := ensureTables(ctx, []table{&iptTable{fam: fam, v: v, path: path, wait: f.wait}}, nil, &rv)
			rv.Success()
			cs = append(cs, c...)
			errs = append(errs, err)
		}
	}
	c, err := f.removeFirewalld(ctx)
	cs = append(cs, c...)
	errs = append(errs, err)
	if fx.GenOK {
		// virtbridge's rules in native tables, and only those.
		var rv revert.Reverter
		c, _, err := f.ensureNative(ctx, nil, false, &rv)
		rv.Success()
		cs = append(cs, c...)
		errs = append(errs, err)
	}
	errs = append(errs, removeState(f.state))
	return cs, errors.Join(errs...)
}

// tables returns the filter tables of variant v in every family.
func (f *Firewall) tables(v Variant) ([]table, error) {
	var ts []table
	for _, fam := range families() {
		path, err := f.bins.find(v, fam, "")
		if err != nil {
			return nil, err
		}
		ts = append(ts, &iptTable{fam: fam, v: v, path: path, wait: f.wait})
	}
	return ts, nil
}

// families returns IPv4, and IPv6 unless the kernel runs without it
// (ipv6.disable=1), where ip6tables cannot work.
func families() []Family {
	if _, err := os.Stat("/proc/sys/net/ipv6"); err != nil {
		return []Family{IPv4}
	}
	return []Family{IPv4, IPv6}
}

func (f *Firewall) detector(ctx context.Context, fx facts) detector {
	return hostDetector{ctx, f.bins, fx}
}

// hostDetector answers chooseVariant's questions on this host, for one
// call: its iptables-save runs end with ctx.
type hostDetector struct {
	ctx  context.Context
	bins binaries
	fx   facts
}

func (d hostDetector) installed(v Variant) bool {
	_, err := d.bins.find(v, IPv4, "")
	return err == nil
}

// rules counts with iptables-save. Legacy tables that do not exist are not
// read: reading would create them, and they hold nothing.
func (d hostDetector) rules(v Variant) (int, error) {
	n := 0
	for _, fam := range families() {
		if v == Legacy && d.fx.legacyNames(fam) == "" {
			continue
		}
		path, err := d.bins.find(v, fam, "-save")
		if err != nil {
			return 0, err
		}
		out, err := run(d.ctx, nil, path)
		if err != nil {
			return 0, fmt.Errorf("detecting the iptables variant: %w", err)
		}
		n += countRules(out)
	}
	return n, nil
}

// countRules counts the rules and the non-ACCEPT built-in chain policies
// in iptables-save output: a DROP policy alone is a firewall too.
func countRules(save string) int {
	n := 0
	for _, l := range strings.Split(save, "\n") {
		f := strings.Fields(l)
		switch {
		case strings.HasPrefix(l, "-A "):
			n++
		case strings.HasPrefix(l, ":") && len(f) >= 2 && f[1] != "ACCEPT" && f[1] != "-":
			n++
		}
	}
	return n
}
