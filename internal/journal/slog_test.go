package journal

import (
	"fmt"
	"log/slog"
	"os"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/virtbridge/virtbridge/internal/testenv/journaltest"
)

// TestLogHandlerToJournald logs through the journald handler to a real
// journald and reads the entry back: every attribute is a field.
func TestLogHandlerToJournald(t *testing.T) {
	j := journaltest.Require(t)
	id := uniq(6)
	log := slog.New(&journalHandler{ident: "virtbridged-test", send: sendLog}).With("run", id)
	log.WithGroup("vm").Warn("tap not in its bridge", "domain", "web01", "tap", "vnet3")
	log.Debug("not sent: below info")
	e := j.WaitEntries(t, 1, "SYSLOG_IDENTIFIER=virtbridged-test", "VIRTBRIDGE_RUN="+id)
	if len(e) != 1 {
		t.Fatalf("%d entries, want 1: %v", len(e), e)
	}
	checkFields(t, e[0], map[string]string{
		"MESSAGE": "tap not in its bridge", "PRIORITY": "4",
		"VIRTBRIDGE_VM_DOMAIN": "web01", "VIRTBRIDGE_VM_TAP": "vnet3",
	})
}

// Outside systemd (no JOURNAL_STREAM, or another stream) the logs stay
// text on stderr, where a terminal or a test reads them.
func TestLogHandlerChoosesStderr(t *testing.T) {
	f, err := os.CreateTemp(t.TempDir(), "stderr")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	t.Setenv("JOURNAL_STREAM", "")
	slog.New(LogHandler("virtbridged", f)).Info("hello", "k", "v")
	b, _ := os.ReadFile(f.Name())
	if !strings.Contains(string(b), "msg=hello k=v") {
		t.Fatalf("stderr got %q", b)
	}
	if streamIsJournal("1:2", f) {
		t.Fatal("a file that is not the journal stream was taken for it")
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		t.Fatal(err)
	}
	if !streamIsJournal(fmt.Sprintf("%d:%d", st.Dev, st.Ino), f) {
		t.Fatal("the stream $JOURNAL_STREAM names was not recognised")
	}
}

func TestAddAttrNames(t *testing.T) {
	vars := map[string]string{}
	addAttr(vars, "", slog.String("lock-path", "/run/x"))
	addAttr(vars, "", slog.Group("g", slog.Int("n", 3)))
	if vars["VIRTBRIDGE_LOCK_PATH"] != "/run/x" || vars["VIRTBRIDGE_G_N"] != "3" || len(vars) != 2 {
		t.Fatalf("fields = %v", vars)
	}
}
