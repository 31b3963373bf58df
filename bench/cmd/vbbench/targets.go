package main

import (
	"fmt"
	"time"

	"github.com/virtbridge/virtbridge/bench"
)

// targets compares what was measured with the goals set for virtbridge.
// A suite that did not run adds no target.
func (b *bencher) targets() []bench.Target {
	var ts []bench.Target
	med := func(c *candidate) time.Duration { return bench.Summarize(c.wall).Median }
	ratio := func(name, goal string, r float64, met bool) {
		ts = append(ts, bench.Target{Name: name, Goal: goal, Measured: bench.FormatRatio(r), Met: met})
	}
	if c := b.steady; c != nil {
		r := bench.Ratio(med(c["steady"]), med(c["floor"]))
		ratio("steady prepare ÷ exec floor", "≤ 2×", r, r <= 2)
		r = bench.Ratio(med(c["shell-steady"]), med(c["steady"]))
		ratio("shell hook ÷ virtbridge, steady prepare", "≥ 4×", r, r >= 4)
		r = bench.Ratio(med(c["steady-rules"]), med(c["steady"]))
		ratio(fmt.Sprintf("steady prepare with %d foreign rules ÷ without", b.opts.foreignRules), "≤ 1.5×", r, r <= 1.5)
		r = bench.Ratio(med(c["shell-rules"]), med(c["steady-rules"]))
		ratio(fmt.Sprintf("shell hook ÷ virtbridge, %d foreign rules", b.opts.foreignRules), "≥ 15×", r, r >= 15)
	}
	if b.cold != nil {
		d := med(b.cold)
		ts = append(ts, bench.Target{Name: "cold prepare (median)", Goal: "≤ 25 ms", Measured: bench.FormatDuration(d), Met: d <= 25*time.Millisecond})
	}
	for _, shape := range b.reconcileShapes {
		for _, pass := range []string{"steady", "first"} {
			s := b.reconcile[pass+"/"+shape]
			ts = append(ts, bench.Target{Name: fmt.Sprintf("reconcile of %d taps on %d bridges, %s, %s pass (median)", b.opts.taps, reconcileBridges, shape, pass),
				Goal: "≤ 1 s", Measured: bench.FormatDuration(s.Median), Met: s.Median <= time.Second})
		}
	}
	if d := b.daemon; d.hotplug.N > 0 {
		ts = append(ts, bench.Target{Name: "hot-plug event → bridge ensured + port journaled (p99)", Goal: "≤ 100 ms",
			Measured: bench.FormatDuration(d.hotplug.P99), Met: d.hotplug.P99 <= 100*time.Millisecond})
	}
	if d := b.daemon; d.rssMaxKB > 0 {
		ts = append(ts, bench.Target{Name: "daemon RSS (largest VmRSS read: idle, 3 s and 30 s after the link storm)", Goal: "≤ 30 MiB", Measured: fmt.Sprintf("%.1f MiB", float64(d.rssMaxKB)/1024),
			Met: d.rssMaxKB <= 30*1024})
	}
	if d := b.daemon; d.idleCPU >= 0 && d.idleFor > 0 {
		ts = append(ts, bench.Target{Name: fmt.Sprintf("daemon CPU while idle for %v", d.idleFor), Goal: "≈ 0 (≤ 0.25 % of one core)",
			Measured: fmt.Sprintf("%v (%.2f %% of one core)", d.idleCPU, 100*d.idleCPU.Seconds()/d.idleFor.Seconds()),
			Met:      d.idleCPU <= d.idleFor/400}) // ≤ 0.25 % of one core, as the goal says
	}
	if with, ok := b.vmstart["with"]; ok {
		r := bench.Ratio(with.Median, b.vmstart["without"].Median)
		ratio("virsh start with the hook ÷ without", "≤ 1.05×", r, r <= 1.05)
	}
	return ts
}
