package main

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/virtbridge/virtbridge/bench"
)

// steadyHosts are the hosts of the steady suite.
type steadyHosts struct {
	plain *host // with a private journald
	nojd  *host // without journald: the JSON-lines fallback
	rules *host // 10,000 foreign rules per family
	taps  *host // 1,000 taps on the bridges
	nft   *host // 10,000 rules in a native nftables forward chain (policy drop)
}

func (s steadyHosts) all() []*host { return []*host{s.plain, s.nojd, s.rules, s.taps, s.nft} }

// steadySuite measures, interleaved in one run, everything whose host
// stays the same from run to run: the exec floor, the hook's no-op calls,
// steady prepare (bridges, uplink, sysctls and rules already right) on a
// plain host, on one with 10,000 foreign rules per family and on one with
// 1,000 taps on its bridges, with the shell hook beside it on each, and
// started/stopped pairs with journald and with the JSON-lines fallback.
func (b *bencher) steadySuite(ctx context.Context) error {
	fx := map[string]fixture{}
	for _, c := range [][2]string{
		{"one-nic", "01-prepare-begin"}, {"one-nic", "02-start-begin"}, {"one-nic", "03-started-begin"},
		{"one-nic", "04-stopped-end"}, {"one-nic", "05-release-end"}, {"no-nic", "01-prepare-begin"},
		{"two-nics", "01-prepare-begin"},
	} {
		f, err := loadFixture(b.root, c[0], c[1])
		if err != nil {
			return err
		}
		fx[c[0]+"/"+c[1]] = f
	}
	hs, err := b.steadyHosts(ctx, fx)
	if err != nil {
		return err
	}
	c, units := b.steadyCandidates(hs, fx)
	if err := b.measureSteady(ctx, units, hs.all()); err != nil {
		return err
	}
	b.steadyReport(c)
	return nil
}

// steadyHosts builds the four hosts and brings each to its steady state.
func (b *bencher) steadyHosts(ctx context.Context, fx map[string]fixture) (hs steadyHosts, err error) {
	b.logf("steady: setting up 5 hosts (plain with journald, plain without, %d rules, %d taps, %d native nftables rules)", b.opts.foreignRules, b.opts.taps, b.opts.foreignRules)
	for _, h := range []struct {
		p        **host
		prefix   string
		journald bool
	}{{&hs.plain, "vbb-plain", true}, {&hs.nojd, "vbb-nojd", false}, {&hs.rules, "vbb-rules", false}, {&hs.taps, "vbb-taps", false}, {&hs.nft, "vbb-nft", false}} {
		if *h.p, err = b.hookHost(ctx, h.prefix, h.journald); err != nil {
			return hs, err
		}
	}
	for v, file := range map[int]string{4: "rules.v4", 6: "rules.v6"} {
		if err := foreignRules(filepath.Join(hs.rules.dir, file), v, b.opts.foreignRules); err != nil {
			return hs, err
		}
	}
	if _, err := hs.rules.sh(fmt.Sprintf("iptables-restore <%[1]s/rules.v4\nip6tables-restore <%[1]s/rules.v6", hs.rules.dir)); err != nil {
		return hs, err
	}
	if err := nativeRules(filepath.Join(hs.nft.dir, "rules.nft"), b.opts.foreignRules); err != nil {
		return hs, err
	}
	if _, err := hs.nft.sh("nft -f " + filepath.Join(hs.nft.dir, "rules.nft")); err != nil {
		return hs, err
	}
	// The cold prepare on both rule-heavy hosts, once: what a prepare
	// costs right after the ruleset changed (bridges made, rules read).
	for _, h := range []struct {
		name string
		h    *host
	}{{"iptables", hs.rules}, {"native nftables", hs.nft}} {
		start := time.Now()
		if err := b.once(h.h, fx["one-nic/01-prepare-begin"]); err != nil {
			return hs, err
		}
		b.logf("steady: cold prepare with %d %s rules: %v", b.opts.foreignRules, h.name, time.Since(start).Round(time.Millisecond))
		// Re-verify: the bridges are right, but the ruleset generation
		// moved (someone's unrelated change), so the hook reads everything.
		var runs []time.Duration
		for range 5 {
			if _, err := h.h.sh("nft add table inet vbb-bump; nft delete table inet vbb-bump"); err != nil {
				return hs, err
			}
			start := time.Now()
			if err := b.once(h.h, fx["one-nic/01-prepare-begin"]); err != nil {
				return hs, err
			}
			runs = append(runs, time.Since(start))
		}
		b.logf("steady: prepare after an unrelated ruleset change, %d %s rules: median %v of 5",
			b.opts.foreignRules, h.name, bench.Summarize(runs).Median.Round(100*time.Microsecond))
	}
	// br-a and br-b made, then the taps spread over them.
	if err := b.once(hs.taps, fx["two-nics/01-prepare-begin"]); err != nil {
		return hs, err
	}
	if err := addTaps(hs.taps, "tp", b.opts.taps, []string{"br-a", "br-b"}); err != nil {
		return hs, err
	}
	// The VM's tap of the started/stopped fixtures, in its bridge with the
	// MAC libvirt gives it (the guest MAC made fe:...), as libvirt leaves
	// it before "started".
	for _, h := range []*host{hs.plain, hs.nojd, hs.taps} {
		if err := b.once(h, fx["one-nic/01-prepare-begin"]); err != nil {
			return hs, err
		}
		if _, err := h.sh("ip tuntap add vnet0 mode tap\nip link set vnet0 address fe:54:00:aa:01:01 master br-a up"); err != nil {
			return hs, err
		}
	}
	return hs, nil
}

// steadyCandidates returns the candidates by key and the units of a round.
func (b *bencher) steadyCandidates(hs steadyHosts, fx map[string]fixture) (map[string]*candidate, []unit) {
	prepare := fx["one-nic/01-prepare-begin"]
	scen := "steady prepare"
	nRules, nTaps := fmt.Sprintf("%d foreign rules per family", b.opts.foreignRules), fmt.Sprintf("%d taps on the bridges", b.opts.taps)
	c := map[string]*candidate{
		"floor":         b.floor(hs.plain, prepare),
		"noop-prepare":  b.hook(hs.plain, "no-op: prepare of a VM without managed NIC", fx["no-nic/01-prepare-begin"]),
		"noop-release":  b.hook(hs.plain, "no-op: release", fx["one-nic/05-release-end"]),
		"start":         b.hook(hs.plain, "start (nothing to do)", fx["one-nic/02-start-begin"]),
		"steady":        b.hook(hs.plain, scen, prepare),
		"shell-steady":  b.shell(hs.plain, scen, prepare),
		"shell-other":   b.shell(hs.plain, "other ops (start, started, stopped, release)", fx["one-nic/03-started-begin"]),
		"started":       b.hook(hs.plain, "started (journald)", fx["one-nic/03-started-begin"]),
		"stopped":       b.hook(hs.plain, "stopped (journald)", fx["one-nic/04-stopped-end"]),
		"started-file":  b.hook(hs.nojd, "started (JSON-lines fallback)", fx["one-nic/03-started-begin"]),
		"stopped-file":  b.hook(hs.nojd, "stopped (JSON-lines fallback)", fx["one-nic/04-stopped-end"]),
		"steady-rules":  b.hook(hs.rules, scen+", "+nRules, prepare),
		"shell-rules":   b.shell(hs.rules, scen+", "+nRules, prepare),
		"noop-prep-10k": b.hook(hs.rules, "no-op: prepare of a VM without managed NIC, "+nRules, fx["no-nic/01-prepare-begin"]),
		"steady-taps":   b.hook(hs.taps, scen+", "+nTaps, prepare),
		"steady-nft":    b.hook(hs.nft, fmt.Sprintf("%s, %d native nftables rules", scen, b.opts.foreignRules), prepare),
		"shell-taps":    b.shell(hs.taps, scen+", "+nTaps, prepare),
		"started-taps":  b.hook(hs.taps, "started, "+nTaps, fx["one-nic/03-started-begin"]),
		"stopped-taps":  b.hook(hs.taps, "stopped, "+nTaps, fx["one-nic/04-stopped-end"]),
	}
	units := []unit{
		{c["floor"]}, {c["noop-prepare"]}, {c["noop-release"]}, {c["start"]}, {c["steady"]}, {c["shell-steady"]},
		{c["shell-other"]}, {c["started"], c["stopped"]}, {c["started-file"], c["stopped-file"]},
		{c["steady-rules"]}, {c["shell-rules"]}, {c["noop-prep-10k"]}, {c["steady-taps"]}, {c["shell-taps"]},
		{c["started-taps"], c["stopped-taps"]}, {c["steady-nft"]},
	}
	for i := range b.bins.alts {
		alt := func(k string) *candidate {
			a := b.altOf(c[k], i)
			c[fmt.Sprintf("alt%d-%s", i, k)] = a
			return a
		}
		for _, k := range []string{"noop-prepare", "steady", "steady-rules", "steady-taps"} {
			units = append(units, unit{alt(k)})
		}
		units = append(units, unit{alt("started"), alt("stopped")})
	}
	return c, units
}

// measureSteady runs the warm-up rounds, then the measured ones, and fails
// if any host's networking changed while measured: a steady run must not
// change anything.
func (b *bencher) measureSteady(ctx context.Context, units []unit, hosts []*host) error {
	b.logf("steady: %d warm-up rounds", b.opts.warmup)
	if err := measure(ctx, units, b.opts.warmup, 0, nil); err != nil {
		return err
	}
	before, beforeText := make([]string, len(hosts)), make([]string, len(hosts))
	for i, h := range hosts {
		var err error
		if before[i], beforeText[i], err = snapshot(h); err != nil {
			return err
		}
	}
	b.logf("steady: %d rounds of %d units", b.opts.rounds, len(units))
	begin := time.Now()
	if err := measure(ctx, units, 0, b.opts.rounds, b.logf); err != nil {
		return err
	}
	b.logf("steady: measured in %v", time.Since(begin).Round(time.Second))
	for i, h := range hosts {
		after, text, err := snapshot(h)
		if err != nil {
			return err
		}
		if after != before[i] {
			return fmt.Errorf("steady: host %s changed while measured (a steady run is not steady):\n%s", h.name, lineDiff(beforeText[i], text))
		}
	}
	return nil
}

// altOf is c run with the i-th -alt-hook binary instead.
func (b *bencher) altOf(c *candidate, i int) *candidate {
	a := *c
	a.name = fmt.Sprintf("alt %d: %s", i+1, b.bins.alts[i])
	a.argv = append([]string{b.bins.alts[i]}, c.argv[1:]...)
	a.wall, a.cpu = nil, nil
	return &a
}

// once runs the hook once with f on h, unmeasured, and fails on any
// problem.
func (b *bencher) once(h *host, f fixture) error {
	r, err := h.exec(append([]string{b.bins.hook}, f.args...), h.env(), f.stdin)
	if err == nil && (r.Code != 0 || r.Stderr != "") {
		err = fmt.Errorf("hook %v in %s: exit %d: %s", f.args, h.name, r.Code, r.Stderr)
	}
	return err
}

func (b *bencher) steadyReport(c map[string]*candidate) {
	med := func(k string) time.Duration { return bench.Summarize(c[k].wall).Median }
	floor := med("floor")
	row := func(k string, ratios map[string]float64) bench.Row {
		if ratios == nil {
			ratios = map[string]float64{}
		}
		ratios["vs exec floor"] = bench.Ratio(med(k), floor)
		ratios["CPU vs exec floor"] = bench.Ratio(bench.Summarize(c[k].cpu).Median, bench.Summarize(c["floor"].cpu).Median)
		return bench.Row{Scenario: c[k].scenario, Candidate: c[k].name, Summary: bench.Summarize(c[k].wall),
			CPU: bench.Summarize(c[k].cpu).Median, Ratios: ratios}
	}
	shellVs := func(vb, sh string) map[string]float64 {
		return map[string]float64{"shell ÷ virtbridge": bench.Ratio(med(sh), med(vb)),
			"shell ÷ virtbridge, paired": bench.PairedRatio(c[sh].wall, c[vb].wall)}
	}
	own := func(k string) map[string]float64 {
		return map[string]float64{"vs own steady": bench.Ratio(med(k), med("steady")),
			"vs own steady, paired": bench.PairedRatio(c[k].wall, c["steady"].wall)}
	}
	merge := func(a, b map[string]float64) map[string]float64 {
		for k, v := range b {
			a[k] = v
		}
		return a
	}
	s := bench.Section{
		Title:     "Hook, whole process, as libvirtd runs it",
		RatioCols: []string{"vs exec floor", "CPU vs exec floor", "shell ÷ virtbridge", "shell ÷ virtbridge, paired", "vs own steady", "vs own steady, paired"},
		Rows: []bench.Row{
			row("floor", nil), row("noop-prepare", nil), row("noop-release", nil), row("start", nil),
			row("steady", shellVs("steady", "shell-steady")), row("shell-steady", nil),
			row("shell-other", nil),
			row("started", nil), row("stopped", nil), row("started-file", nil), row("stopped-file", nil),
			row("steady-rules", merge(shellVs("steady-rules", "shell-rules"), own("steady-rules"))), row("shell-rules", nil),
			row("noop-prep-10k", nil),
			row("steady-taps", merge(shellVs("steady-taps", "shell-taps"), own("steady-taps"))), row("shell-taps", nil),
			row("started-taps", nil), row("stopped-taps", nil),
			row("steady-nft", own("steady-nft")),
		},
	}
	for i := range b.bins.alts {
		for _, base := range []string{"noop-prepare", "steady", "steady-rules", "steady-taps", "started", "stopped"} {
			k := fmt.Sprintf("alt%d-%s", i, base)
			s.Rows = append(s.Rows, row(k, map[string]float64{"alt ÷ built": bench.Ratio(med(k), med(base)),
				"alt ÷ built, paired": bench.PairedRatio(c[k].wall, c[base].wall)}))
		}
	}
	if len(b.bins.alts) > 0 {
		s.RatioCols = append(s.RatioCols, "alt ÷ built", "alt ÷ built, paired")
	}
	// One start/stop cycle: libvirtd calls the hook five times.
	vbCycle := med("steady") + med("start") + med("started") + med("stopped") + med("noop-release")
	shCycle := med("shell-steady") + 4*med("shell-other")
	s.Values = append(s.Values,
		bench.Value{Name: "one VM start + stop (5 hook calls), virtbridge", Value: bench.FormatDuration(vbCycle),
			Note: "medians of steady prepare + start + started + stopped (journald) + release; " +
				bench.FormatRatio(bench.Ratio(vbCycle, 5*floor)) + " of 5 exec floors"},
		bench.Value{Name: "one VM start + stop (5 hook calls), shell hook", Value: bench.FormatDuration(shCycle),
			Note: "medians of steady prepare + 4 × other op; " + bench.FormatRatio(bench.Ratio(shCycle, vbCycle)) + " of virtbridge's"},
	)
	b.report.Sections = append(b.report.Sections, s)
	b.steady = c
}

// coldSuite measures prepare on a host that needs everything: the bridge
// created, the uplink enslaved, its addresses and routes moved, ip_forward
// set, the rules added. Before every run the host is reset (untimed) to
// the broken host of hypervisorScript; the virtbridge hook and the shell
// hook alternate on the same host.
func (b *bencher) coldSuite(ctx context.Context) error {
	prepare, err := loadFixture(b.root, "one-nic", "01-prepare-begin")
	if err != nil {
		return err
	}
	h, err := b.hookHost(ctx, "vbb-cold", true)
	if err != nil {
		return err
	}
	reset, err := coldReset(h)
	if err != nil {
		return err
	}
	vb := b.hook(h, "cold prepare", prepare)
	sh := b.shell(h, "cold prepare", prepare)
	vb.before, sh.before = reset, reset
	fl := b.floor(h, prepare)
	units := []unit{{vb}, {sh}, {fl}}
	var alts []*candidate
	for i := range b.bins.alts {
		a := b.altOf(vb, i)
		alts = append(alts, a)
		units = append(units, unit{a})
	}
	b.logf("cold: %d rounds", b.opts.coldRounds)
	if err := measure(ctx, units, 2, b.opts.coldRounds, b.logf); err != nil {
		return err
	}
	// Prepare on a reset host makes it right.
	if err := reset(); err != nil {
		return err
	}
	if err := b.once(h, prepare); err != nil {
		return err
	}
	if out, err := h.sh("ip -o addr show dev br-a; ip link show uplink0; iptables -S VIRTBRIDGE-FWD"); err != nil {
		return err
	} else if !contains(out, "10.77.0.2/24", "master br-a", "VIRTBRIDGE-FWD") {
		return fmt.Errorf("cold: prepare did not make the host right:\n%s", out)
	}
	b.coldReport(vb, sh, fl, alts)
	return nil
}

// coldReset returns the reset run before every cold prepare: h becomes the
// broken host of hypervisorScript again. The first resets are checked
// against a snapshot taken now.
func coldReset(h *host) (func() error, error) {
	initial, _, err := snapshot(h)
	if err != nil {
		return nil, err
	}
	resets := 0
	return func() error {
		_, err := h.sh(fmt.Sprintf(`ip link del br-a 2>/dev/null || true
ip link del br-b 2>/dev/null || true
ip addr flush dev uplink0 scope global
ip addr add 10.77.0.2/24 dev uplink0
ip -6 addr add 2001:db8:77::2/64 dev uplink0 nodad
ip route replace default via 10.77.0.1 dev uplink0 metric 100
ip -6 route replace default via 2001:db8:77::1 dev uplink0 metric 100
sysctl -qw net.ipv4.ip_forward=0
iptables-restore <%[1]s/init.v4
ip6tables-restore <%[1]s/init.v6
rm -f %[1]s/run/firewall.state`, h.dir))
		if err != nil {
			return err
		}
		if resets++; resets <= 4 {
			got, text, err := snapshot(h)
			if err != nil {
				return err
			}
			if got != initial {
				return fmt.Errorf("cold: the reset did not restore the host:\n%s", lastLines(text, 40))
			}
		}
		return nil
	}, nil
}

func (b *bencher) coldReport(vb, sh, fl *candidate, alts []*candidate) {
	med := func(c *candidate) time.Duration { return bench.Summarize(c.wall).Median }
	mk := func(c *candidate, ratios map[string]float64) bench.Row {
		if ratios == nil {
			ratios = map[string]float64{}
		}
		ratios["vs exec floor"] = bench.Ratio(med(c), med(fl))
		return bench.Row{Scenario: c.scenario, Candidate: c.name, Summary: bench.Summarize(c.wall), CPU: bench.Summarize(c.cpu).Median, Ratios: ratios}
	}
	sec := bench.Section{
		Title:     "Hook, cold prepare (the host reset before every run)",
		RatioCols: []string{"vs exec floor", "shell ÷ virtbridge", "shell ÷ virtbridge, paired"},
		Rows: []bench.Row{
			mk(vb, map[string]float64{"shell ÷ virtbridge": bench.Ratio(med(sh), med(vb)),
				"shell ÷ virtbridge, paired": bench.PairedRatio(sh.wall, vb.wall)}),
			mk(sh, nil), mk(fl, nil),
		},
	}
	if len(alts) > 0 {
		sec.RatioCols = append(sec.RatioCols, "alt ÷ built", "alt ÷ built, paired")
		for _, alt := range alts {
			sec.Rows = append(sec.Rows, mk(alt, map[string]float64{"alt ÷ built": bench.Ratio(med(alt), med(vb)),
				"alt ÷ built, paired": bench.PairedRatio(alt.wall, vb.wall)}))
		}
	}
	b.report.Sections = append(b.report.Sections, sec)
	b.cold = vb
}

func contains(s string, subs ...string) bool {
	for _, x := range subs {
		if !strings.Contains(s, x) {
			return false
		}
	}
	return true
}

// lineDiff lists the lines only in a ("-") and only in b ("+").
func lineDiff(a, b string) string {
	count := map[string]int{}
	for _, l := range strings.Split(a, "\n") {
		count[l]++
	}
	for _, l := range strings.Split(b, "\n") {
		count[l]--
	}
	var out []string
	for l, n := range count {
		switch {
		case n > 0:
			out = append(out, "- "+l)
		case n < 0:
			out = append(out, "+ "+l)
		}
	}
	slices.Sort(out)
	return strings.Join(out, "\n")
}
