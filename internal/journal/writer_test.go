package journal

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
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
	for _, err := range []error{w.Attached(context.Background(), p), w.Refused(context.Background(), web01, "line one\nline two"), w.Detached(context.Background(), p)} {
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
	if err := w2.Attached(context.Background(), p); err != nil {
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
	if err := w.Attached(context.Background(), p); err != nil {
		t.Fatal(err)
	}
	f, _ := os.OpenFile(w.File(), os.O_WRONLY|os.O_APPEND, 0)
	f.WriteString(`{"MESSAGE":"cut by a cra`)
	f.Close()
	if err := w.Detached(context.Background(), p); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(w.File())
	lines := strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
	if len(lines) != 3 || lines[1] != `{"MESSAGE":"cut by a cra` {
		t.Fatalf("file after a cut line:\n%s", data)
	}
	for _, i := range []int{0, 2} {
		if f, ok := ParseFields([]byte(lines[i])); !ok || f[FieldTap] != "vnet3" {
			t.Fatalf("line %d around the cut one does not read back: %q", i, lines[i])
		}
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
		if err := w.Attached(context.Background(), p); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(w.File()); err == nil {
			break
		}
	}
	if err := w.Attached(context.Background(), p); err != nil { // and the next one too
		t.Fatal(err)
	}
	if recs := fileRecords(t, w.File()); len(recs) != 2 || recs[0][FieldTap] != "vnet3" {
		t.Fatalf("after %d records sent, the file holds %v; want the 2 that journald's full queue refused", sent, recs)
	}
	if !strings.Contains(stderr.String(), "no answer within 100ms") || strings.Count(stderr.String(), "\n") != 1 {
		t.Fatalf("notice: %q", stderr.String())
	}
}
