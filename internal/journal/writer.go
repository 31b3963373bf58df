package journal

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/virtbridge/virtbridge/internal/change"
	"github.com/virtbridge/virtbridge/internal/deadline"
	"github.com/virtbridge/virtbridge/internal/paths"
)

// DefaultSocket is journald's native socket.
const DefaultSocket = "/run/systemd/journal/socket"

// DefaultFile is where records go, as JSON lines, when journald is absent.
const DefaultFile = "/var/log/virtbridge/journal.jsonl"

// FileMode is the mode of the fallback file (and its notice marker),
// whatever the umask: root writes it; root and root's group read it, as
// journald's system journal is readable only by privileged groups and the
// records carry the host's changes and error text.
const FileMode = 0o640

// NoticeSuffix names the marker file (next to the JSON-lines file) that
// says the "no journald" notice was given; delete it to hear it again.
const NoticeSuffix = ".noticed"

// Options configure a Writer; the zero value means the defaults.
type Options struct {
	Socket  string           // journald's native socket; DefaultSocket if empty
	File    string           // JSON-lines fallback; DefaultFile if empty
	Stderr  io.Writer        // where the one-time notice goes; os.Stderr if nil
	Timeout time.Duration    // for one send to journald; 1s if zero
	Now     func() time.Time // the fallback file's __REALTIME_TIMESTAMP; time.Now if nil
}

// Writer sends records to journald, or appends them to the fallback file
// when journald's socket does not answer. It is safe for concurrent use.
type Writer struct {
	o       Options
	mu      sync.Mutex
	noticed bool
}

// New returns a Writer. It opens nothing until the first record.
func New(o Options) *Writer {
	if o.Socket == "" {
		o.Socket = DefaultSocket
	}
	if o.File == "" {
		o.File = DefaultFile
	}
	if o.Stderr == nil {
		o.Stderr = os.Stderr
	}
	if o.Timeout == 0 {
		o.Timeout = time.Second
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Writer{o: o}
}

// File returns the JSON-lines fallback file.
func (w *Writer) File() string { return w.o.File }

// JournaldAvailable reports whether journald answers on the socket. Read-only.
func (w *Writer) JournaldAvailable() bool { return journaldAnswers(w.o.Socket) }

// journaldAnswers reports whether something listens on the unixgram
// socket: connecting to a datagram socket never waits.
func journaldAnswers(socket string) bool {
	c, err := net.Dial("unixgram", socket)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// Write records r: to journald if its socket answers, else (or if the send
// fails) appended to the JSON-lines file, fsync'd. The send ends with ctx
// (its deadline, a cancel) and at the Writer's Timeout, whichever comes
// first. The first time the file is used on this host because journald is
// missing or did not answer, one line on stderr says so (not when ctx cut
// the send short: journald is not at fault). Each call writes one more
// record: it is not idempotent.
func (w *Writer) Write(ctx context.Context, r Record) error {
	r = capRecord(r)
	var jerr error
	if w.JournaldAvailable() {
		if jerr = w.sendJournald(ctx, r); jerr == nil {
			return nil
		}
	}
	if err := w.appendFile(r); err != nil {
		if jerr != nil {
			return fmt.Errorf("journal record %q: %v; and %w", r.Message, jerr, err)
		}
		return fmt.Errorf("journal record %q (no journald at %s): %w", r.Message, w.o.Socket, err)
	}
	if jerr == nil || ctx.Err() == nil {
		w.noticeOnce(jerr)
	}
	return nil
}

// Attached journals a tap attached to a VM NIC (one more record per call,
// like every method that journals).
func (w *Writer) Attached(ctx context.Context, p Port) error {
	r, err := AttachedRecord(p)
	if err != nil {
		return err
	}
	return w.Write(ctx, r)
}

// Detached journals a tap detached from a VM NIC.
func (w *Writer) Detached(ctx context.Context, p Port) error {
	r, err := DetachedRecord(p)
	if err != nil {
		return err
	}
	return w.Write(ctx, r)
}

// Refused journals a VM operation the hook refused, and why.
func (w *Writer) Refused(ctx context.Context, vm VM, reason string) error {
	return w.Write(ctx, RefusedRecord(vm, reason))
}

// HostChanges journals each change, in order; it keeps going past a
// failure and returns the errors joined.
func (w *Writer) HostChanges(ctx context.Context, vm VM, cs []change.Change) error {
	var errs []error
	for _, c := range cs {
		errs = append(errs, w.Write(ctx, HostChangeRecord(vm, c)))
	}
	return errors.Join(errs...)
}

// StoreRecovered journals that the mapping store path was corrupt or
// untrusted (cause) and moved aside to movedTo.
func (w *Writer) StoreRecovered(ctx context.Context, path, movedTo string, cause error) error {
	return w.Write(ctx, StoreRecoveredRecord(path, movedTo, cause))
}

func capRecord(r Record) Record {
	out := Record{Message: capValue(r.Message), Priority: r.Priority, Fields: make(map[string]string, len(r.Fields))}
	for k, v := range r.Fields {
		out.Fields[k] = capValue(v)
	}
	return out
}

// sendJournald sends r natively to the socket, the default one included.
// A journald that does not read (stopped, overloaded) must not hang the
// hook nor leave a blocked goroutine in the daemon: the send gives up
// with ctx or after Timeout, and the record goes to the file instead.
func (w *Writer) sendJournald(ctx context.Context, r Record) error {
	return sendNative(ctx, w.o.Socket, r, w.o.Timeout)
}

// sendNative writes r in journald's native protocol to socket, until ctx
// ends and within timeout: a write deadline on a connected unixgram
// socket, the earlier of ctx's deadline and timeout from now, moved to
// now when ctx is cancelled, so that no goroutine outlives the call. A
// send cut short is a *deadline.Error saying so. A record too large for
// one datagram goes the way journald reads it, as a sealed memfd passed
// over the socket.
func sendNative(ctx context.Context, socket string, r Record, timeout time.Duration) error {
	if ctx.Err() != nil {
		return deadline.Ended(ctx, "sending a record to journald at %s", socket)
	}
	defer deadline.Doing(ctx, "sending a record to journald at %s", socket)()
	until := time.Now().Add(timeout)
	t, byCtx := ctx.Deadline()
	if byCtx = byCtx && t.Before(until); byCtx {
		until = t
	}
	d := net.Dialer{Deadline: until}
	c, err := d.DialContext(ctx, "unixgram", socket)
	if err != nil {
		if ctx.Err() != nil {
			return deadline.Ended(ctx, "sending a record to journald at %s", socket)
		}
		return fmt.Errorf("sending to journald at %s: %w", socket, err)
	}
	defer c.Close()
	uc := c.(*net.UnixConn)
	if err := uc.SetWriteDeadline(until); err != nil {
		return fmt.Errorf("sending to journald at %s: %w", socket, err)
	}
	// A cancel ends the write at once: the deadline moves to the past.
	defer context.AfterFunc(ctx, func() { uc.SetWriteDeadline(time.Unix(1, 0)) })()
	data := nativeEncode(r)
	_, err = uc.Write(data)
	if errors.Is(err, syscall.EMSGSIZE) || errors.Is(err, syscall.ENOBUFS) {
		err = sendMemfd(uc, data)
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		switch {
		case ctx.Err() != nil:
			return deadline.Ended(ctx, "sending a record to journald at %s", socket)
		case byCtx: // ctx's deadline, a hair before ctx says so
			return &deadline.Error{Waiting: "sending a record to journald at " + socket, Err: context.DeadlineExceeded}
		}
		return &deadline.Error{Waiting: fmt.Sprintf("sending to journald at %s: no answer within %v", socket, timeout), Err: err}
	}
	if err != nil {
		return fmt.Errorf("sending to journald at %s: %w", socket, err)
	}
	return nil
}

// sendMemfd passes data to journald as a sealed memfd (SCM_RIGHTS), for a
// record larger than the socket takes in one datagram.
func sendMemfd(c *net.UnixConn, data []byte) error {
	fd, err := unix.MemfdCreate("virtbridge-journal", unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	if err != nil {
		return fmt.Errorf("creating a memfd for a %d-byte record: %w", len(data), err)
	}
	f := os.NewFile(uintptr(fd), "memfd")
	defer f.Close()
	if _, err := f.Write(data); err != nil {
		return fmt.Errorf("writing a %d-byte record to a memfd: %w", len(data), err)
	}
	seals := unix.F_SEAL_SHRINK | unix.F_SEAL_GROW | unix.F_SEAL_WRITE | unix.F_SEAL_SEAL
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_ADD_SEALS, seals); err != nil {
		return fmt.Errorf("sealing the memfd of a %d-byte record: %w", len(data), err)
	}
	// Go refuses WriteMsgUnix on a connected datagram socket: send on the
	// descriptor, through the poller, so the write deadline still holds.
	rc, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Write(func(s uintptr) bool {
		serr = unix.Sendmsg(int(s), nil, unix.UnixRights(fd), nil, 0)
		return !errors.Is(serr, unix.EAGAIN)
	}); err != nil {
		return err
	}
	return serr
}

// nativeEncode encodes r as journald's native protocol: NAME=value lines,
// or NAME, a little-endian 64-bit length and the value for values holding
// a newline (systemd.io/JOURNAL_NATIVE_PROTOCOL).
func nativeEncode(r Record) []byte {
	var b bytes.Buffer
	put := func(k, v string) {
		if !strings.Contains(v, "\n") {
			fmt.Fprintf(&b, "%s=%s\n", k, v)
			return
		}
		b.WriteString(k + "\n")
		binary.Write(&b, binary.LittleEndian, uint64(len(v)))
		b.WriteString(v + "\n")
	}
	put(FieldPriority, strconv.Itoa(int(r.Priority)))
	put(FieldMessage, r.Message)
	for k, v := range r.Fields {
		put(k, v)
	}
	return b.Bytes()
}

// fileLine renders r as one JSON line with journalctl -o json's field
// names, including __REALTIME_TIMESTAMP, so that one reader reads both.
func fileLine(r Record, now time.Time) []byte {
	m := make(map[string]string, len(r.Fields)+3)
	for k, v := range r.Fields {
		m[k] = v
	}
	m[FieldMessage] = r.Message
	m[FieldPriority] = strconv.Itoa(int(r.Priority))
	m[FieldRealtime] = strconv.FormatInt(now.UnixMicro(), 10)
	data, _ := json.Marshal(m) // strings only: cannot fail
	return append(data, '\n')
}

// appendFile appends r to the fallback file and fsyncs it. One write per
// record with O_APPEND keeps concurrent writers' lines whole; a line cut by
// a crash is ended before the next one so that only it is lost. The file
// and its directory must be safe (paths.OpenFile, paths.EnsureDir): a
// planted symlink is refused, never followed.
func (w *Writer) appendFile(r Record) error {
	path := w.o.File
	if err := paths.EnsureDir(filepath.Dir(path)); err != nil {
		return fmt.Errorf("appending to %q: %w", path, err)
	}
	f, err := paths.OpenFile(path, os.O_RDWR|os.O_APPEND|os.O_CREATE, FileMode)
	if err != nil {
		return fmt.Errorf("appending to %q: %w", path, err)
	}
	line := fileLine(r, w.o.Now())
	if st, err := f.Stat(); err == nil && st.Size() > 0 {
		last := make([]byte, 1)
		if _, err := f.ReadAt(last, st.Size()-1); err == nil && last[0] != '\n' {
			line = append([]byte{'\n'}, line...)
		}
	}
	_, err = f.Write(line)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("appending to %q: %w", path, err)
	}
	return nil
}

// noticeOnce tells stderr, once per host (a marker file next to the
// fallback file) and once per Writer, that records go to the file.
func (w *Writer) noticeOnce(jerr error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.noticed {
		return
	}
	w.noticed = true
	marker := w.o.File + NoticeSuffix
	why := "no journald socket at " + w.o.Socket
	if jerr != nil {
		why = jerr.Error()
	}
	msg := fmt.Sprintf("virtbridge: %s; writing virtbridge journal records to %s instead "+
		"(said once; delete %s to be told again)", why, w.o.File, marker)
	f, err := paths.OpenFile(marker, os.O_WRONLY|os.O_CREATE|os.O_EXCL, FileMode)
	if err != nil {
		return // already said, by this or another process; or unwritable: say nothing rather than every time
	}
	fmt.Fprintf(f, "%s %s\n", time.Now().UTC().Format(time.RFC3339), msg)
	f.Close()
	fmt.Fprintln(w.o.Stderr, msg)
}
