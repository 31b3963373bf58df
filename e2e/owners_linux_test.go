package e2e

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/virtbridge/virtbridge/internal/owner/nm"
	"github.com/virtbridge/virtbridge/internal/testenv/hostns"
)

// ownerBridge is the bridge every owner's host is given.
const ownerBridge = "br0"

// ownerConfig declares br0 over the host's uplink, made at start (the
// default) by the daemon, at prepare by the hook.
const ownerConfig = "bridges:\n  " + ownerBridge + ":\n    uplink: " + hostns.Uplink + "\n    create: at_start\n"

// ownerSpan is how long each host is sampled after the handoff: one full
// lease past it.
const ownerSpan = hostns.LeaseTime + 30*time.Second

// ownerCase is one host whose uplink has an owner, with virtbridge run on
// it through the built hook or the built daemon.
type ownerCase struct {
	mgr    hostns.Manager
	daemon bool // the daemon hands over at start-up; the hook then finds it ready
	vm     bool // a real VM started by libvirtd in the host runs the hook
	// keep: manager: virtbridged, the daemon keeps the bare DHCP client's
	// lease on the bridge (hostns.DHClient hosts, with daemon).
	keep bool
	h    *hostns.Host
	dir  string // config, run, state and log dirs of hook and daemon
	addr string // the host's address before the handoff
}

// steadyCosts collects, per case, the median wall time of the hook's
// steady prepares (the bridge already there), for the ratios TestOwners
// logs.
type steadyCosts struct {
	mu sync.Mutex
	m  map[string]time.Duration
}

func (s *steadyCosts) set(name string, d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.m[name] = d
}

// TestOwners starts a VM's NIC on br0 through the built hook (prepare,
// then started with a real tap), and the built virtbridged with br0 made
// at start, on hosts whose uplink NetworkManager, systemd-networkd or
// nobody (static) owns, and a real VM by libvirtd running in a
// NetworkManager and a networkd host with the built hook installed, all
// side by side in their own namespaces, each
// sampled every second for a lease and more: the host keeps its address
// on the bridge and its default route, upstream pings it at every sample,
// nothing is left on the enslaved uplink, the manager calls the bridge its
// own and keeps it across a restart. A host whose uplink a bare dhclient
// owns is refused, by the hook and by the daemon, and left as it was; with
// manager: virtbridged the daemon keeps that lease on the bridge, sampled
// like the others, and the hook finds the bridge ready. A
// gateway that stops answering during the hook's handoff is rolled back
// within the hook's deadline. A hook whose network namespace sees another
// host's bus leaves that host's NetworkManager alone. Finally the hook's
// steady prepare cost per owner is compared with the static host's.
func TestOwners(t *testing.T) {
	if testing.Short() {
		t.Skip("skipping: runs network managers for minutes (-short)")
	}
	hook, daemon := bin(t, "virtbridge-hook"), bin(t, "virtbridged")
	costs := &steadyCosts{m: map[string]time.Duration{}}
	cases := map[string]func(t *testing.T){
		"hook/foreign bus": func(t *testing.T) { testForeignBus(t, hook) },
		"hook/dhclient":    func(t *testing.T) { testDHClientHookRefused(t, hook) },
		"daemon/dhclient":  func(t *testing.T) { testDHClientDaemonRefused(t, daemon) },
	}
	keep := &ownerCase{mgr: hostns.DHClient, daemon: true, keep: true}
	cases[keep.name()] = func(t *testing.T) { keep.run(t, hook, daemon, costs) }
	for _, m := range []hostns.Manager{hostns.NetworkManager, hostns.Networkd, hostns.Static} {
		for _, viaDaemon := range []bool{false, true} {
			c := &ownerCase{mgr: m, daemon: viaDaemon}
			cases[c.name()] = func(t *testing.T) { c.run(t, hook, daemon, costs) }
		}
		if m != hostns.Static {
			c := &ownerCase{mgr: m, vm: true}
			cases[c.name()] = func(t *testing.T) { c.run(t, hook, daemon, costs) }
			cases["hook/"+string(m)+"/gateway gone"] = func(t *testing.T) { testGatewayGone(t, hook, m) }
		}
	}
	// Side by side, each in its own host, in goroutines rather than with
	// t.Parallel: go test runs only GOMAXPROCS parallel tests at once, and
	// these mostly wait.
	var wg sync.WaitGroup
	for name, f := range cases {
		wg.Go(func() { t.Run(name, f) })
	}
	wg.Wait()
	logRatios(t, costs)
}

func (c *ownerCase) name() string {
	if c.vm {
		return "libvirtd/" + string(c.mgr)
	}
	if c.keep {
		return "daemon/" + string(c.mgr) + "/manager virtbridged"
	}
	if c.daemon {
		return "daemon/" + string(c.mgr)
	}
	return "hook/" + string(c.mgr)
}

// newOwnerHost makes the host of manager m with its uplink owned and the
// configuration in a directory of its own.
func newOwnerHost(t *testing.T, m hostns.Manager, extra ...string) (*hostns.Host, string, string) {
	h := hostns.New(t, "vboe", m)
	addr := h.OwnUplink(t)
	dir := t.TempDir()
	cfg := ownerConfig + strings.Join(extra, "")
	if err := os.WriteFile(filepath.Join(dir, "virtbridge.yaml"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	return h, dir, addr
}

// env is the environment of the hook and the daemon: everything of
// theirs in dir; journald is out of reach in the host's private /run, so
// they journal to dir/journal.jsonl.
func env(dir string) []string {
	return []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL=C",
		"VIRTBRIDGE_CONFIG=" + filepath.Join(dir, "virtbridge.yaml"),
		"VIRTBRIDGE_RUN_DIR=" + dir, "VIRTBRIDGE_STATE_DIR=" + dir, "VIRTBRIDGE_LOG_DIR=" + dir}
}

// commander makes the command that runs a program in a host's
// namespaces (hostns.Host.Command).
type commander interface {
	Command(path string, args ...string) *exec.Cmd
}

// hookRun is one run of the built hook.
type hookRun struct {
	code   int
	stderr string
	took   time.Duration
}

// runOwnerHook runs the built hook in the host's namespaces (network,
// mount: the host's /run/dbus, UTS) as libvirtd would there: argv
// "vm1 CALL begin -", the captured one-NIC domain XML for that call with
// its NIC on br0 on stdin.
func runOwnerHook(t *testing.T, h commander, hook, dir, call string) hookRun {
	t.Helper()
	fixtures := map[string]string{"prepare": "01-prepare-begin", "started": "03-started-begin"}
	xml, err := os.ReadFile(filepath.Join("..", "testdata", "hook", "one-nic", fixtures[call]+".xml"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := h.Command(hook, "one-nic", call, "begin", "-")
	cmd.Env = env(dir)
	cmd.Stdin = strings.NewReader(strings.ReplaceAll(string(xml), "'br-a'", "'"+ownerBridge+"'"))
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	begin := time.Now()
	err = cmd.Run()
	r := hookRun{stderr: stderr.String(), took: time.Since(begin)}
	if ee := (*exec.ExitError)(nil); errors.As(err, &ee) {
		r.code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("running the hook's %s: %v", call, err)
	}
	if stdout.Len() > 0 {
		t.Errorf("the hook's %s wrote to stdout: %q", call, stdout.String())
	}
	return r
}

// addTap makes the VM's tap as libvirt does before started: vnet0 with the
// fixture's MAC, up, outside any bridge.
func addTap(t *testing.T, h *hostns.Host) {
	h.Run(t, "ip", "tuntap", "add", "dev", "vnet0", "mode", "tap")
	h.Run(t, "ip", "link", "set", "vnet0", "address", "fe:54:00:aa:01:01", "up")
}

func (c *ownerCase) run(t *testing.T, hook, daemon string, costs *steadyCosts) {
	var extra []string
	if c.keep {
		extra = append(extra, "    manager: virtbridged\n")
	}
	c.h, c.dir, c.addr = newOwnerHost(t, c.mgr, extra...)
	h := c.h
	ping := h.Up.StartPing(t, ipOf(c.addr), 1500)
	journalDir := c.dir
	switch {
	case c.vm:
		l := startHostLibvirtd(t, h, hook)
		took := l.startVM(t, "vm1", "52:54:00:0e:00:01")
		t.Logf("%s: virsh start (the hook's prepare, start, started) took %v", c.mgr, took.Round(time.Millisecond))
		journalDir = filepath.Join(l.dir, "var-log-virtbridge")
	case c.daemon:
		d := startOwnerDaemon(t, h, daemon, c.dir)
		ready := d.waitNote(t, "READY=1", 60*time.Second)
		t.Logf("%s: READY=1 %v after the daemon started", c.mgr, ready.Round(time.Millisecond))
	default:
		r := runOwnerHook(t, h, hook, c.dir, "prepare")
		if r.code != 0 {
			t.Fatalf("prepare: exit %d: %s\n%s", r.code, r.stderr, h.Log(string(c.mgr)))
		}
		t.Logf("%s: the hook's prepare (handoff) took %v", c.mgr, r.took.Round(time.Millisecond))
	}
	lost, sent := ping.Lost(t)
	t.Logf("%s: pings to %s during the handoff: %d of %d lost (10 ms apart)", c.mgr, c.addr, lost, sent)
	if lost > 100 {
		t.Errorf("the host stopped answering upstream for more than a second during the handoff: %d of %d pings lost", lost, sent)
	}
	if p := probeRecord(t, journalDir); p != "" {
		t.Logf("%s: journaled: %s", c.name(), p)
	} else {
		t.Errorf("no uplink-probed record in the journal (%s)", filepath.Join(journalDir, "journal.jsonl"))
	}
	if bad := c.check(t); len(bad) > 0 {
		t.Fatalf("right after the handoff: %s", strings.Join(bad, "; "))
	}
	if !c.vm {
		costs.set(c.name(), c.steadyPrepares(t, hook))
		addTap(t, h)
		if r := runOwnerHook(t, h, hook, c.dir, "started"); r.code != 0 || r.stderr != "" {
			t.Fatalf("started: exit %d: %s", r.code, r.stderr)
		}
	} else if m := h.Master(t, "vnet0"); m != ownerBridge {
		t.Fatalf("the VM's tap vnet0 is in %q, want %s", m, ownerBridge)
	}
	c.sample(t)
	if c.mgr == hostns.Static || c.mgr == hostns.DHClient {
		return // no manager to restart
	}
	h.StopManager(t)
	h.StartManager(t)
	var bad []string
	for end := time.Now().Add(30 * time.Second); time.Now().Before(end); time.Sleep(200 * time.Millisecond) {
		if bad = c.check(t); len(bad) == 0 {
			break
		}
	}
	if len(bad) > 0 {
		t.Fatalf("after restarting %s: %s\n%s", c.mgr, strings.Join(bad, "; "), h.Log(string(c.mgr)))
	}
}

// steadyPrepares runs the hook's prepare five more times, the bridge
// ready: each must change nothing; it returns their median wall time.
func (c *ownerCase) steadyPrepares(t *testing.T, hook string) time.Duration {
	before := hookRecords(t, c.dir)
	var took []time.Duration
	for range 5 {
		r := runOwnerHook(t, c.h, hook, c.dir, "prepare")
		if r.code != 0 || r.stderr != "" {
			t.Fatalf("steady prepare: exit %d: %s", r.code, r.stderr)
		}
		took = append(took, r.took)
	}
	if after := hookRecords(t, c.dir); after != before {
		t.Errorf("the steady prepares journaled changes: %d hook records before, %d after", before, after)
	}
	slices.Sort(took)
	t.Logf("%s: steady prepares took %v (median %v)", c.name(), took, took[len(took)/2])
	return took[len(took)/2]
}

// sample checks the host every second for ownerSpan.
func (c *ownerCase) sample(t *testing.T) {
	start, samples, failed := time.Now(), 0, 0
	for time.Since(start) < ownerSpan {
		samples++
		if bad := c.check(t); len(bad) > 0 {
			failed++
			t.Errorf("sample %d (%v after the handoff): %s", samples, time.Since(start).Round(time.Second), strings.Join(bad, "; "))
		}
		time.Sleep(time.Second)
	}
	t.Logf("%s: %d samples over %v, %d bad", c.name(), samples, ownerSpan, failed)
}

// check is one sample: the address the host had on the bridge and nowhere
// else, the default route and one connected route through the bridge, the
// uplink and the VM's tap (once made) ports of it, the manager calling the
// bridge its own, and upstream able to ping the host.
func (c *ownerCase) check(t *testing.T) []string {
	h := c.h
	var bad []string
	if a := h.Addresses(t, ownerBridge); !slices.Equal(a, []string{c.addr}) {
		bad = append(bad, fmt.Sprintf("bridge addresses %v, want [%s]", a, c.addr))
	}
	if a := h.Addresses(t, hostns.Uplink); len(a) > 0 {
		bad = append(bad, fmt.Sprintf("uplink addresses %v", a))
	}
	if m := h.Master(t, hostns.Uplink); m != ownerBridge {
		bad = append(bad, "uplink master "+m)
	}
	if _, err := h.Exec("ip", "link", "show", "vnet0"); err == nil && h.Master(t, "vnet0") != ownerBridge {
		bad = append(bad, "tap master "+h.Master(t, "vnet0"))
	}
	if r := h.DefaultRoute(t); !strings.Contains(r, "via "+hostns.Gateway+" dev "+ownerBridge) {
		bad = append(bad, "default route "+r)
	}
	if rs := h.ConnectedRoutes(t); len(rs) != 1 || !strings.Contains(rs[0], "dev "+ownerBridge) {
		bad = append(bad, "connected routes "+strings.Join(rs, " | "))
	}
	if m := managerView(t, h); m != "" {
		bad = append(bad, m)
	}
	if !h.PingFromUpstream(c.addr) {
		bad = append(bad, "upstream cannot ping "+c.addr)
	}
	return bad
}

// managerView says what is wrong with how the host's manager sees the
// bridge ("" when right): NetworkManager has virtbridge's bridge profile
// connected on it (not "externally connected"); networkd configures it
// from virtbridge's runtime .network.
func managerView(t *testing.T, h *hostns.Host) string {
	switch h.Mgr {
	case hostns.NetworkManager:
		out, _ := h.Exec("nmcli", "-t", "-f", "GENERAL.STATE,GENERAL.CONNECTION", "dev", "show", ownerBridge)
		if want := "GENERAL.STATE:100 (connected)\nGENERAL.CONNECTION:" + nm.BridgeProfile(ownerBridge); strings.TrimSpace(out) != want {
			return "bridge in NetworkManager: " + strings.TrimSpace(out)
		}
	case hostns.Networkd:
		out, _ := h.Exec("networkctl", "status", "--no-pager", "-n", "0", ownerBridge)
		if !regexp.MustCompile(`State: \S+ \(configured\)`).MatchString(out) ||
			!strings.Contains(out, "Network File: /run/systemd/network/05-virtbridge-"+ownerBridge) {
			return "bridge in networkd: " + strings.Join(strings.Fields(out), " ")
		}
	}
	return ""
}

func ipOf(cidr string) string {
	ip, _, err := net.ParseCIDR(cidr)
	if err != nil {
		return cidr
	}
	return ip.String()
}

// journalRecords are the records journaled to dir/journal.jsonl.
func journalRecords(t *testing.T, dir string) []map[string]string {
	f, err := os.Open(filepath.Join(dir, "journal.jsonl"))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var rs []map[string]string
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var r map[string]string
		if json.Unmarshal(sc.Bytes(), &r) == nil {
			rs = append(rs, r)
		}
	}
	return rs
}

// hookRecords counts the records the hook journaled to dir (the daemon
// sharing dir journals there too).
func hookRecords(t *testing.T, dir string) int {
	n := 0
	for _, r := range journalRecords(t, dir) {
		if r["VIRTBRIDGE_SOURCE"] == "hook" {
			n++
		}
	}
	return n
}

// probeRecord is the journaled uplink-probed record: the handoff's and the
// probe's times ("" when none).
func probeRecord(t *testing.T, dir string) string {
	for _, r := range journalRecords(t, dir) {
		if r["VIRTBRIDGE_CHANGE"] == "uplink-probed" {
			return r["VIRTBRIDGE_OBJECT"] + ": " + r["VIRTBRIDGE_AFTER"] + " (op " + r["VIRTBRIDGE_OP"] + ")"
		}
	}
	return ""
}

// logRatios logs each steady prepare's median against the static host's
// through the same path (hook or daemon).
func logRatios(t *testing.T, costs *steadyCosts) {
	costs.mu.Lock()
	defer costs.mu.Unlock()
	var names []string
	for n := range costs.m {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		base := costs.m[n[:strings.Index(n, "/")+1]+string(hostns.Static)]
		if base > 0 {
			t.Logf("steady prepare %s: %v, %.1f× the static host's %v", n, costs.m[n].Round(10*time.Microsecond),
				float64(costs.m[n])/float64(base), base.Round(10*time.Microsecond))
		}
	}
}

// ownerDaemon is the built virtbridged running in a host's namespaces,
// with its notify socket.
type ownerDaemon struct {
	cmd   *exec.Cmd
	log   string
	done  chan struct{}
	conn  *net.UnixConn
	mu    sync.Mutex
	notes []string
	start time.Time
	at    map[string]time.Time
}

// startOwnerDaemon starts the built daemon in the host's namespaces with
// the configuration in dir and NOTIFY_SOCKET set, and stops it by its pid
// (SIGTERM) when t ends.
func startOwnerDaemon(t *testing.T, h *hostns.Host, daemon, dir string) *ownerDaemon {
	t.Helper()
	d := &ownerDaemon{log: filepath.Join(dir, "virtbridged.log"), done: make(chan struct{}), at: map[string]time.Time{}}
	sock := filepath.Join(dir, "notify")
	var err error
	if d.conn, err = net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"}); err != nil {
		t.Fatal(err)
	}
	go d.read()
	logf, err := os.Create(d.log)
	if err != nil {
		t.Fatal(err)
	}
	d.cmd = h.Command(daemon, "--config", filepath.Join(dir, "virtbridge.yaml"))
	d.cmd.Env = append(env(dir), "NOTIFY_SOCKET="+sock)
	d.cmd.Stdout, d.cmd.Stderr = logf, logf
	d.start = time.Now()
	if err := d.cmd.Start(); err != nil {
		t.Fatalf("starting virtbridged: %v", err)
	}
	go func() { d.cmd.Wait(); logf.Close(); close(d.done) }()
	t.Cleanup(func() {
		syscall.Kill(d.cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-d.done:
		case <-time.After(10 * time.Second):
			syscall.Kill(d.cmd.Process.Pid, syscall.SIGKILL)
			<-d.done
			t.Errorf("virtbridged still running 10 s after SIGTERM")
		}
		d.conn.Close()
		if t.Failed() {
			t.Logf("virtbridged log:\n%s", d.logText())
		}
	})
	return d
}

func (d *ownerDaemon) read() {
	buf := make([]byte, 4096)
	for {
		n, err := d.conn.Read(buf)
		if err != nil {
			return
		}
		d.mu.Lock()
		for _, l := range strings.Split(strings.TrimSpace(string(buf[:n])), "\n") {
			d.notes = append(d.notes, l)
			if _, ok := d.at[l]; !ok {
				d.at[l] = time.Now()
			}
		}
		d.mu.Unlock()
	}
}

func (d *ownerDaemon) logText() string {
	b, _ := os.ReadFile(d.log)
	return string(b)
}

// noted returns the notes sent so far.
func (d *ownerDaemon) noted() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(d.notes)
}

// waitNote waits for the daemon to send note and returns when it did,
// counted from its start; it fails t when the daemon exits or after
// limit.
func (d *ownerDaemon) waitNote(t *testing.T, note string, limit time.Duration) time.Duration {
	t.Helper()
	for end := time.Now().Add(limit); ; time.Sleep(50 * time.Millisecond) {
		d.mu.Lock()
		at, ok := d.at[note]
		d.mu.Unlock()
		if ok {
			return at.Sub(d.start)
		}
		select {
		case <-d.done:
			t.Fatalf("virtbridged exited before %s:\n%s", note, d.logText())
		default:
		}
		if time.Now().After(end) {
			t.Fatalf("no %s from virtbridged after %v; notes %q\n%s", note, limit, d.noted(), d.logText())
		}
	}
}

// lifetimes are what an address dump shows that runs down by itself.
var lifetimes = regexp.MustCompile(`valid_lft \S+ preferred_lft \S+`)

// hostDump is the host's namespace dump with the lease's lifetimes, which
// count down by themselves, left out.
func hostDump(t *testing.T, h *hostns.Host) string {
	h.Settle(t)
	return lifetimes.ReplaceAllString(h.Dump(t), "lft")
}

// wantDHClientRefusal checks a refusal of the dhclient host's br0: it
// names the address, its lifetime, the client by pid and the ifupdown
// stanza that fixes the host.
func wantDHClientRefusal(t *testing.T, h *hostns.Host, msg, addr string) {
	t.Helper()
	pid, err := os.ReadFile(filepath.Join(h.Dir, "dhclient.pid"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"uplink \"" + hostns.Uplink + "\" of bridge \"" + ownerBridge + "\"",
		"dynamic address " + addr + " (valid for ",
		"held by dhclient (pid " + strings.TrimSpace(string(pid)) + ")",
		"iface " + hostns.Uplink + " inet manual",
		"iface " + ownerBridge + " inet dhcp",
		"bridge_ports " + hostns.Uplink,
		"manager: kernel",
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("the refusal does not say %q:\n%s", want, msg)
		}
	}
}

// testDHClientHookRefused: on a host whose uplink a bare dhclient owns,
// the hook's prepare is refused (exit 1, as libvirt refuses the start) by
// a message naming the lease, the client and the fix, and the host is as
// it was.
func testDHClientHookRefused(t *testing.T, hook string) {
	h, dir, addr := newOwnerHost(t, hostns.DHClient)
	before := hostDump(t, h)
	r := runOwnerHook(t, h, hook, dir, "prepare")
	t.Logf("dhclient: the hook's prepare took %v, exit %d:\n%s", r.took.Round(time.Millisecond), r.code, r.stderr)
	if r.code != 1 {
		t.Errorf("prepare exited %d, want 1 (the start refused)", r.code)
	}
	wantDHClientRefusal(t, h, r.stderr, addr)
	if after := hostDump(t, h); after != before {
		t.Errorf("the refused prepare changed the host:\n%s\n--- after ---\n%s", before, after)
	}
}

// testDHClientDaemonRefused: the daemon, started on that host, does not
// make br0, says why (log and STATUS=) and runs on; it says READY=1 all
// the same (a refusal no retry cures must not hold libvirt back until the
// unit's start times out and systemd restarts it over and over); the host
// is as it was.
func testDHClientDaemonRefused(t *testing.T, daemon string) {
	h, dir, addr := newOwnerHost(t, hostns.DHClient)
	before := hostDump(t, h)
	d := startOwnerDaemon(t, h, daemon, dir)
	var status string
	waitUntil(t, 60*time.Second, "virtbridged saying why br0 is not made", func() (bool, string) {
		for _, n := range d.noted() {
			if strings.HasPrefix(n, "STATUS=host does not match the configuration") {
				status = n
				return true, ""
			}
		}
		return false, strings.Join(d.noted(), "\n") + "\n" + d.logText()
	})
	t.Logf("dhclient: virtbridged says: %s", status)
	wantDHClientRefusal(t, h, status, addr)
	if !strings.Contains(d.logText(), "refused until the host or the configuration changes") {
		t.Errorf("the refusal is not in virtbridged's log:\n%s", d.logText())
	}
	time.Sleep(5 * time.Second)
	select {
	case <-d.done:
		t.Fatalf("virtbridged exited after refusing br0:\n%s", d.logText())
	default:
	}
	if !slices.Contains(d.noted(), "READY=1") || !strings.HasPrefix(status, "STATUS=host does not match the configuration, refused") {
		t.Errorf("no READY=1 with br0 refused, or a STATUS= not saying it is refused (%q): the unit's start would time out", status)
	}
	// The sysctls and the firewall are the daemon's for every bridge of
	// the configuration, made whether a bridge is refused or not
	// (engine.EnsureHost): its chain may be there; nothing else may
	// differ.
	after := hostDump(t, h)
	if kept := withoutOurChain(after); kept != before {
		t.Errorf("virtbridged changed the host beyond its firewall chain:\n%s\n--- after ---\n%s", before, after)
	}
	if after != before {
		t.Logf("dhclient: virtbridged added its firewall chain, br0 refused")
	}
}

// withoutOurChain is a dump without virtbridge's firewall chain and the
// jump to it.
func withoutOurChain(dump string) string {
	var keep []string
	for _, l := range strings.SplitAfter(dump, "\n") {
		if !strings.Contains(l, "VIRTBRIDGE-FWD") {
			keep = append(keep, l)
		}
	}
	return strings.Join(keep, "")
}

// foreignBus runs programs in the network namespace of host net with the
// mount (and so the D-Bus system bus) and UTS namespaces of host bus: a
// container or a lab namespace that sees a bus whose managers manage
// another namespace's links.
type foreignBus struct{ bus, net *hostns.Host }

func (f foreignBus) Command(path string, args ...string) *exec.Cmd {
	// nsenter opens the namespace files before it enters any: the path
	// under /run/netns is resolved in the machine's mount namespace.
	return exec.Command("nsenter", append([]string{"--net=/run/netns/" + f.net.NS.Name,
		"-t", fmt.Sprint(f.bus.Pid()), "-m", "-u", path}, args...)...)
}

// testForeignBus: the hook runs in a static host's network namespace but
// sees the system bus of a NetworkManager host whose uplink has the same
// name. NetworkManager answers for its own namespace's uplink0, not for
// the hook's: the hook must take the kernel path for its own uplink, and
// leave the NetworkManager host as it was.
func testForeignBus(t *testing.T, hook string) {
	hN, _, _ := newOwnerHost(t, hostns.NetworkManager)
	hS, dir, addr := newOwnerHost(t, hostns.Static)
	before := hostDump(t, hN)
	profiles := hN.Run(t, "nmcli", "-t", "-f", "NAME,AUTOCONNECT,DEVICE", "con", "show")
	r := runOwnerHook(t, foreignBus{bus: hN, net: hS}, hook, dir, "prepare")
	if r.code != 0 {
		t.Fatalf("prepare: exit %d: %s", r.code, r.stderr)
	}
	if a := hS.Addresses(t, ownerBridge); !slices.Equal(a, []string{addr}) {
		t.Errorf("the static host's bridge has %v, want [%s] (the kernel path)", a, addr)
	}
	if out := hS.Run(t, "ip", "-d", "link", "show", ownerBridge); !strings.Contains(out, "alias managed by virtbridge") {
		t.Errorf("the static host's bridge is not the kernel path's:\n%s", out)
	}
	if after := hostDump(t, hN); after != before {
		t.Errorf("the NetworkManager host was changed by a hook in another namespace:\n%s\n--- after ---\n%s", before, after)
	}
	if p := hN.Run(t, "nmcli", "-t", "-f", "NAME,AUTOCONNECT,DEVICE", "con", "show"); p != profiles {
		t.Errorf("NetworkManager's profiles changed:\n%s\n--- after ---\n%s", profiles, p)
	}
}

// managerState is what a manager keeps of its own beside the links:
// NetworkManager's profiles, networkd's runtime files.
func managerState(t *testing.T, h *hostns.Host) string {
	if h.Mgr == hostns.NetworkManager {
		return h.Run(t, "nmcli", "-t", "-f", "NAME,AUTOCONNECT,DEVICE", "con", "show")
	}
	return h.Run(t, "ls", "/run/systemd/network")
}

// testGatewayGone: the upstream stops answering ARP (DHCP still works:
// dnsmasq needs no ARP to answer), so the hook's probe after the handoff
// gets no answer from the gateway: the prepare is refused within the
// hook's deadline, and the host is as it was before, manager's state
// included.
func testGatewayGone(t *testing.T, hook string, m hostns.Manager) {
	h, dir, _ := newOwnerHost(t, m)
	before, state := hostDump(t, h), managerState(t, h)
	h.Up.Run(t, "nft", "add table arp vboe; add chain arp vboe out { type filter hook output priority 0; policy drop; }")
	r := runOwnerHook(t, h, hook, dir, "prepare")
	t.Logf("%s, gateway gone: the hook's prepare took %v, exit %d: %s", m, r.took.Round(time.Millisecond), r.code, r.stderr)
	if r.code != 1 || !strings.Contains(r.stderr, "rolled back") || !strings.Contains(r.stderr, "gateway "+hostns.Gateway) {
		t.Errorf("prepare with the gateway gone: exit %d, %q; want 1 and a rollback naming the gateway", r.code, r.stderr)
	}
	if strings.Contains(r.stderr, "hook_timeout") {
		t.Errorf("the hook ran out of time: its deadline cut the rollback short")
	}
	h.Up.Run(t, "nft", "delete", "table", "arp", "vboe")
	var after string
	for end := time.Now().Add(30 * time.Second); time.Now().Before(end); time.Sleep(time.Second) {
		if after = hostDump(t, h); after == before && managerState(t, h) == state {
			return
		}
	}
	t.Errorf("the host is not as before the handoff 30 s after the refusal:\n%s\n--- after ---\n%s\n%s: %s\n--- after ---\n%s",
		before, after, m, state, managerState(t, h))
}
