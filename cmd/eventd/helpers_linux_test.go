package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	sdjournal "github.com/coreos/go-systemd/v22/journal"

	"github.com/virtbridge/virtbridge/internal/journal"
	"github.com/virtbridge/virtbridge/internal/testenv/journaltest"
	"github.com/virtbridge/virtbridge/internal/testenv/lab"
)

// The binary under test, built once per test binary by daemonBinary.
var (
	buildOnce sync.Once
	buildDir  string
	buildBin  string
	buildErr  error
)

func TestMain(m *testing.M) {
	code := journaltest.Main(m)
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

// daemonBinary builds virtbridged from this package with the go tool, as
// `go build -o bin/virtbridged ./cmd/eventd` does, into a temporary
// directory removed when the test binary ends.
func daemonBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		goTool, err := exec.LookPath("go")
		if err != nil {
			buildErr = fmt.Errorf("building virtbridged: %w", err)
			return
		}
		if buildDir, buildErr = os.MkdirTemp("", "virtbridged-test-"); buildErr != nil {
			return
		}
		buildBin = filepath.Join(buildDir, "virtbridged")
		cmd := exec.Command(goTool, "build", "-o", buildBin, ".")
		cmd.Env = append(os.Environ(), "LC_ALL=C")
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("running %q: %w: %s", cmd.Args, err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return buildBin
}

// startLab starts a lab without hook whose /etc/virtbridge/virtbridge.yaml
// is labConfig, with two NICs for bridges to enslave, upa0 (10.78.0.2/24)
// and upb0 (veth pairs whose peers upa0p and upb0p stay unused: the kernel
// here has no dummy links), and returns it with the journald the daemon
// writes to. It skips t when the machine cannot run a lab or journald, or
// with -short.
func startLab(t *testing.T) (*lab.Lab, *journaltest.Journald) {
	t.Helper()
	if testing.Short() {
		t.Skip("skipping: runs a real libvirtd and virtbridged (-short)")
	}
	lab.SkipIfUnavailable(t)
	daemonBinary(t) // built before anything is timed
	j := journaltest.Require(t)
	l := lab.ForTest(t, lab.Options{EtcVirtbridge: map[string][]byte{"virtbridge.yaml": []byte(labConfig)}})
	for _, args := range [][]string{
		{"link", "add", "upa0", "type", "veth", "peer", "name", "upa0p"},
		{"addr", "add", "10.78.0.2/24", "dev", "upa0"},
		{"link", "set", "upa0", "up"},
		{"link", "add", "upb0", "type", "veth", "peer", "name", "upb0p"},
		{"link", "set", "upb0", "up"},
	} {
		l.RunHV(t, "ip", args...)
	}
	return l, j
}

// labConfig manages br-a (uplink upa0) and br-b (uplink upb0), with
// iptables rules, re-checks the firewall every 2 s and serves metrics on
// localhost:9473 (of the lab's namespace).
const labConfig = `bridges:
  br-a:
    uplink: upa0
  br-b:
    uplink: upb0
firewall:
  backend: iptables
  bridged_forward: accept
daemon:
  firewall_recheck: 2s
  metrics_listen: ":9473"
`

// addBridge creates a bare bridge by hand, as an operator (or a missing
// hook) would leave it: no uplink, no alias on its ports.
func addBridge(t *testing.T, l *lab.Lab, name string) {
	t.Helper()
	l.RunHV(t, "ip", "link", "add", name, "type", "bridge")
	l.RunHV(t, "ip", "link", "set", name, "up")
}

// vm is a running lab domain.
type vm struct {
	name, uuid string
}

// alias is what the daemon must set on the VM's taps: "vm:NAME uuid:UUID".
func (v vm) alias() string { return "vm:" + v.name + " uuid:" + v.uuid }

// startVM defines a one-NIC VM on bridge and starts it paused: libvirt
// makes its tap and puts it into the bridge as for a running guest, and
// the TCG guest burns no CPU. The VM is removed when t ends.
func startVM(t *testing.T, l *lab.Lab, name, mac, bridge string) vm {
	t.Helper()
	x, err := lab.DomainXML(lab.VM{Name: name, MAC: mac, Bridges: []string{bridge}})
	if err != nil {
		t.Fatal(err)
	}
	l.DefineForTest(t, name, x)
	l.RunVirsh(t, "start", "--paused", name)
	return vm{name: name, uuid: strings.TrimSpace(l.RunVirsh(t, "domuuid", name))}
}

// tapOf returns the tap libvirt made for the VM's NIC with mac.
func tapOf(t *testing.T, l *lab.Lab, domain, mac string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	tap, err := l.TapOf(ctx, domain, mac)
	if err != nil {
		t.Fatal(err)
	}
	return tap
}

// ipLink is a link as `ip -j -d addr show` prints it.
type ipLink struct {
	Name     string   `json:"ifname"`
	Master   string   `json:"master"`
	Alias    string   `json:"ifalias"`
	Flags    []string `json:"flags"`
	LinkInfo struct {
		Kind string `json:"info_kind"`
	} `json:"linkinfo"`
	Addrs []struct {
		Family string `json:"family"`
		Local  string `json:"local"`
		Prefix int    `json:"prefixlen"`
	} `json:"addr_info"`
}

// String renders what the daemon manages of a link, e.g.
// "br-a bridge up addrs=[10.78.0.2/24]" or
// "vnet0 tun master=br-a alias=vm:vm1 uuid:...".
func (k ipLink) String() string {
	var b strings.Builder
	b.WriteString(k.Name + " " + k.LinkInfo.Kind)
	if slices.Contains(k.Flags, "UP") {
		b.WriteString(" up")
	}
	if k.Master != "" {
		b.WriteString(" master=" + k.Master)
	}
	if k.Alias != "" {
		b.WriteString(" alias=" + k.Alias)
	}
	var addrs []string
	for _, a := range k.Addrs {
		if a.Family == "inet" {
			addrs = append(addrs, fmt.Sprintf("%s/%d", a.Local, a.Prefix))
		}
	}
	if len(addrs) > 0 {
		b.WriteString(" addrs=[" + strings.Join(addrs, " ") + "]")
	}
	return b.String()
}

// wiring renders the named links of the hypervisor namespace, one a line,
// read with iproute2 (not with the netlink code under test); a missing
// link is "NAME missing".
func wiring(t *testing.T, l *lab.Lab, names ...string) string {
	t.Helper()
	var links []ipLink
	if err := json.Unmarshal([]byte(l.RunHV(t, "ip", "-j", "-d", "addr", "show")), &links); err != nil {
		t.Fatalf("parsing ip -j addr show: %v", err)
	}
	var lines []string
	for _, n := range names {
		i := slices.IndexFunc(links, func(k ipLink) bool { return k.Name == n })
		if i < 0 {
			lines = append(lines, n+" missing")
			continue
		}
		lines = append(lines, links[i].String())
	}
	return strings.Join(lines, "\n")
}

// waitWiring polls wiring until it is want, and returns how long it took;
// it fails t with the last state after limit.
func waitWiring(t *testing.T, l *lab.Lab, limit time.Duration, want string, names ...string) time.Duration {
	t.Helper()
	begin := time.Now()
	for {
		got := wiring(t, l, names...)
		if got == want {
			return time.Since(begin)
		}
		if time.Since(begin) > limit {
			t.Fatalf("links after %v:\n%s\nwant:\n%s", limit, got, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// forwardJump is the rule virtbridge keeps in FORWARD, as iptables -S
// prints it (internal/firewall's jumpSpec).
const forwardJump = "-A FORWARD -m comment --comment virtbridge -j VIRTBRIDGE-FWD"

// hasForwardJump reports whether the hypervisor's FORWARD chain jumps to
// virtbridge's chain.
func hasForwardJump(t *testing.T, l *lab.Lab) bool {
	t.Helper()
	return slices.Contains(strings.Split(l.RunHV(t, "iptables", "-w", "-S", "FORWARD"), "\n"), forwardJump)
}

// iptablesVariant names the variant of the lab's iptables command as the
// firewall backend names it in its changes: iptables-nft or
// iptables-legacy.
func iptablesVariant(t *testing.T, l *lab.Lab) string {
	t.Helper()
	if strings.Contains(l.RunHV(t, "iptables", "-V"), "nf_tables") {
		return "iptables-nft"
	}
	return "iptables-legacy"
}

// daemonProc is a virtbridged running in the lab's namespaces.
type daemonProc struct {
	cmd   *exec.Cmd
	out   *bytes.Buffer // stderr and stdout
	outMu *sync.Mutex
	done  chan struct{}
	state *os.ProcessState // valid once done is closed
}

// daemonEnv is the daemon's environment, as scrubbed as systemd's, with
// the notify socket and a 1 s watchdog when notifySocket is set.
func daemonEnv(notifySocket string) []string {
	env := []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL=C"}
	if notifySocket != "" {
		env = append(env, "NOTIFY_SOCKET="+notifySocket, "WATCHDOG_USEC=1000000")
	}
	return env
}

// labConfigPath is where the lab's configuration is, inside the lab.
const labConfigPath = "/etc/virtbridge/virtbridge.yaml"

// daemonCommand builds `virtbridged ARGS` inside the lab's mount and
// network namespaces: it sees the lab's libvirtd socket, its private
// /run/virtbridge, /var/lib/virtbridge and /var/log/virtbridge, and
// changes the lab's links and firewall. The command's pid is the daemon's.
func daemonCommand(t *testing.T, l *lab.Lab, notifySocket string, args ...string) *exec.Cmd {
	t.Helper()
	cmd := l.CommandHV(daemonBinary(t), args...)
	cmd.Env = daemonEnv(notifySocket)
	return cmd
}

// startDaemon starts virtbridged in the lab. It is killed by its pid when t
// ends if it still runs, and its output is logged when t has failed.
func startDaemon(t *testing.T, l *lab.Lab, n *notifier) *daemonProc {
	t.Helper()
	return startDaemonWith(t, l, n, labConfigPath)
}

// startDaemonWith is startDaemon with the configuration at config (a path
// inside the lab).
func startDaemonWith(t *testing.T, l *lab.Lab, n *notifier, config string) *daemonProc {
	t.Helper()
	cmd := daemonCommand(t, l, n.path, "--config", config)
	d := &daemonProc{cmd: cmd, out: &bytes.Buffer{}, outMu: &sync.Mutex{}, done: make(chan struct{})}
	w := lockedWriter{d.out, d.outMu}
	cmd.Stdout, cmd.Stderr = w, w
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting virtbridged: %v", err)
	}
	go func() {
		cmd.Wait()
		d.state = cmd.ProcessState
		close(d.done)
	}()
	t.Cleanup(func() {
		select {
		case <-d.done:
		default:
			_ = syscall.Kill(cmd.Process.Pid, syscall.SIGKILL)
			<-d.done
		}
		if t.Failed() {
			t.Logf("virtbridged (pid %d) output:\n%s", cmd.Process.Pid, d.output())
		}
	})
	return d
}

func (d *daemonProc) output() string {
	d.outMu.Lock()
	defer d.outMu.Unlock()
	return d.out.String()
}

// terminate sends SIGTERM by pid and returns the exit code and how long the
// daemon took to exit. It fails t when the daemon runs on for 2 s.
func (d *daemonProc) terminate(t *testing.T) (int, time.Duration) {
	t.Helper()
	begin := time.Now()
	if err := syscall.Kill(d.cmd.Process.Pid, syscall.SIGTERM); err != nil {
		t.Fatalf("signalling virtbridged (pid %d): %v", d.cmd.Process.Pid, err)
	}
	select {
	case <-d.done:
	case <-time.After(2 * time.Second):
		t.Fatalf("virtbridged (pid %d) still running 2 s after SIGTERM", d.cmd.Process.Pid)
	}
	return d.state.ExitCode(), time.Since(begin)
}

type lockedWriter struct {
	b  *bytes.Buffer
	mu *sync.Mutex
}

func (w lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

// note is one line of an sd_notify datagram and when it came.
type note struct {
	state string
	at    time.Time
}

// notifier is a service manager's notify socket: a unix datagram socket
// that records what the daemon says.
type notifier struct {
	path  string
	conn  *net.UnixConn
	mu    sync.Mutex
	notes []note
	wake  chan struct{} // closed and replaced on every datagram
}

// listenNotify opens a notify socket in a short temporary directory (unix
// socket paths are limited to 107 bytes), closed when t ends.
func listenNotify(t *testing.T) *notifier {
	t.Helper()
	dir, err := os.MkdirTemp("", "vbnt")
	if err != nil {
		t.Fatal(err)
	}
	n := &notifier{path: filepath.Join(dir, "notify"), wake: make(chan struct{})}
	n.conn, err = net.ListenUnixgram("unixgram", &net.UnixAddr{Name: n.path, Net: "unixgram"})
	if err != nil {
		os.RemoveAll(dir)
		t.Fatalf("listening on notify socket: %v", err)
	}
	done := make(chan struct{})
	go n.read(done)
	t.Cleanup(func() {
		n.conn.Close()
		<-done
		os.RemoveAll(dir)
	})
	return n
}

func (n *notifier) read(done chan<- struct{}) {
	defer close(done)
	buf := make([]byte, 4096)
	for {
		k, err := n.conn.Read(buf)
		if err != nil {
			return
		}
		now := time.Now()
		n.mu.Lock()
		for _, line := range strings.Split(strings.TrimSpace(string(buf[:k])), "\n") {
			n.notes = append(n.notes, note{line, now})
		}
		close(n.wake)
		n.wake = make(chan struct{})
		n.mu.Unlock()
	}
}

// wait returns the first note at index >= from that is state, and its
// index; it fails t after limit.
func (n *notifier) wait(t *testing.T, from int, state string, limit time.Duration) (note, int) {
	t.Helper()
	deadline := time.After(limit)
	for {
		n.mu.Lock()
		for i := from; i < len(n.notes); i++ {
			if n.notes[i].state == state {
				c := n.notes[i]
				n.mu.Unlock()
				return c, i
			}
		}
		wake := n.wake
		n.mu.Unlock()
		select {
		case <-wake:
		case <-deadline:
			t.Fatalf("no %s from virtbridged within %v; it said:\n%s", state, limit, n.String())
		}
	}
}

// waitPrefix returns the first note at index >= from that starts with
// prefix, and its index; it fails t after limit.
func (n *notifier) waitPrefix(t *testing.T, from int, prefix string, limit time.Duration) (note, int) {
	t.Helper()
	deadline := time.After(limit)
	for {
		n.mu.Lock()
		for i := from; i < len(n.notes); i++ {
			if strings.HasPrefix(n.notes[i].state, prefix) {
				c := n.notes[i]
				n.mu.Unlock()
				return c, i
			}
		}
		wake := n.wake
		n.mu.Unlock()
		select {
		case <-wake:
		case <-deadline:
			t.Fatalf("no %s… from virtbridged within %v; it said:\n%s", prefix, limit, n.String())
		}
	}
}

// len returns the number of notes so far.
func (n *notifier) len() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return len(n.notes)
}

// note returns the state of note i, or "" if there is none (yet).
func (n *notifier) note(i int) string {
	n.mu.Lock()
	defer n.mu.Unlock()
	if i < 0 || i >= len(n.notes) {
		return ""
	}
	return n.notes[i].state
}

// times returns when state was said, in order.
func (n *notifier) times(state string) []time.Time {
	n.mu.Lock()
	defer n.mu.Unlock()
	var out []time.Time
	for _, c := range n.notes {
		if c.state == state {
			out = append(out, c.at)
		}
	}
	return out
}

func (n *notifier) String() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	var b strings.Builder
	for _, c := range n.notes {
		fmt.Fprintf(&b, "  %s %s\n", c.at.Format("15:04:05.000"), c.state)
	}
	return b.String()
}

// record is one journald entry, field → value.
type record map[string]string

// time returns the record's __REALTIME_TIMESTAMP: when journald got it.
func (r record) time(t *testing.T) time.Time {
	t.Helper()
	us, err := strconv.ParseInt(r[journal.FieldRealtime], 10, 64)
	if err != nil {
		t.Fatalf("record without a valid %s: %v", journal.FieldRealtime, r)
	}
	return time.UnixMicro(us)
}

// sent returns when the record was sent: journald's
// _SOURCE_REALTIME_TIMESTAMP (the socket's receive time), which, unlike
// __REALTIME_TIMESTAMP, does not move later while journald is busy.
func (r record) sent(t *testing.T) time.Time {
	t.Helper()
	if us, err := strconv.ParseInt(r["_SOURCE_REALTIME_TIMESTAMP"], 10, 64); err == nil {
		return time.UnixMicro(us)
	}
	return r.time(t)
}

// String renders the fields a port record is checked by.
func (r record) String() string {
	kind := map[string]string{journal.IDAttached: "attached", journal.IDDetached: "detached"}[r[journal.FieldMessageID]]
	if kind == "" {
		kind = r[journal.FieldMessageID]
	}
	return fmt.Sprintf("%s vm=%s tap=%s mac=%s bridge=%s op=%s source=%s", kind, r[journal.FieldVM],
		r[journal.FieldTap], r[journal.FieldMAC], r[journal.FieldBridge], r[journal.FieldOp], r[journal.FieldSource])
}

// portRecords returns the VM's attached and detached records in journald,
// oldest first, rendered by record.String and as records.
func portRecords(t *testing.T, j *journaltest.Journald, v vm) ([]string, []record) {
	t.Helper()
	entries := j.Entries(t, journal.FieldIdentifier+"="+journal.Identifier, journal.FieldUUID+"="+v.uuid,
		journal.FieldMessageID+"="+journal.IDAttached, journal.FieldMessageID+"="+journal.IDDetached)
	var lines []string
	var recs []record
	for _, e := range entries {
		lines = append(lines, record(e).String())
		recs = append(recs, record(e))
	}
	return lines, recs
}

// waitRecord polls journald until the VM has a port record rendered as
// want (journald stores what it gets asynchronously) and returns it. It
// fails t after limit with the VM's records and the JSON-lines fallback,
// where records land when journald does not answer.
func waitRecord(t *testing.T, l *lab.Lab, j *journaltest.Journald, v vm, want string, limit time.Duration) record {
	t.Helper()
	return waitRecordOf(t, l, j, v, limit, want)
}

// waitRecordOf is waitRecord for a record rendered as any of wants.
func waitRecordOf(t *testing.T, l *lab.Lab, j *journaltest.Journald, v vm, limit time.Duration, wants ...string) record {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		lines, recs := portRecords(t, j, v)
		if i := slices.IndexFunc(lines, func(s string) bool { return slices.Contains(wants, s) }); i >= 0 {
			return recs[i]
		}
		if time.Now().After(deadline) {
			fallback := []byte("(none)")
			if p, err := l.HostPath(journal.DefaultFile); err == nil {
				if b, err := os.ReadFile(p); err == nil {
					fallback = b
				}
			}
			t.Fatalf("no journald record of vm %s within %v like\n  %s\nits records:\n  %s\nJSON-lines fallback: %s",
				v.name, limit, strings.Join(wants, "\n  "), strings.Join(lines, "\n  "), fallback)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// hostChanges returns the host-change records journald got from the
// process pid (journald's trusted _PID) at or after since, oldest first,
// rendered "KIND OBJECT op=OP". Journald stamps a record with the time the
// kernel received it, so one sent before since is not among them however
// late journald reads it.
func hostChanges(t *testing.T, j *journaltest.Journald, pid int, since time.Time) ([]string, []record) {
	t.Helper()
	// _COMM too: the journald is shared with other test packages, whose
	// hooks may get pid again once the daemon has exited.
	entries := j.Entries(t, "_PID="+strconv.Itoa(pid), "_COMM=virtbridged", journal.FieldIdentifier+"="+journal.Identifier,
		journal.FieldMessageID+"="+journal.IDHostChange)
	var lines []string
	var recs []record
	for _, e := range entries {
		if r := record(e); !r.time(t).Before(since) {
			lines = append(lines, fmt.Sprintf("%s %s op=%s", e[journal.FieldChange], e[journal.FieldObject], e[journal.FieldOp]))
			recs = append(recs, r)
		}
	}
	return lines, recs
}

// waitChanges waits until the host-change records of the process pid since
// since are want, and checks that no other record of it comes before a
// journal barrier (syncJournal). It fails t after 10 s with what they are.
func waitChanges(t *testing.T, j *journaltest.Journald, pid int, since time.Time, want []string) ([]string, []record) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		got, recs := hostChanges(t, j, pid, since)
		if slices.Equal(got, want) {
			syncJournal(t, j)
			got, recs = hostChanges(t, j, pid, since)
		}
		if slices.Equal(got, want) {
			return got, recs
		}
		if time.Now().After(deadline) || len(got) >= len(want) {
			t.Fatalf("host changes journaled by virtbridged (pid %d) since %s:\n  %s\nwant:\n  %s",
				pid, since.Format("15:04:05.000000"), strings.Join(got, "\n  "), strings.Join(want, "\n  "))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// syncJournal sends a marker record to journald and waits until journalctl
// shows it. Journald reads its socket in order, so every record sent
// before the call, by any process, is stored by then: what is not there
// was not sent.
func syncJournal(t *testing.T, j *journaltest.Journald) {
	t.Helper()
	marker := fmt.Sprintf("%d-%d", os.Getpid(), time.Now().UnixNano())
	if err := sdjournal.Send("virtbridged test: journal barrier", sdjournal.PriInfo, map[string]string{"VIRTBRIDGE_TEST_BARRIER": marker}); err != nil {
		t.Fatalf("sending a barrier to journald: %v", err)
	}
	j.WaitEntries(t, 1, "VIRTBRIDGE_TEST_BARRIER="+marker)
}
