package journal

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/virtbridge/virtbridge/internal/policy"
	"github.com/virtbridge/virtbridge/internal/store"
)

func lookJournalctl() (string, error) {
	p, err := exec.LookPath("journalctl")
	if err != nil {
		return "", fmt.Errorf("journalctl not installed (Debian package systemd)")
	}
	return p, nil
}

func runCmd(name string, args ...string) (string, error) {
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// fakeClock hands out times one second apart.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time { c.t = c.t.Add(time.Second); return c.t }

// fileWriter returns a Writer whose journald socket does not exist, so
// that records go to a JSON-lines file in a temp dir.
func fileWriter(t *testing.T, dir string, stderr *bytes.Buffer, clock *fakeClock) *Writer {
	t.Helper()
	return New(Options{
		Socket: filepath.Join(dir, "no-journald", "socket"),
		File:   filepath.Join(dir, "log", "journal.jsonl"),
		Stderr: stderr,
		Now:    clock.now,
	})
}

// fileRecords reads the JSON-lines file back as rendered records.
func fileRecords(t *testing.T, path string) []map[string]string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []map[string]string
	for _, line := range strings.Split(strings.TrimSuffix(string(data), "\n"), "\n") {
		f, ok := ParseFields([]byte(line))
		if !ok {
			t.Fatalf("line of %s is not JSON: %q", path, line)
		}
		out = append(out, f)
	}
	return out
}

func renderFields(f map[string]string) string {
	var lines []string
	for k, v := range f {
		lines = append(lines, fmt.Sprintf("%s=%q", k, v))
	}
	slices.Sort(lines)
	return strings.Join(lines, " ")
}

func TestFallbackFile(t *testing.T) {
	dir := t.TempDir()
	clock := &fakeClock{t: time.Date(2025, 3, 4, 14, 0, 0, 0, time.UTC)}
	var stderr bytes.Buffer
	w := fileWriter(t, dir, &stderr, clock)
	if w.JournaldAvailable() {
		t.Fatal("a missing socket counts as journald")
	}
	p := Port{VM: web01, Tap: "vnet3", MAC: "52:54:00:aa:00:01", Bridge: "br0"}
	for _, err := range []error{w.Attached(p), w.Refused(web01, "line one\nline two"), w.Detached(p)} {
		if err != nil {
			t.Fatal(err)
		}
	}
	got := fileRecords(t, w.File())
	var lines []string
	for _, f := range got {
		lines = append(lines, renderFields(f))
	}
	want := []string{
		`MESSAGE="vnet3 attached: vm \"web01\" (uuid 6f1c7c52-3b7a-4a8e-9d0a-111111111111) mac 52:54:00:aa:00:01 on bridge br0" MESSAGE_ID="5ff2a649b70307c98b6ebf8e9ad17c24" PRIORITY="6" SYSLOG_IDENTIFIER="virtbridge" VIRTBRIDGE_BRIDGE="br0" VIRTBRIDGE_MAC="52:54:00:aa:00:01" VIRTBRIDGE_OP="started" VIRTBRIDGE_SOURCE="hook" VIRTBRIDGE_TAP="vnet3" VIRTBRIDGE_UUID="6f1c7c52-3b7a-4a8e-9d0a-111111111111" VIRTBRIDGE_VM="web01" __REALTIME_TIMESTAMP="1741096801000000"`,
		`MESSAGE="refused started of vm \"web01\" (uuid 6f1c7c52-3b7a-4a8e-9d0a-111111111111): line one; line two" MESSAGE_ID="d44e759f66037fe25809f1672d887a84" PRIORITY="3" SYSLOG_IDENTIFIER="virtbridge" VIRTBRIDGE_OP="started" VIRTBRIDGE_REASON="line one\nline two" VIRTBRIDGE_SOURCE="hook" VIRTBRIDGE_UUID="6f1c7c52-3b7a-4a8e-9d0a-111111111111" VIRTBRIDGE_VM="web01" __REALTIME_TIMESTAMP="1741096802000000"`,
		`MESSAGE="vnet3 detached: vm \"web01\" (uuid 6f1c7c52-3b7a-4a8e-9d0a-111111111111) mac 52:54:00:aa:00:01 from bridge br0" MESSAGE_ID="7dd95ce535cdf1d7f5f62d97a00794d9" PRIORITY="6" SYSLOG_IDENTIFIER="virtbridge" VIRTBRIDGE_BRIDGE="br0" VIRTBRIDGE_MAC="52:54:00:aa:00:01" VIRTBRIDGE_OP="started" VIRTBRIDGE_SOURCE="hook" VIRTBRIDGE_TAP="vnet3" VIRTBRIDGE_UUID="6f1c7c52-3b7a-4a8e-9d0a-111111111111" VIRTBRIDGE_VM="web01" __REALTIME_TIMESTAMP="1741096803000000"`,
	}
	if !slices.Equal(lines, want) {
		t.Fatalf("file records:\n%s\nwant:\n%s", strings.Join(lines, "\n"), strings.Join(want, "\n"))
	}

	// Said once: one stderr line from this writer, the marker next to the
	// file, and nothing from a later writer (another hook run).
	notice := stderr.String()
	if strings.Count(notice, "\n") != 1 || !strings.Contains(notice, "no journald socket at "+filepath.Join(dir, "no-journald", "socket")) ||
		!strings.Contains(notice, w.File()) {
		t.Fatalf("notice on stderr: %q", notice)
	}
	if _, err := os.Stat(w.File() + NoticeSuffix); err != nil {
		t.Fatalf("no marker: %v", err)
	}
	var stderr2 bytes.Buffer
	w2 := fileWriter(t, dir, &stderr2, clock)
	if err := w2.Attached(p); err != nil {
		t.Fatal(err)
	}
	if stderr2.Len() != 0 {
		t.Fatalf("notice said again by a second writer: %q", stderr2.String())
	}
	if st, _ := os.Stat(w.File()); st.Mode().Perm() != FileMode {
		t.Errorf("file mode %v", st.Mode().Perm())
	}
}

// TestFallbackFileCutLine: a line cut by a crash costs only that line.
func TestFallbackFileCutLine(t *testing.T) {
	dir := t.TempDir()
	clock := &fakeClock{t: time.Date(2025, 3, 4, 14, 0, 0, 0, time.UTC)}
	w := fileWriter(t, dir, &bytes.Buffer{}, clock)
	p := Port{VM: web01, Tap: "vnet3", MAC: "52:54:00:aa:00:01", Bridge: "br0"}
	if err := w.Attached(p); err != nil {
		t.Fatal(err)
	}
	f, _ := os.OpenFile(w.File(), os.O_WRONLY|os.O_APPEND, 0)
	f.WriteString(`{"MESSAGE":"cut by a cra`)
	f.Close()
	if err := w.Detached(p); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(w.File())
	lines := strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
	if len(lines) != 3 || lines[1] != `{"MESSAGE":"cut by a cra` {
		t.Fatalf("file after a cut line:\n%s", data)
	}
	l := Lookup{Store: filepath.Join(dir, "ports.json"), File: w.File(), Journalctl: "/nonexistent/journalctl"}
	_, err := l.At(context.Background(), "vnet3", clock.t)
	if !errors.Is(err, ErrUnknown) || !strings.Contains(err.Error(), "detached") {
		t.Fatalf("who after the detached record: %v", err)
	}
	o, err := l.At(context.Background(), "vnet3", clock.t.Add(-time.Second))
	if err != nil || o.VM != "web01" {
		t.Fatalf("who before the detached record: %+v, %v", o, err)
	}
}

// TestJournaldTimeout: a journald that does not read must not hang the
// hook: the record goes to the file once the send times out.
func TestJournaldTimeout(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "socket")
	l, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close() // never read: the queue fills up
	var stderr bytes.Buffer
	w := New(Options{Socket: sock, File: filepath.Join(dir, "journal.jsonl"), Stderr: &stderr, Timeout: 100 * time.Millisecond})
	if !w.JournaldAvailable() {
		t.Fatal("listening socket not seen")
	}
	p := Port{VM: web01, Tap: "vnet3", MAC: "52:54:00:aa:00:01", Bridge: "br0"}
	// Send until the socket's queue is full (net.unix.max_dgram_qlen
	// datagrams) and a record lands in the file.
	sent := 0
	for ; sent < 5000; sent++ {
		if err := w.Attached(p); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(w.File()); err == nil {
			break
		}
	}
	if err := w.Attached(p); err != nil { // and the next one too
		t.Fatal(err)
	}
	if recs := fileRecords(t, w.File()); len(recs) != 2 || recs[0][FieldTap] != "vnet3" {
		t.Fatalf("after %d records sent, the file holds %v; want the 2 that journald's full queue refused", sent, recs)
	}
	if !strings.Contains(stderr.String(), "no answer within 100ms") || strings.Count(stderr.String(), "\n") != 1 {
		t.Fatalf("notice: %q", stderr.String())
	}
}

// TestAttachPortsDetachVM drives the hook's sequence through the store and
// a file journal and compares the records as text.
func TestAttachPortsDetachVM(t *testing.T) {
	dir := t.TempDir()
	clock := &fakeClock{t: time.Date(2025, 3, 4, 14, 0, 0, 0, time.UTC)}
	w := fileWriter(t, dir, &bytes.Buffer{}, clock)
	s := store.New(filepath.Join(dir, "ports.json"))
	vm := func(op string) VM { v := web01; v.Op = op; return v }
	db := VM{Name: "db01", UUID: "6f1c7c52-3b7a-4a8e-9d0a-222222222222", Op: "started", Source: "hook"}
	nics := []policy.Port{{Tap: "vnet1", MAC: "52:54:00:aa:00:01", Bridge: "br0"}, {Tap: "vnet2", MAC: "52:54:00:aa:00:02", Bridge: "br1"}}
	noTaps := []policy.Port{{MAC: "52:54:00:aa:00:01", Bridge: "br0"}}
	step := func(what string, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	step("prepare", AttachPorts(w, s, vm("prepare"), noTaps, clock.now()))
	step("start", AttachPorts(w, s, vm("start"), nics, clock.now()))
	step("started", AttachPorts(w, s, vm("started"), nics, clock.now()))
	step("start again", AttachPorts(w, s, vm("start"), nics, clock.now()))
	step("reconnect", AttachPorts(w, s, vm("reconnect"), nics, clock.now()))
	step("stopped", DetachVM(w, s, vm("stopped")))
	step("release", DetachVM(w, s, vm("release")))
	step("started", AttachPorts(w, s, vm("started"), nics, clock.now()))
	// db01 gets vnet2 while web01's stop was never recorded.
	step("db started", AttachPorts(w, s, db, []policy.Port{{Tap: "vnet2", MAC: "52:54:00:bb:00:01", Bridge: "br1"}}, clock.now()))
	step("unplug", DetachNICs(w, s, vm("device-removed"), []string{"52:54:00:AA:00:01", "52:54:00:aa:00:09"}))

	var got []string
	for _, f := range fileRecords(t, w.File()) {
		kind := map[string]string{IDAttached: "attached", IDDetached: "detached"}[f[FieldMessageID]]
		got = append(got, fmt.Sprintf("%s %s %s vm=%s op=%s", kind, f[FieldTap], f[FieldBridge], f[FieldVM], f[FieldOp]))
	}
	want := []string{
		"attached vnet1 br0 vm=web01 op=start", // new mapping
		"attached vnet2 br1 vm=web01 op=start",
		// started, start again: the same mapping, nothing recorded
		"attached vnet1 br0 vm=web01 op=reconnect", // reconnect always records
		"attached vnet2 br1 vm=web01 op=reconnect",
		"detached vnet1 br0 vm=web01 op=stopped",
		"detached vnet2 br1 vm=web01 op=stopped",
		// release: already detached
		"attached vnet1 br0 vm=web01 op=started",
		"attached vnet2 br1 vm=web01 op=started",
		"detached vnet2 br1 vm=web01 op=started", // displaced by db01
		"attached vnet2 br1 vm=db01 op=started",
		"detached vnet1 br0 vm=web01 op=device-removed",
	}
	if !slices.Equal(got, want) {
		t.Fatalf("records:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if err := s.Save(); err != nil {
		t.Fatal(err)
	}
	l := Lookup{Store: s.Path(), File: w.File(), Journalctl: "/nonexistent/journalctl"}
	if o, err := l.Now(context.Background(), "vnet2"); err != nil || o.VM != "db01" || o.From != "store" {
		t.Fatalf("who vnet2 now: %+v, %v", o, err)
	}
	// vnet1 has no owner now; the file names its last one, from its
	// attach (after the restart) until its unplug.
	var since, until time.Time
	for _, f := range fileRecords(t, w.File()) {
		us, _ := strconv.ParseInt(f[FieldRealtime], 10, 64)
		if f[FieldTap] == "vnet1" && f[FieldMessageID] == IDAttached {
			since = time.UnixMicro(us)
		}
		if f[FieldTap] == "vnet1" && f[FieldOp] == "device-removed" {
			until = time.UnixMicro(us)
		}
	}
	_, err := l.Now(context.Background(), "vnet1")
	var none *NoOwnerError
	if !errors.As(err, &none) || !errors.Is(err, ErrUnknown) || none.Last == nil {
		t.Fatalf("who vnet1 now: %v, want a NoOwnerError naming its last owner", err)
	}
	got = []string{fmt.Sprint(err), fmt.Sprintf("%+v", *none.Last)}
	last := Owner{VM: "web01", UUID: web01.UUID, MAC: "52:54:00:aa:00:01", Tap: "vnet1", Bridge: "br0", Since: since, Until: until, From: w.File()}
	want = []string{fmt.Sprintf(`no VM owns tap "vnet1" now; its last owner was vm "web01" (uuid %s) mac 52:54:00:aa:00:01 on bridge br0, `+
		"attached %s, detached %s [%s]", web01.UUID, since.Format(TimeLayout), until.Format(TimeLayout), w.File()), fmt.Sprintf("%+v", last)}
	if since.IsZero() || until.IsZero() || !slices.Equal(got, want) {
		t.Fatalf("who vnet1 now:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestOpenStoreJournalsRecovery(t *testing.T) {
	dir := t.TempDir()
	clock := &fakeClock{t: time.Date(2025, 3, 4, 14, 0, 0, 0, time.UTC)}
	w := fileWriter(t, dir, &bytes.Buffer{}, clock)
	path := filepath.Join(dir, "ports.json")
	os.WriteFile(path, []byte("\x00\x00\x00"), 0o644)
	s, err := OpenStore(w, path)
	if err != nil || s.Recovered() == nil {
		t.Fatalf("OpenStore of a corrupt store: %v, %+v", err, s)
	}
	recs := fileRecords(t, w.File())
	if len(recs) != 1 || recs[0][FieldPriority] != "4" || recs[0][FieldStore] != path || recs[0][FieldMovedTo] != s.Recovered().MovedTo {
		t.Fatalf("recovery records: %v", recs)
	}
}

func TestWhoNoSources(t *testing.T) {
	dir := t.TempDir()
	l := Lookup{Store: filepath.Join(dir, "ports.json"), File: filepath.Join(dir, "none.jsonl"), Journalctl: "/nonexistent/journalctl"}
	_, err := l.At(context.Background(), "vnet0", time.Now())
	if !errors.Is(err, ErrUnknown) || !strings.Contains(err.Error(), "journalctl is not installed") {
		t.Fatalf("At with no sources: %v", err)
	}
	if _, err := l.Now(context.Background(), "vnet0"); !errors.Is(err, ErrUnknown) {
		t.Fatalf("Now with no store: %v", err)
	}
	if _, err := l.Now(context.Background(), "bad/tap"); err == nil || errors.Is(err, ErrUnknown) {
		t.Fatalf("Now(bad/tap): %v, want a validation error", err)
	}
	os.WriteFile(l.Store, []byte("{"), 0o644)
	var ce *store.CorruptError
	if _, err := l.Now(context.Background(), "vnet0"); !errors.As(err, &ce) {
		t.Fatalf("Now with a corrupt store: %v", err)
	}
}
