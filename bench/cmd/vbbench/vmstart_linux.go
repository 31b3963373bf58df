package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/virtbridge/virtbridge/bench"
	"github.com/virtbridge/virtbridge/internal/testenv/lab"
)

// vmStartConfig is the hook's configuration in the VM-start labs: br-a
// with the lab's uplink, as on a real host.
const vmStartConfig = "bridges:\n  br-a: {uplink: uplink0}\nsysctl: {ip_forward: 1}\n"

// vmStartSuite measures `virsh start` of a VM whose bridge already exists,
// in three labs side by side: one with virtbridge's hook installed, one
// with the exec floor installed as the hook (what libvirtd's running of any
// hook costs), and one without any hook; in the last two the host was made
// the same by running virtbridge's hook once by hand. Starts rotate between
// the labs; each VM is destroyed right after its start (and the destroy is
// timed too: it calls the hook at stopped and release).
func (b *bencher) vmStartSuite(ctx context.Context) error {
	cfgs := map[string][]byte{"virtbridge.yaml": []byte(vmStartConfig)}
	names := []string{"with virtbridge-hook", "with the exec floor as hook", "without hook"}
	hooks := []string{b.bins.hook, b.bins.floor, ""}
	dirs := []string{"vmstart-with", "vmstart-floor", "vmstart-without"}
	prep := filepath.Join(b.root, "testdata", "hook", "one-nic", "01-prepare-begin.xml")
	labs := make([]*lab.Lab, len(names))
	for i := range labs {
		l, err := b.startLab(ctx, lab.Options{HookPath: hooks[i], EtcVirtbridge: cfgs, Upstream: true}, filepath.Join(b.tmp, dirs[i]))
		if err != nil {
			return err
		}
		if i > 0 { // the host gets what virtbridge's hook would have made
			if out, err := l.ExecHV(ctx, "sh", "-c", fmt.Sprintf("%s one-nic prepare begin - <%s", b.bins.hook, prep)); err != nil {
				return fmt.Errorf("preparing the lab %s: %w: %s", names[i], err, out)
			}
		}
		x, err := lab.DomainXML(lab.VM{Name: "vmstart", MAC: "52:54:00:ef:10:01", Bridges: []string{"br-a"}})
		if err != nil {
			return err
		}
		if err := l.Define(ctx, x); err != nil {
			return err
		}
		labs[i] = l
	}
	starts := make([][]time.Duration, len(labs))
	stops := make([][]time.Duration, len(labs))
	for i := -1; i < b.opts.vmStarts; i++ { // round -1 warms up (and creates br-a in the lab with hook)
		for k := range labs {
			j := (k + i + 1) % len(labs)
			l := labs[j]
			begin := time.Now()
			if _, err := l.Virsh(ctx, "start", "vmstart"); err != nil {
				return fmt.Errorf("%s: %w", names[j], err)
			}
			started := time.Now()
			if _, err := l.Virsh(ctx, "destroy", "vmstart"); err != nil {
				return fmt.Errorf("%s: %w", names[j], err)
			}
			if i >= 0 {
				starts[j] = append(starts[j], started.Sub(begin))
				stops[j] = append(stops[j], time.Since(started))
			}
		}
		if i >= 0 && (i+1)%5 == 0 {
			b.logf("vmstart: %d/%d", i+1, b.opts.vmStarts)
		}
	}
	// The hook did run in the one lab: its bridge and the VM's records.
	if out, err := labs[0].ExecHV(ctx, "ip", "-o", "link", "show", "uplink0"); err != nil || !contains(string(out), "master br-a") {
		return fmt.Errorf("vmstart: the lab with the hook has no uplink in br-a: %v %s", err, out)
	}
	if _, err := os.Stat(filepath.Join(b.tmp, dirs[0], "journal.jsonl")); err != nil {
		return fmt.Errorf("vmstart: the hook journaled nothing: %w", err)
	}
	none := len(labs) - 1
	b.vmstart = map[string]bench.Summary{"with": bench.Summarize(starts[0]), "without": bench.Summarize(starts[none])}
	col, floorCol := "÷ without hook", "÷ floor as hook"
	var rows []bench.Row
	for _, what := range []struct {
		scenario string
		runs     [][]time.Duration
	}{{"virsh start", starts}, {"virsh destroy", stops}} {
		base, floor := bench.Summarize(what.runs[none]), bench.Summarize(what.runs[1])
		for j := range labs {
			sum := bench.Summarize(what.runs[j])
			r := bench.Row{Scenario: what.scenario, Candidate: names[j], Summary: sum, Ratios: map[string]float64{}}
			if j != none {
				r.Ratios[col] = bench.Ratio(sum.Median, base.Median)
				r.Ratios[col+", paired"] = bench.PairedRatio(what.runs[j], what.runs[none])
			}
			if j == 0 {
				r.Ratios[floorCol] = bench.Ratio(sum.Median, floor.Median)
				r.Ratios[floorCol+", paired"] = bench.PairedRatio(what.runs[0], what.runs[1])
			}
			rows = append(rows, r)
		}
	}
	b.report.Sections = append(b.report.Sections, bench.Section{
		Title: "VM start as the user sees it (`virsh start`, TCG VM, bridge already there)",
		Notes: []string{"Three labs side by side (internal/testenv/lab: own libvirtd, virtlogd, dnsmasq), starts rotating. " +
			"`virsh` runs through nsenter, the same in all. With a hook, libvirtd calls it at prepare, start and " +
			"started during `virsh start` and at stopped and release during `virsh destroy`; the exec floor as hook " +
			"shows what libvirtd's running of any hook costs."},
		RatioCols: []string{col, col + ", paired", floorCol, floorCol + ", paired"},
		Rows:      rows,
	})
	return nil
}
