package engine

import (
	"testing"

	"github.com/virtbridge/virtbridge/internal/events"
	"github.com/virtbridge/virtbridge/internal/journal"
)

// TestVMOfSubOp: records carry libvirt's detail when it says something (the
// daemon's stopped event of a live migration's source says "migrated"),
// never the hook's begin/end.
func TestVMOfSubOp(t *testing.T) {
	for _, c := range []struct {
		ev   events.Event
		want journal.VM
	}{
		{events.Event{Source: events.SourceEventd, Op: events.OpStopped, SubOp: "migrated", Domain: "vm1", UUID: "u"},
			journal.VM{Name: "vm1", UUID: "u", Op: "stopped", SubOp: "migrated", Source: "eventd"}},
		{events.Event{Source: events.SourceHook, Op: events.OpRelease, SubOp: "end", Domain: "vm1", UUID: "u"},
			journal.VM{Name: "vm1", UUID: "u", Op: "release", Source: "hook"}},
		{events.Event{Source: events.SourceHook, Op: events.OpStart, SubOp: "begin", Domain: "vm1", UUID: "u"},
			journal.VM{Name: "vm1", UUID: "u", Op: "start", Source: "hook"}},
	} {
		if got := vmOf(c.ev); got != c.want {
			t.Errorf("vmOf(%+v) = %+v, want %+v", c.ev, got, c.want)
		}
	}
	r, err := journal.DetachedRecord(journal.Port{VM: vmOf(events.Event{Source: events.SourceEventd, Op: events.OpStopped, SubOp: "migrated", Domain: "vm1", UUID: "u"}),
		Tap: "vnet0", MAC: "52:54:00:00:00:01", Bridge: "br0"})
	if err != nil || r.Fields[journal.FieldSubOp] != "migrated" {
		t.Errorf("detached record fields %v (%v), want %s=migrated", r.Fields, err, journal.FieldSubOp)
	}
}
