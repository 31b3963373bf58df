package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/virtbridge/virtbridge/bench"
	"github.com/virtbridge/virtbridge/internal/journal"
	"github.com/virtbridge/virtbridge/internal/testenv/lab"
)

type daemonResult struct {
	hotplug      bench.Summary // device-added event → attached record seen
	rssIdleKB    int
	rssStormKB   int
	anonKB       int // RssAnon at the end: the daemon's own memory
	fileKB       int // RssFile at the end: mapped files, mostly shared libraries (libvirt's)
	rssMaxKB     int // the largest VmRSS read
	rssLaterKB   int // VmRSS 30 s after the link storm
	hwmKB        int // VmHWM at the end
	idleCPU      time.Duration
	idleFor      time.Duration
	stormReconcl string
	idleLog      int      // lines the daemon logged while idle
	topMaps      []string // the mappings holding most of its RSS
}

const daemonConfig = "bridges:\n  br-a: {}\n"

// daemonSuite runs bin/virtbridged as a process inside a lab with a real
// libvirtd and a real (TCG, disk-less) VM, and measures: the time from
// libvirt's device-added event of a hot-plugged NIC to the daemon's
// "attached" journal record of it (bridge ensured, port checked, store
// saved, record written), over -hotplugs plug/unplug cycles; its RSS
// idle and after 1,000 taps on 10 bridges appeared in its namespace (a
// link storm and the reconcile it brings); its CPU use while idle.
func (b *bencher) daemonSuite(ctx context.Context) error {
	jdir := filepath.Join(b.tmp, "daemon-journal")
	l, err := b.startLab(ctx, lab.Options{HookPath: b.bins.hook,
		EtcVirtbridge: map[string][]byte{"virtbridge.yaml": []byte(daemonConfig)}}, jdir)
	if err != nil {
		return err
	}
	x, err := hotplugXML("vmhp", "52:54:00:ef:00:01", "br-a")
	if err != nil {
		return err
	}
	if err := l.DefineStart(ctx, x); err != nil {
		return err
	}
	vmUp := true
	defer func() {
		if vmUp {
			l.Virsh(context.Background(), "destroy", "vmhp")
		}
	}()
	logPath := filepath.Join(b.tmp, "virtbridged.log")
	d, err := startDaemon(l, b.bins.daemon, logPath, b.opts.daemonEnv)
	if err != nil {
		return err
	}
	b.closers = append(b.closers, func() error { d.stop(syscall.SIGTERM, 10*time.Second); return nil })
	if err := waitLog(ctx, logPath, "msg=reconciled", 1, 30*time.Second); err != nil {
		return err
	}
	time.Sleep(2 * time.Second)
	pid := strconv.Itoa(d.cmd.Process.Pid)
	var res daemonResult
	res.rssIdleKB = procStatusKB(pid, "VmRSS")

	lat, fromReturn, err := b.hotplugs(ctx, l, jdir)
	if err != nil {
		return err
	}
	res.hotplug = bench.Summarize(lat)
	if _, err := l.Virsh(ctx, "destroy", "vmhp"); err != nil {
		return err
	}
	vmUp = false

	// Idle: no VM, no events; the firewall re-check runs every 30 s. The
	// destroy's own events (stopped, the tap gone) settle first.
	time.Sleep(5 * time.Second)
	res.idleFor = b.opts.idle
	before, logged := cpuTicks(pid), len(readFile(logPath))
	var trace *exec.Cmd
	if b.opts.straceIdle {
		// strace's own cost lands on the daemon: look at what it calls,
		// not at the CPU time measured meanwhile.
		trace = exec.Command("strace", "-f", "-c", "-w", "-o", filepath.Join(b.tmp, "daemon-idle.strace"), "-p", pid)
		if err := trace.Start(); err != nil {
			return fmt.Errorf("starting strace: %w", err)
		}
	}
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(b.opts.idle):
	}
	if trace != nil {
		stopProcess(trace, syscall.SIGINT, 5*time.Second)
		b.logf("daemon: system calls while idle:\n%s", readFile(filepath.Join(b.tmp, "daemon-idle.strace")))
	}
	res.idleCPU = time.Duration(cpuTicks(pid)-before) * time.Second / 100 // USER_HZ
	res.idleLog = strings.Count(readFile(logPath)[logged:], "\n")
	res.rssMaxKB = max(res.rssIdleKB, procStatusKB(pid, "VmRSS"))

	if err := b.linkStorm(ctx, l, pid, logPath, &res); err != nil {
		return err
	}
	b.daemon = res
	b.daemonReport(res, fromReturn)
	return nil
}

// linkStorm makes 10 bridges and 1,000 taps appear in the daemon's
// namespace (a burst of link events, and the drift reconcile it brings)
// and records the daemon's memory afterwards.
func (b *bencher) linkStorm(ctx context.Context, l *lab.Lab, pid, logPath string, res *daemonResult) error {
	n := countLog(logPath, "msg=reconciled")
	var batch strings.Builder
	for i := range reconcileBridges {
		fmt.Fprintf(&batch, "link add br-r%d type bridge\nlink set br-r%d up\n", i, i)
	}
	for i := range b.opts.taps {
		fmt.Fprintf(&batch, "tuntap add rt%d mode tap\nlink set rt%d master br-r%d up\n", i, i, i%reconcileBridges)
	}
	bf := filepath.Join(b.tmp, "storm.batch")
	if err := os.WriteFile(bf, []byte(batch.String()), 0o644); err != nil {
		return err
	}
	if _, err := l.ExecHV(ctx, "ip", "-batch", bf); err != nil {
		return err
	}
	if err := waitLog(ctx, logPath, "msg=reconciled", n+1, 60*time.Second); err != nil {
		return err
	}
	time.Sleep(3 * time.Second)
	res.rssStormKB = procStatusKB(pid, "VmRSS")
	res.anonKB, res.fileKB = procStatusKB(pid, "RssAnon"), procStatusKB(pid, "RssFile")
	// The runtime gives freed heap back to the kernel over time.
	time.Sleep(27 * time.Second)
	res.rssLaterKB = procStatusKB(pid, "VmRSS")
	res.rssMaxKB = max(res.rssMaxKB, res.rssStormKB, res.rssLaterKB)
	res.hwmKB = procStatusKB(pid, "VmHWM")
	res.stormReconcl = lastLogLine(logPath, "msg=reconciled")
	res.topMaps = topMappings(pid, 4)
	return nil
}

// startDaemon runs virtbridged in the lab's namespaces (nsenter execs it:
// the pid is the daemon's) with its log in logPath.
func startDaemon(l *lab.Lab, bin, logPath string, env []string) (*child, error) {
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	cmd := exec.Command("nsenter", "-t", strconv.Itoa(l.LibvirtdPID()), "-m", "-n", "--",
		bin, "--config", "/etc/virtbridge/virtbridge.yaml")
	cmd.Env = append([]string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL=C"}, env...)
	cmd.Dir = "/"
	cmd.Stdout, cmd.Stderr = logf, logf
	c, err := startChild(cmd, syscall.SIGTERM)
	if err != nil {
		return nil, fmt.Errorf("starting virtbridged: %w", err)
	}
	return c, nil
}

// hotplugs plugs a NIC into the running VM and pulls it out again,
// b.opts.hotplugs times. It returns, per plug, the time from libvirt's
// device-added event (as `virsh event --timestamp` saw it, an observer
// beside the daemon) to the daemon's attached record showing up in the
// journal, and from `virsh attach-interface` returning to it.
func (b *bencher) hotplugs(ctx context.Context, l *lab.Lab, jdir string) (fromEvent, fromReturn []time.Duration, err error) {
	obs := exec.Command("nsenter", "-t", strconv.Itoa(l.LibvirtdPID()), "-m", "-n", "--",
		"stdbuf", "-oL", "virsh", "-c", "qemu:///system", "event", "--loop", "--event", "device-added", "--timestamp")
	obs.Env = toolEnv()
	out, pw, err := os.Pipe()
	if err != nil {
		return nil, nil, err
	}
	defer out.Close()
	obs.Stdout = pw
	oc, err := startChild(obs, syscall.SIGTERM)
	pw.Close()
	if err != nil {
		return nil, nil, err
	}
	defer oc.stop(syscall.SIGTERM, 5*time.Second)
	events := make(chan time.Time, 16)
	first := true
	go func() {
		s := bufio.NewScanner(out)
		for s.Scan() {
			if strings.Contains(s.Text(), "device-added") {
				if first {
					b.logf("daemon: the observer prints %q", s.Text())
					first = false
				}
				events <- eventTime(s.Text(), time.Now())
			}
		}
	}()
	time.Sleep(500 * time.Millisecond) // the observer has registered
	w := newJournalWatch(filepath.Join(jdir, filepath.Base(journal.DefaultFile)))
	for i := range b.opts.hotplugs {
		mac := fmt.Sprintf("52:54:00:ef:%02x:%02x", 1+i/250, i%250+1)
		if _, err := l.Virsh(ctx, "attach-interface", "vmhp", "--type", "bridge", "--source", "br-a", "--model", "e1000", "--mac", mac); err != nil {
			return nil, nil, err
		}
		returned := time.Now()
		seen, err := w.wait(ctx, journal.IDAttached, mac, 10*time.Second)
		if err != nil {
			return nil, nil, err
		}
		var ev time.Time
		select {
		case ev = <-events:
		case <-time.After(5 * time.Second):
			return nil, nil, fmt.Errorf("hot-plug %d: the observer saw no device-added event", i+1)
		}
		fromEvent = append(fromEvent, seen.Sub(ev))
		fromReturn = append(fromReturn, seen.Sub(returned))
		if _, err := l.Virsh(ctx, "detach-interface", "vmhp", "--type", "bridge", "--mac", mac); err != nil {
			return nil, nil, err
		}
		if _, err := w.wait(ctx, journal.IDDetached, mac, 10*time.Second); err != nil {
			return nil, nil, err
		}
		if (i+1)%10 == 0 {
			b.logf("daemon: %d/%d hot-plugs", i+1, b.opts.hotplugs)
		}
	}
	return fromEvent, fromReturn, nil
}

// eventTime reads the timestamp `virsh event --timestamp` puts before
// ": event", falling back to when the line was read.
func eventTime(line string, read time.Time) time.Time {
	ts, _, ok := strings.Cut(line, ": event")
	if !ok {
		return read
	}
	for _, layout := range []string{"2006-01-02 15:04:05.000-0700", "2006-01-02 15:04:05.000Z07:00", "2006-01-02 15:04:05.000"} {
		if t, err := time.Parse(layout, strings.TrimSpace(ts)); err == nil {
			return t
		}
	}
	return read
}

// cpuTicks returns utime+stime of pid in clock ticks.
func cpuTicks(pid string) int64 {
	b, err := os.ReadFile(filepath.Join("/proc", pid, "stat"))
	if err != nil {
		return 0
	}
	// Fields after the command (which may hold spaces) start after ")".
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	if len(f) < 13 {
		return 0
	}
	u, _ := strconv.ParseInt(f[11], 10, 64)
	s, _ := strconv.ParseInt(f[12], 10, 64)
	return u + s
}

func countLog(path, substr string) int {
	b, _ := os.ReadFile(path)
	return strings.Count(string(b), substr)
}

func lastLogLine(path, substr string) string {
	b, _ := os.ReadFile(path)
	last := ""
	for _, l := range strings.Split(string(b), "\n") {
		if strings.Contains(l, substr) {
			last = l
		}
	}
	return last
}

// waitLog waits until the log holds substr at least n times.
func waitLog(ctx context.Context, path, substr string, n int, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for countLog(path, substr) < n {
		if time.Now().After(deadline) {
			return fmt.Errorf("virtbridged: %q not logged %d times within %v:\n%s", substr, n, limit, lastLines(readFile(path), 20))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	return nil
}

func readFile(p string) string {
	b, _ := os.ReadFile(p)
	return string(b)
}

func (b *bencher) daemonReport(r daemonResult, fromReturn []time.Duration) {
	mib := func(kb int) string { return fmt.Sprintf("%.1f MiB", float64(kb)/1024) }
	took := ""
	if _, t, ok := strings.Cut(r.stormReconcl, "took="); ok {
		took = strings.Fields(t)[0]
	}
	b.report.Sections = append(b.report.Sections, bench.Section{
		Title: "Daemon (bin/virtbridged in a lab: real libvirtd, real TCG VM)",
		Notes: []string{"Hot-plug latency runs from libvirt's device-added event, as `virsh event --timestamp` " +
			"(an observer connected beside the daemon) stamps it, to the daemon's `attached` record of that NIC " +
			"appearing in the journal file (bridge ensured, port checked and aliased, store saved, record written " +
			"and fsync'd; the lab hides journald, so the JSON-lines fallback is used). Each plug is pulled out again " +
			"(device-removed → `detached` record) before the next."},
		Rows: []bench.Row{
			{Scenario: "hot-plug: device-added event → attached record", Candidate: "virtbridged", Summary: r.hotplug},
			{Scenario: "hot-plug: `virsh attach-interface` returned → attached record", Candidate: "virtbridged", Summary: bench.Summarize(fromReturn)},
		},
		Values: []bench.Value{
			{Name: "RSS idle", Value: mib(r.rssIdleKB), Note: "VmRSS after start-up and its first reconcile, one VM running"},
			{Name: fmt.Sprintf("RSS after %d taps on %d bridges appeared", b.opts.taps, reconcileBridges), Value: mib(r.rssStormKB),
				Note: "VmRSS after the link storm and the drift reconcile it triggered (" + took + ")"},
			{Name: "RSS 30 s after the link storm", Value: mib(r.rssLaterKB), Note: "VmRSS, once the runtime has returned freed heap"},
			{Name: "peak RSS (VmHWM) over the whole run", Value: mib(r.hwmKB), Note: "/proc/PID/status"},
			{Name: "RSS after the link storm: anonymous / file-backed", Value: mib(r.anonKB) + " / " + mib(r.fileKB),
				Note: "RssAnon is the daemon's own memory; RssFile is mostly shared libraries (libvirt's client library and its dependencies), shared with virsh and libvirtd"},
			{Name: "largest mappings in RSS", Value: strings.Join(r.topMaps, ", "), Note: "/proc/PID/smaps, Rss by file"},
			{Name: fmt.Sprintf("CPU while idle for %v", r.idleFor), Value: r.idleCPU.String(),
				Note: fmt.Sprintf("utime+stime delta from /proc/PID/stat (10 ms ticks); no VM, firewall re-check every 30 s; %d log lines meanwhile", r.idleLog)},
		},
	})
}

// topMappings returns the n mappings of pid with the most resident memory,
// as "name size".
func topMappings(pid string, n int) []string {
	b, err := os.ReadFile(filepath.Join("/proc", pid, "smaps"))
	if err != nil {
		return nil
	}
	rss := map[string]int{}
	name := ""
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		switch {
		case len(f) >= 5 && strings.Contains(f[0], "-") && !strings.HasSuffix(f[0], ":"):
			name = "[anon]"
			if len(f) >= 6 {
				name = filepath.Base(f[5])
			}
		case len(f) == 3 && f[0] == "Rss:":
			kb, _ := strconv.Atoi(f[1])
			rss[name] += kb
		}
	}
	var names []string
	for k := range rss {
		names = append(names, k)
	}
	slices.SortFunc(names, func(a, b string) int { return rss[b] - rss[a] })
	var out []string
	for _, k := range names[:min(n, len(names))] {
		out = append(out, fmt.Sprintf("%s %.1f MiB", k, float64(rss[k])/1024))
	}
	return out
}
