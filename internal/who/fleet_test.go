package who

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/virtbridge/virtbridge/internal/journal"
)

func rec(kind, host string, sec int, vm, tap, op string) PortRecord {
	return PortRecord{Kind: kind, Host: host, Time: time.Unix(1_800_000_000+int64(sec), 0).UTC(),
		Port: journal.Port{VM: journal.VM{Name: vm, UUID: "u-" + vm, Op: op}, Tap: tap, MAC: "52:54:00:00:00:01", Bridge: "br0"}}
}

func spansText(spans []Span) string {
	var b strings.Builder
	for _, s := range spans {
		from, until := "?", "now"
		if !s.From.IsZero() {
			from = fmt.Sprint(s.From.Unix() - 1_800_000_000)
		}
		if !s.Until.IsZero() {
			until = fmt.Sprint(s.Until.Unix() - 1_800_000_000)
		}
		fmt.Fprintf(&b, "%s %s %s %s-%s %s>%s\n", s.HostName(), s.VM, s.Tap, from, until, s.FromOp, s.UntilOp)
	}
	return b.String()
}

// TestSpans pairs records per host and NIC: a repeated attached record
// changes nothing, another tap ends the open span, a detached record whose
// attached one is older than the records stands alone, and the same tap
// name on two hosts is two spans.
func TestSpans(t *testing.T) {
	A, D := journal.IDAttached, journal.IDDetached
	got := spansText(Spans([]PortRecord{
		rec(D, "a", 1, "vm1", "vnet9", "release"),
		rec(A, "a", 2, "vm1", "vnet0", "start"),
		rec(A, "b", 3, "vm2", "vnet0", "start"),
		rec(A, "a", 4, "vm1", "vnet0", "reconcile"),
		rec(A, "a", 5, "vm1", "vnet1", "start"),
		rec(D, "a", 6, "vm1", "vnet1", "release"),
		rec(D, "b", 7, "vm2", "vnet0", "release"),
	}))
	want := `a vm1 vnet9 ?-1 >release
a vm1 vnet0 2-5 start>start
b vm2 vnet0 3-7 start>release
a vm1 vnet1 5-6 start>release
`
	if got != want {
		t.Errorf("spans:\n%s\nwant:\n%s", got, want)
	}
}
