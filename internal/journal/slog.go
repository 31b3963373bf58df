package journal

import (
	"context"
	"fmt"

	"log/slog"
	"os"
	"strings"
	"time"

	sdjournal "github.com/coreos/go-systemd/v22/journal"
	"golang.org/x/sys/unix"
)

// LogHandler returns the slog handler for a daemon's own logs: native
// journald entries, one field per attribute (VIRTBRIDGE_<KEY>, so
// `journalctl SYSLOG_IDENTIFIER=virtbridged VIRTBRIDGE_DOMAIN=web01` works),
// when stderr is connected to the journal — systemd says so in
// $JOURNAL_STREAM — and plain text on stderr otherwise (a terminal, a test).
func LogHandler(ident string, stderr *os.File) slog.Handler {
	if streamIsJournal(os.Getenv("JOURNAL_STREAM"), stderr) && journaldAnswers(DefaultSocket) {
		return &journalHandler{ident: ident, send: sendLog}
	}
	return slog.NewTextHandler(stderr, nil)
}

// streamIsJournal reports whether f is the stream systemd connected to the
// journal: $JOURNAL_STREAM holds its "device:inode".
func streamIsJournal(env string, f *os.File) bool {
	if env == "" || f == nil {
		return false
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return false
	}
	return env == fmt.Sprintf("%d:%d", st.Dev, st.Ino)
}

// logTimeout bounds one log entry's send: a journald that does not read
// loses the entry (Handle returns the error) but never blocks the daemon.
const logTimeout = time.Second

// sendLog sends one log entry to journald, natively, within logTimeout.
func sendLog(msg string, p sdjournal.Priority, vars map[string]string) error {
	// Not the caller's context: the daemon's log says why it stops, too.
	return sendNative(context.Background(), DefaultSocket, Record{Message: msg, Priority: p, Fields: vars}, logTimeout)
}

// journalHandler is a slog.Handler that sends each record to journald.
type journalHandler struct {
	ident  string
	prefix string // of attribute keys, from WithGroup
	attrs  map[string]string
	send   func(msg string, p sdjournal.Priority, vars map[string]string) error
}

var _ slog.Handler = (*journalHandler)(nil)

func (h *journalHandler) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelInfo }

func (h *journalHandler) Handle(_ context.Context, r slog.Record) error {
	vars := make(map[string]string, len(h.attrs)+r.NumAttrs()+1)
	for k, v := range h.attrs {
		vars[k] = v
	}
	r.Attrs(func(a slog.Attr) bool {
		addAttr(vars, h.prefix, a)
		return true
	})
	vars["SYSLOG_IDENTIFIER"] = h.ident
	return h.send(r.Message, priorityOf(r.Level), vars)
}

func (h *journalHandler) WithAttrs(as []slog.Attr) slog.Handler {
	c := *h
	c.attrs = make(map[string]string, len(h.attrs)+len(as))
	for k, v := range h.attrs {
		c.attrs[k] = v
	}
	for _, a := range as {
		addAttr(c.attrs, h.prefix, a)
	}
	return &c
}

func (h *journalHandler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	c := *h
	c.prefix = h.prefix + name + "_"
	return &c
}

// addAttr stores a as a journal field: VIRTBRIDGE_ and the key in upper
// case, with anything journald does not allow in a field name made '_'.
func addAttr(vars map[string]string, prefix string, a slog.Attr) {
	a.Value = a.Value.Resolve()
	if a.Value.Kind() == slog.KindGroup {
		for _, g := range a.Value.Group() {
			addAttr(vars, prefix+a.Key+"_", g)
		}
		return
	}
	if a.Key == "" {
		return
	}
	key := strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z':
			return r - 'a' + 'A'
		case r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
			return r
		}
		return '_'
	}, prefix+a.Key)
	vars["VIRTBRIDGE_"+key] = capValue(a.Value.String())
}

func priorityOf(l slog.Level) sdjournal.Priority {
	switch {
	case l >= slog.LevelError:
		return sdjournal.PriErr
	case l >= slog.LevelWarn:
		return sdjournal.PriWarning
	case l >= slog.LevelInfo:
		return sdjournal.PriInfo
	}
	return sdjournal.PriDebug
}
