package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/virtbridge/virtbridge/bench"
	"github.com/virtbridge/virtbridge/internal/lab"
)

// vmStartConfig is the hook's configuration in the VM-start labs: br-a
// with the lab's uplink, as on a real host.
const vmStartConfig = "bridges:\n  br-a: {uplink: uplink0}\nsysctl: {ip_forward: 1}\n"

// vmStartSuite measures `virsh start` of a VM whose bridge already exists,
// in two labs side by side: one with virtbridge's hook installed, one
// without any hook, where the host was made the same by running the hook
// once by hand. Starts alternate between the labs; each VM is destroyed
// right after its start (and the destroy is timed too: it calls the hook
// at stopped and release).
func (b *bencher) vmStartSuite(ctx context.Context) error {
	cfgs := map[string][]byte{"virtbridge.yaml": []byte(vmStartConfig)}
	with, err := b.startLab(ctx, lab.Options{HookPath: b.bins.hook, EtcVirtbridge: cfgs, Upstream: true}, filepath.Join(b.tmp, "vmstart-with"))
	if err != nil {
		return err
	}
	without, err := b.startLab(ctx, lab.Options{EtcVirtbridge: cfgs, Upstream: true}, filepath.Join(b.tmp, "vmstart-without"))
	if err != nil {
		return err
	}
	// The host without hook gets what the hook would have made.
	prep := filepath.Join(b.root, "testdata", "hook", "one-nic", "01-prepare-begin.xml")
	if out, err := without.ExecHV(ctx, "sh", "-c", fmt.Sprintf("%s one-nic prepare begin - <%s", b.bins.hook, prep)); err != nil {
		return fmt.Errorf("preparing the lab without hook: %w: %s", err, out)
	}
	labs := []*lab.Lab{with, without}
	names := []string{"with virtbridge-hook", "without hook"}
	for _, l := range labs {
		x, err := lab.DomainXML(lab.VM{Name: "vmstart", MAC: "52:54:00:ef:10:01", Bridges: []string{"br-a"}})
		if err != nil {
			return err
		}
		if err := l.Define(ctx, x); err != nil {
			return err
		}
	}
	starts := make([][]time.Duration, 2)
	stops := make([][]time.Duration, 2)
	for i := -1; i < b.opts.vmStarts; i++ { // round -1 warms up (and creates br-a in the lab with hook)
		for k := range labs {
			j := (k + i + 1) % 2
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
	if out, err := with.ExecHV(ctx, "ip", "-o", "link", "show", "uplink0"); err != nil || !contains(string(out), "master br-a") {
		return fmt.Errorf("vmstart: the lab with the hook has no uplink in br-a: %v %s", err, out)
	}
	if _, err := os.Stat(filepath.Join(b.tmp, "vmstart-with", "journal.jsonl")); err != nil {
		return fmt.Errorf("vmstart: the hook journaled nothing: %w", err)
	}
	sw, so := bench.Summarize(starts[0]), bench.Summarize(starts[1])
	dw, do := bench.Summarize(stops[0]), bench.Summarize(stops[1])
	b.vmstart = map[string]bench.Summary{"with": sw, "without": so}
	col := "with ÷ without"
	b.report.Sections = append(b.report.Sections, bench.Section{
		Title: "VM start as the user sees it (`virsh start`, TCG VM, bridge already there)",
		Notes: []string{"Two labs side by side (internal/lab: own libvirtd, virtlogd, dnsmasq), starts alternating. " +
			"`virsh` runs through nsenter, the same in both. With the hook, libvirtd calls it at prepare, start and " +
			"started during `virsh start` and at stopped and release during `virsh destroy`."},
		RatioCols: []string{col, col + ", paired"},
		Rows: []bench.Row{
			{Scenario: "virsh start", Candidate: names[0], Summary: sw, Ratios: map[string]float64{
				col: bench.Ratio(sw.Median, so.Median), col + ", paired": bench.PairedRatio(starts[0], starts[1])}},
			{Scenario: "virsh start", Candidate: names[1], Summary: so},
			{Scenario: "virsh destroy", Candidate: names[0], Summary: dw, Ratios: map[string]float64{
				col: bench.Ratio(dw.Median, do.Median), col + ", paired": bench.PairedRatio(stops[0], stops[1])}},
			{Scenario: "virsh destroy", Candidate: names[1], Summary: do},
		},
	})
	return nil
}
