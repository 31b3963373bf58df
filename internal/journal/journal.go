// Package journal is virtbridge's record schema and its writer: what a
// record of an attached or detached tap, a host change or a refused VM
// operation says (field names, MESSAGE_IDs, messages), and writing
// records — to journald's native socket, with write deadlines; where there
// is none, appended with the same field names as JSON lines to a file.
// It knows nothing of VMs' events, the policy or the mapping store: what
// is recorded when is package engine's decision, and reading the records
// back to answer `virtbridge who` is package who's.
//
// The slog handler (slog.go) stays here: it writes records too, to the
// same journald socket through the same native encoder and write deadline
// (sendNative), only with free-form fields and no fallback file; a package
// of its own would have to export that sending code or copy it.
package journal

import (
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	sdjournal "github.com/coreos/go-systemd/v22/journal"

	"github.com/virtbridge/virtbridge/internal/change"
)

// Identifier is the SYSLOG_IDENTIFIER of every record.
const Identifier = "virtbridge"

// MESSAGE_IDs, one fixed random 128-bit ID per kind of record, so that
// `journalctl MESSAGE_ID=...` finds them and `journalctl -x` explains them
// (virtbridge.catalog). Never change them: old journals carry them.
const (
	IDAttached   = "5ff2a649b70307c98b6ebf8e9ad17c24"
	IDDetached   = "7dd95ce535cdf1d7f5f62d97a00794d9"
	IDRefused    = "d44e759f66037fe25809f1672d887a84"
	IDHostChange = "f73d11caf56a42611cb2c1d64ea660a8"
)

// Field names. Journald field names are upper case, digits and '_'.
const (
	FieldMessage    = "MESSAGE"
	FieldMessageID  = "MESSAGE_ID"
	FieldPriority   = "PRIORITY"
	FieldIdentifier = "SYSLOG_IDENTIFIER"
	FieldRealtime   = "__REALTIME_TIMESTAMP" // µs since the epoch, as journalctl -o json prints it

	FieldOp     = "VIRTBRIDGE_OP"
	FieldVM     = "VIRTBRIDGE_VM"
	FieldUUID   = "VIRTBRIDGE_UUID"
	FieldTap    = "VIRTBRIDGE_TAP"
	FieldMAC    = "VIRTBRIDGE_MAC"
	FieldBridge = "VIRTBRIDGE_BRIDGE"
	FieldSource = "VIRTBRIDGE_SOURCE" // hook | eventd | cli
	// FieldSubOp is what libvirt said of the operation beyond its name,
	// when it says something: the daemon's lifecycle detail ("migrated",
	// "destroyed", "booted"), a hook sub-operation other than begin/end.
	// A detached record with op stopped and subop migrated is a live
	// migration's source letting the NIC go.
	FieldSubOp = "VIRTBRIDGE_SUBOP"

	FieldChange = "VIRTBRIDGE_CHANGE" // change.Kind
	FieldObject = "VIRTBRIDGE_OBJECT"
	FieldBefore = "VIRTBRIDGE_BEFORE"
	FieldAfter  = "VIRTBRIDGE_AFTER"

	FieldReason  = "VIRTBRIDGE_REASON"
	FieldStore   = "VIRTBRIDGE_STORE"
	FieldMovedTo = "VIRTBRIDGE_MOVED_TO"
	// FieldToken marks the note a catch-up of the mapping store sends and
	// waits for (CatchUpRecord), with a random value.
	FieldToken = "VIRTBRIDGE_TOKEN"
)

// TimeLayout is how errors print times: to the microsecond, as the journal
// keeps them, so that two records in one second are told apart.
const TimeLayout = "2006-01-02 15:04:05.000000 -0700"

// maxValue bounds one field value, so a record always fits one datagram.
const maxValue = 8 << 10

// Record is one journal entry: MESSAGE, PRIORITY and the other fields.
type Record struct {
	Message  string
	Priority sdjournal.Priority
	Fields   map[string]string // without MESSAGE and PRIORITY
}

// VM says which VM a record is about and what reported it.
type VM struct {
	Name   string // domain name
	UUID   string
	Op     string // the hook op (started, stopped, ...) or the daemon's
	SubOp  string // FieldSubOp; empty when libvirt said nothing more
	Source string // hook | eventd | cli
}

// Port is one VM NIC on a bridge through a tap.
type Port struct {
	VM
	Tap    string
	MAC    string
	Bridge string
	// Store is the mapping store the attach or detach changed, when one
	// did: a stale store catches up from its own records only (CatchUp).
	Store string
}

func (vm VM) fields(id string) map[string]string {
	f := map[string]string{FieldIdentifier: Identifier, FieldMessageID: id}
	for k, v := range map[string]string{FieldVM: vm.Name, FieldUUID: vm.UUID, FieldOp: vm.Op, FieldSubOp: vm.SubOp, FieldSource: vm.Source} {
		if v != "" {
			f[k] = v
		}
	}
	return f
}

func (p Port) check() error {
	for what, v := range map[string]string{"tap": p.Tap, "mac": p.MAC, "bridge": p.Bridge, "vm uuid": p.UUID} {
		if v == "" {
			return fmt.Errorf("port record without %s: %+v", what, p)
		}
	}
	return nil
}

func portRecord(p Port, id, verb, prep string) (Record, error) {
	if err := p.check(); err != nil {
		return Record{}, err
	}
	f := p.VM.fields(id)
	f[FieldVM] = p.Name // present even when empty: every port record has all fields
	f[FieldTap], f[FieldMAC], f[FieldBridge] = p.Tap, p.MAC, p.Bridge
	if p.Store != "" {
		f[FieldStore] = p.Store
	}
	msg := fmt.Sprintf("%s %s: vm %s (uuid %s) mac %s %s bridge %s",
		oneLine(p.Tap), verb, strconv.Quote(p.Name), oneLine(p.UUID), oneLine(p.MAC), prep, oneLine(p.Bridge))
	return Record{Message: msg, Priority: sdjournal.PriInfo, Fields: f}, nil
}

// AttachedRecord returns the record of a tap attached to a VM's NIC. Pure.
func AttachedRecord(p Port) (Record, error) { return portRecord(p, IDAttached, "attached", "on") }

// DetachedRecord returns the record of a tap detached (the VM stopped or
// the NIC was unplugged). Pure.
func DetachedRecord(p Port) (Record, error) { return portRecord(p, IDDetached, "detached", "from") }

// RefusedRecord returns the record of a VM operation the hook refused, with
// the reason shown to the operator. Pure.
func RefusedRecord(vm VM, reason string) Record {
	f := vm.fields(IDRefused)
	f[FieldReason] = reason
	msg := fmt.Sprintf("refused %s of vm %s (uuid %s): %s", orDash(vm.Op), strconv.Quote(vm.Name), orDash(vm.UUID), oneLine(reason))
	return Record{Message: msg, Priority: sdjournal.PriErr, Fields: f}
}

// HostChangeRecord returns the record of one change made to the host, with
// what was there before; vm is the VM it was made for, if any. Pure.
func HostChangeRecord(vm VM, c change.Change) Record {
	f := vm.fields(IDHostChange)
	f[FieldChange], f[FieldObject] = string(c.Kind), c.Object
	f[FieldBefore], f[FieldAfter] = c.Before, c.After
	msg := oneLine(c.String())
	if vm.Name != "" {
		msg += fmt.Sprintf(" (for vm %s at %s)", strconv.Quote(vm.Name), orDash(vm.Op))
	}
	return Record{Message: msg, Priority: sdjournal.PriNotice, Fields: f}
}

// StoreRecoveredRecord returns the warning that the mapping store path was
// corrupt or untrusted (a link, another owner, writable by others: cause)
// and was moved aside to movedTo. It has no MESSAGE_ID of its own. Pure.
func StoreRecoveredRecord(path, movedTo string, cause error) Record {
	f := map[string]string{
		FieldIdentifier: Identifier, FieldStore: path, FieldMovedTo: movedTo, FieldReason: fmt.Sprint(cause),
	}
	msg := fmt.Sprintf("mapping store %s was unusable (%s); moved it to %s and started with an empty mapping: "+
		"`virtbridge who` knows only taps attached from now on until the VMs restart",
		path, oneLine(fmt.Sprint(cause)), movedTo)
	return Record{Message: msg, Priority: sdjournal.PriWarning, Fields: f}
}

// CatchUpRecord returns the note that the mapping store storePath may lack
// the attach and detach records since since (a save failed) and is caught
// up from the journal, marked with token (FieldToken) so that the catch-up
// can wait until journald has stored it. Pure.
func CatchUpRecord(storePath string, since time.Time, token string) Record {
	return Record{
		Message: fmt.Sprintf("mapping store %s may lack the attach and detach records since %s (a save failed): "+
			"catching up from the journal", storePath, since.Format(TimeLayout)),
		Priority: sdjournal.PriNotice,
		Fields:   map[string]string{FieldIdentifier: Identifier, FieldStore: storePath, FieldToken: token},
	}
}

// oneLine makes s fit on one line of a MESSAGE: control characters become
// spaces (newlines "; ") and invalid UTF-8 is replaced.
func oneLine(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	s = strings.ReplaceAll(strings.TrimSpace(s), "\n", "; ")
	return strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, s)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return oneLine(s)
}

// capValue bounds a field value, cutting at a rune boundary.
func capValue(v string) string {
	if len(v) <= maxValue {
		return v
	}
	const mark = "…(truncated)"
	cut := maxValue - len(mark)
	for cut > 0 && !utf8.RuneStart(v[cut]) {
		cut--
	}
	return v[:cut] + mark
}

// MaxAlias bounds Alias's result; the kernel allows 255 bytes (IFALIASZ-1).
const MaxAlias = 128

// Alias returns the interface alias for a VM's tap, "vm:NAME uuid:UUID",
// at most MaxAlias bytes of valid UTF-8 without control characters (they
// become '?'); the name is shortened to keep the UUID whole. Pure.
func Alias(vmName, uuid string) string {
	clean := func(s string) string {
		s = strings.ToValidUTF8(s, "?")
		return strings.Map(func(r rune) rune {
			if unicode.IsControl(r) || r == utf8.RuneError {
				return '?'
			}
			return r
		}, s)
	}
	name, id := clean(vmName), clean(uuid)
	suffix := ""
	if id != "" {
		suffix = " uuid:" + id
	}
	if len(suffix) > MaxAlias/2 {
		suffix = truncate(suffix, MaxAlias/2)
	}
	return "vm:" + truncate(name, MaxAlias-len("vm:")-len(suffix)) + suffix
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}
