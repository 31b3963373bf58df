package engine

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/virtbridge/virtbridge/internal/events"
	"github.com/virtbridge/virtbridge/internal/journal"
	"github.com/virtbridge/virtbridge/internal/links"
)

// reasons returns the reasons of the refusals journaled so far.
func (r *rig) reasons(t *testing.T) []string {
	t.Helper()
	var out []string
	for _, f := range fileRecords(t, r.file) {
		if f[journal.FieldMessageID] == journal.IDRefused {
			out = append(out, f[journal.FieldReason])
		}
	}
	return out
}

// TestReconcileRefusesLikePrepare: a running VM naming the host's NIC as
// its bridge is refused by a reconcile pass as by a prepare: the same
// *PolicyError text, journaled, the host untouched.
func TestReconcileRefusesLikePrepare(t *testing.T) {
	vm := func(op events.Op) events.Event {
		return events.Event{Source: events.SourceEventd, Op: op, Domain: "web02", UUID: "00000000-0000-0000-0000-0000000000b2",
			NICs: []events.NIC{{MAC: "52:54:00:aa:03:01", Type: "bridge", Bridge: "eth0", Tap: "vnet4"}}}
	}
	var got [2]string
	for i, reconcile := range []bool{false, true} {
		r := newRig(t, "bridges:\n  br-a: {uplink: uplink0, create: on_demand}\n")
		r.links.AddLink("eth0", "device", "52:54:00:00:00:01", "", "192.0.2.2/24")
		before := r.links.String()
		var err error
		if reconcile {
			_, err = r.eng.Reconcile(context.Background(), []events.Event{vm(events.OpReconnect)}, time.Now())
		} else {
			ev := vm(events.OpPrepare)
			ev.NICs[0].Tap = ""
			_, err = r.eng.Handle(context.Background(), ev)
		}
		var pe *PolicyError
		if !errors.As(err, &pe) || !strings.Contains(err.Error(), `names "eth0" as its bridge, but eth0 is a network interface (NIC) on this host, not a bridge`) {
			t.Fatalf("reconcile %v: err %v, want a PolicyError naming eth0", reconcile, err)
		}
		if r.links.String() != before {
			t.Errorf("reconcile %v: the refused VM changed the links:\n%s", reconcile, r.links.String())
		}
		reasons := r.reasons(t)
		if len(reasons) != 1 {
			t.Fatalf("reconcile %v: refusals journaled %q, want one", reconcile, reasons)
		}
		got[i] = reasons[0]
	}
	if got[0] != got[1] {
		t.Errorf("refused at prepare:\n%s\nat reconcile:\n%s\nwant the same", got[0], got[1])
	}
}

// TestBadTapAtReconcileLikeAtStarted: a running VM one of whose taps is
// another VM's is treated at reconcile as at started: each port is checked
// on its own, the VM's own tap is put in its bridge and recorded, the other
// is journaled as refused (the same reason) and not recorded, and the
// bridge stays. At started that is a warning (the VM runs); a reconcile
// reports it as a *HostError of that domain.
func TestBadTapAtReconcileLikeAtStarted(t *testing.T) {
	var reasons [2][]string
	for i, reconcile := range []bool{false, true} {
		r := newRig(t, rigConfig)
		r.links.AddLink("vnet0", "tuntap", "fe:54:00:aa:02:01", "")
		r.links.AddLink("vnet1", "tuntap", "fe:54:00:bb:00:07", "") // another VM's tap
		var res Result
		var err error
		if reconcile {
			res, err = r.eng.Reconcile(context.Background(), []events.Event{event(events.OpReconnect, "vnet0", "vnet1")}, time.Now())
			var he *HostError
			if !errors.As(err, &he) || !errors.Is(err, links.ErrNotTap) || !strings.Contains(err.Error(), `domain "web01"`) {
				t.Fatalf("reconcile: err %v, want a HostError of web01 for its tap vnet1", err)
			}
		} else {
			if _, err := r.eng.Handle(context.Background(), event(events.OpPrepare)); err != nil {
				t.Fatal(err)
			}
			res, err = r.eng.Handle(context.Background(), event(events.OpStarted, "vnet0", "vnet1"))
			if err != nil || len(res.Warnings) != 1 || !errors.Is(res.Warnings[0], links.ErrNotTap) {
				t.Fatalf("started: err %v warnings %v, want a not-its-tap warning", err, res.Warnings)
			}
		}
		if l := r.links.Link("vnet0"); l.Master != "br-a" || !strings.HasPrefix(l.Alias, "vm:web01 ") {
			t.Errorf("reconcile %v: vnet0 = %+v, want in br-a with web01's alias", reconcile, l)
		}
		if l := r.links.Link("vnet1"); l.Master != "" || l.Alias != "" {
			t.Errorf("reconcile %v: another VM's tap was touched: %+v", reconcile, l)
		}
		var attached []string
		for _, rec := range r.records(t) {
			if strings.HasPrefix(rec, "attached") || strings.HasPrefix(rec, "detached") {
				attached = append(attached, strings.TrimSuffix(strings.TrimSuffix(rec, " started"), " reconcile"))
			}
		}
		if strings.Join(attached, "\n") != "attached vnet0 web01 br-a" {
			t.Errorf("reconcile %v: records %q, want vnet0's attach alone", reconcile, attached)
		}
		reasons[i] = r.reasons(t)
	}
	if len(reasons[0]) != 1 || strings.Join(reasons[0], "\n") != strings.Join(reasons[1], "\n") {
		t.Errorf("refused at started:\n%q\nat reconcile:\n%q\nwant one, the same", reasons[0], reasons[1])
	}
}
