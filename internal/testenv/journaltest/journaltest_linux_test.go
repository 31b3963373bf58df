package journaltest

import (
	"crypto/rand"
	"encoding/hex"
	"net"
	"os"
	"testing"

	"github.com/virtbridge/virtbridge/internal/testenv/journald"
)

func TestMain(m *testing.M) { os.Exit(Main(m)) }

// TestRequire writes one entry in journald's native protocol and reads it
// back through Entries.
func TestRequire(t *testing.T) {
	j := Require(t)
	if !journald.Answers(j.Socket) {
		t.Fatalf("journald %+v does not answer", j)
	}
	b := make([]byte, 8)
	rand.Read(b)
	id := hex.EncodeToString(b)
	c, err := net.Dial("unixgram", j.Socket)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	msg := "MESSAGE=journaltest " + id + "\nSYSLOG_IDENTIFIER=journaltest\nJOURNALTEST_ID=" + id + "\n"
	if _, err := c.Write([]byte(msg)); err != nil {
		t.Fatal(err)
	}
	got := j.WaitEntries(t, 1, "JOURNALTEST_ID="+id)
	if len(got) != 1 || got[0]["MESSAGE"] != "journaltest "+id || got[0]["SYSLOG_IDENTIFIER"] != "journaltest" {
		t.Fatalf("read back %v", got)
	}
	if again := Require(t); again != j {
		t.Fatalf("a second Require started another journald: %+v, %+v", again, j)
	}
}

func TestValue(t *testing.T) {
	for _, c := range []struct {
		in   any
		want string
	}{
		{"x", "x"}, {[]any{104.0, 105.0}, "hi"}, {nil, "<nil>"},
	} {
		if got := value(c.in); got != c.want {
			t.Errorf("value(%v) = %q, want %q", c.in, got, c.want)
		}
	}
}
