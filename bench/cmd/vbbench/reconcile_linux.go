package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/virtbridge/virtbridge/bench"
	"github.com/virtbridge/virtbridge/internal/config"
	"github.com/virtbridge/virtbridge/internal/engine"
	"github.com/virtbridge/virtbridge/internal/events"
	"github.com/virtbridge/virtbridge/internal/links"
)

// reconcileBridges is how many bridges the reconcile taps are spread over.
const reconcileBridges = 10

// childResult is what `vbbench reconcile-child` prints.
type childResult struct {
	Took     time.Duration `json:"took_ns"`
	Changes  int           `json:"changes"`
	Warnings []string      `json:"warnings,omitempty"`
	Err      string        `json:"error,omitempty"`
	HWMKB    int           `json:"vm_hwm_kb"`
	RSSKB    int           `json:"vm_rss_kb"`
}

// reconcileChild is `vbbench reconcile-child -vms N -nics K`: run inside a
// host, it hands engine.Reconcile (what virtbridged calls after a
// reconnect or a link change) N running VMs of K NICs each, as the daemon
// builds them from libvirt's live XML, on taps rt0.. spread over the
// bridges br-r0..br-r9, and prints how long the call took as JSON.
func reconcileChild(args []string) int {
	fs := flag.NewFlagSet("reconcile-child", flag.ContinueOnError)
	vms := fs.Int("vms", 250, "running VMs")
	nics := fs.Int("nics", 4, "NICs per VM")
	if fs.Parse(args) != nil {
		return 2
	}
	var r childResult
	cfg, err := config.Load(config.PathFromEnv())
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	running := syntheticVMs(*vms, *nics)
	eng := engine.ForHost(cfg, 30*time.Second)
	begin := time.Now()
	res, err := eng.Reconcile(context.Background(), running, begin)
	r.Took = time.Since(begin)
	r.Changes = len(res.Changes)
	for _, w := range res.Warnings {
		r.Warnings = append(r.Warnings, w.Error())
	}
	if err != nil {
		r.Err = err.Error()
	}
	r.HWMKB, r.RSSKB = procStatusKB("self", "VmHWM"), procStatusKB("self", "VmRSS")
	json.NewEncoder(os.Stdout).Encode(r)
	return 0
}

// syntheticVMs are n running VMs of k bridged NICs, with tap i = rt<i> on
// bridge br-r<i mod 10>, as events.FromDomainXML makes them.
func syntheticVMs(n, k int) []events.Event {
	var evs []events.Event
	for v := range n {
		ev := events.Event{Source: events.SourceEventd, Op: events.OpReconnect,
			Domain: fmt.Sprintf("rvm%04d", v), UUID: fmt.Sprintf("5b0c1000-0000-4000-8000-%012x", v)}
		for j := range k {
			i := v*k + j
			ev.NICs = append(ev.NICs, events.NIC{MAC: fmt.Sprintf("52:54:00:ab:%02x:%02x", i>>8, i&0xff), Type: "bridge",
				Bridge: fmt.Sprintf("br-r%d", i%reconcileBridges), Tap: fmt.Sprintf("rt%d", i), Model: "virtio", Alias: fmt.Sprintf("net%d", j)})
		}
		evs = append(evs, ev)
	}
	return evs
}

// procStatusKB reads a "kB" field of /proc/PID/status (0 if missing).
func procStatusKB(pid, field string) int {
	f, err := os.Open(filepath.Join("/proc", pid, "status"))
	if err != nil {
		return 0
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		k, v, ok := strings.Cut(s.Text(), ":")
		if ok && k == field {
			n, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
			return n
		}
	}
	return 0
}

// reconcileShape is one way of grouping the taps into running VMs.
type reconcileShape struct {
	name      string
	vms, nics int
}

// reconcileSeries is what the runs of one pass of one shape measured.
type reconcileSeries struct {
	took, wall []time.Duration
	hwm        int // kB
	changes    int // of the last run
}

// reconcileSuite measures engine.Reconcile over the taps (-taps, 1,000 by
// default) spread over 10 bridges, in two shapes of the same taps (250
// VMs of 4 NICs, 1,000 VMs of 1 NIC), each as a first pass (the store
// empty and no tap named after its VM yet: every port is recorded,
// journaled and aliased) and a steady pass right after it (nothing to
// change: what the daemon does after every reconnect or link change).
func (b *bencher) reconcileSuite(ctx context.Context) error {
	h, reset, err := b.reconcileHost(ctx)
	if err != nil {
		return err
	}
	shapes := []reconcileShape{
		{fmt.Sprintf("%d VMs × 4 NICs", b.opts.taps/4), b.opts.taps / 4, 4},
		{fmt.Sprintf("%d VMs × 1 NIC", b.opts.taps), b.opts.taps, 1},
	}
	got := map[string]*reconcileSeries{}
	// Converge the bridges and the firewall once, unmeasured.
	if err := b.reconcileOnce(h, "warm-up", shapes[0], got); err != nil {
		return err
	}
	for i := range b.opts.reconcileRounds {
		for _, sh := range shapes {
			if err := ctx.Err(); err != nil {
				return err
			}
			if err := reset(); err != nil {
				return err
			}
			if err := b.reconcileOnce(h, "first/"+sh.name, sh, got); err != nil {
				return err
			}
			if err := b.reconcileOnce(h, "steady/"+sh.name, sh, got); err != nil {
				return err
			}
		}
		b.logf("reconcile: round %d/%d", i+1, b.opts.reconcileRounds)
	}
	// The steady passes changed nothing; the first ones touched every tap.
	for _, sh := range shapes {
		if c := got["steady/"+sh.name].changes; c != 0 {
			return fmt.Errorf("reconcile: a steady pass of %s changed %d things", sh.name, c)
		}
		if c := got["first/"+sh.name].changes; c < b.opts.taps {
			return fmt.Errorf("reconcile: a first pass of %s made %d changes, want at least one per tap", sh.name, c)
		}
	}
	b.reconcileReport(shapes, got)
	return nil
}

// reconcileHost makes a host with the bridges br-r0..br-r9 managed and the
// taps rt0.. spread over them, and returns it with the reset that makes
// the next pass a first one: no alias on any tap, no store.
func (b *bencher) reconcileHost(ctx context.Context) (*host, func() error, error) {
	h, err := newHost(ctx, b.tmp, "vbb-recon")
	if err != nil {
		return nil, nil, err
	}
	b.closers = append(b.closers, h.Close)
	if err := h.startJournald(b.journald); err != nil {
		return nil, nil, err
	}
	var cfg, mk strings.Builder
	cfg.WriteString("bridges:\n")
	var bridges []string
	for i := range reconcileBridges {
		br := fmt.Sprintf("br-r%d", i)
		bridges = append(bridges, br)
		fmt.Fprintf(&cfg, "  %s: {}\n", br)
		// Bridges virtbridge made before (its alias): the reconcile is
		// measured, not the takeover of bridges someone else made.
		fmt.Fprintf(&mk, "ip link add %s type bridge\nip link set %s alias %q up\n", br, br, links.ManagedAlias)
	}
	if err := os.WriteFile(filepath.Join(h.dir, "virtbridge.yaml"), []byte(cfg.String()), 0o644); err != nil {
		return nil, nil, err
	}
	if _, err := h.sh(mk.String()); err != nil {
		return nil, nil, err
	}
	if err := addTaps(h, "rt", b.opts.taps, bridges); err != nil {
		return nil, nil, err
	}
	var clear strings.Builder
	for i := range b.opts.taps {
		fmt.Fprintf(&clear, "link set dev rt%d alias \"\"\n", i)
	}
	clearFile := filepath.Join(h.dir, "clear.batch")
	if err := os.WriteFile(clearFile, []byte(clear.String()), 0o644); err != nil {
		return nil, nil, err
	}
	return h, func() error {
		_, err := h.sh(fmt.Sprintf("ip -batch %s\nrm -f %s/state/ports.json", clearFile, h.dir))
		return err
	}, nil
}

// reconcileOnce runs `vbbench reconcile-child` in h and adds what it
// measured to got[key].
func (b *bencher) reconcileOnce(h *host, key string, sh reconcileShape, got map[string]*reconcileSeries) error {
	r, err := h.exec([]string{b.bins.self, "reconcile-child", "-vms", fmt.Sprint(sh.vms), "-nics", fmt.Sprint(sh.nics)}, h.env(), nil)
	if err != nil {
		return err
	}
	var cr childResult
	if r.Code != 0 || json.Unmarshal([]byte(r.Stdout), &cr) != nil || cr.Err != "" || len(cr.Warnings) > 0 {
		return fmt.Errorf("reconcile %s: exit %d: %s %s", key, r.Code, r.Stdout, r.Stderr)
	}
	s := got[key]
	if s == nil {
		s = &reconcileSeries{}
		got[key] = s
	}
	s.took, s.wall = append(s.took, cr.Took), append(s.wall, r.Wall)
	s.hwm, s.changes = max(s.hwm, cr.HWMKB), cr.Changes
	return nil
}

func (b *bencher) reconcileReport(shapes []reconcileShape, got map[string]*reconcileSeries) {
	sec := bench.Section{
		Title: fmt.Sprintf("Daemon: full reconcile of %d taps on %d bridges (engine.Reconcile, synthetic running VMs)", b.opts.taps, reconcileBridges),
		Notes: []string{"`took` is engine.Reconcile itself, timed inside the process; `whole process` adds the start of a Go process " +
			"(so it is what `virtbridged --once` would cost without the libvirt connection). Peak RSS is that process's VmHWM."},
	}
	b.reconcile = map[string]bench.Summary{}
	what := map[string]string{"first": "first pass (every port recorded, journaled, aliased)", "steady": "steady pass (nothing to change)"}
	for _, pass := range []string{"first", "steady"} {
		for _, sh := range shapes {
			key := pass + "/" + sh.name
			s := got[key]
			sec.Rows = append(sec.Rows,
				bench.Row{Scenario: what[pass] + ", " + sh.name, Candidate: "engine.Reconcile (took)", Summary: bench.Summarize(s.took)},
				bench.Row{Scenario: what[pass] + ", " + sh.name, Candidate: "whole process", Summary: bench.Summarize(s.wall)})
			sec.Values = append(sec.Values, bench.Value{Name: "peak RSS, " + pass + " pass, " + sh.name,
				Value: fmt.Sprintf("%.1f MiB", float64(s.hwm)/1024), Note: "VmHWM of the reconciling process"})
			b.reconcile[key] = bench.Summarize(s.took)
			b.reconcileHWM = max(b.reconcileHWM, s.hwm)
		}
	}
	b.reconcileShapes = []string{shapes[0].name, shapes[1].name}
	b.report.Sections = append(b.report.Sections, sec)
}
