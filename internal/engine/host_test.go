package engine

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/virtbridge/virtbridge/internal/events"
)

// TestEnsureHost: every bridge made at start is made as a prepare would
// (uplink enslaved, address and route moved), then the sysctls and the
// firewall, all journaled under the given op; an on_demand bridge is not
// made; a bridge whose uplink is missing fails alone, named, and is left
// as it was; a second run changes and journals nothing. A bridge deleted
// afterwards is made again by Reconcile, with no VM on it.
func TestEnsureHost(t *testing.T) {
	r := newRig(t, `bridges:
  br-a: {uplink: uplink0}
  br-b: {}
  br-c: {create: on_demand}
  br-d: {uplink: eth9}
sysctl: {ip_forward: 1}
`)
	r.eng.Source = events.SourceCLI
	res, err := r.eng.EnsureHost(context.Background(), OpApply)
	if err == nil || !strings.Contains(err.Error(), `making bridge "br-d"`) || !strings.Contains(err.Error(), "eth9") {
		t.Errorf("EnsureHost error = %v, want one naming bridge br-d and its missing uplink eth9", err)
	}
	want := []string{
		"change bridge-created br-a", "change uplink-enslaved uplink0",
		"change route-moved default via 10.77.0.1 metric 100", "change address-moved 10.77.0.2/24",
		"change bridge-created br-b", "change sysctl-changed net.ipv4.ip_forward",
		"change chain-created iptables-fake filter VIRTBRIDGE-FWD",
	}
	got := r.records(t)
	if len(got) < len(want) || strings.Join(got[:len(want)], "\n") != strings.Join(want, "\n") {
		t.Errorf("journaled:\n%s\nwant it to begin with:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if len(res.Changes) != len(got) {
		t.Errorf("%d changes returned, %d journaled", len(res.Changes), len(got))
	}
	if !strings.Contains(journalText(t, r), `"VIRTBRIDGE_OP":"apply"`) || !strings.Contains(journalText(t, r), `"VIRTBRIDGE_SOURCE":"cli"`) {
		t.Errorf("host changes not journaled as op apply from the CLI:\n%s", journalText(t, r))
	}
	for _, name := range []string{"br-c", "br-d"} {
		if r.links.Link(name) != nil {
			t.Errorf("%s exists after EnsureHost, want it left alone:\n%s", name, r.links)
		}
	}
	state := r.links.String()
	before := len(got)
	if res, err := r.eng.EnsureHost(context.Background(), OpApply); err == nil || len(res.Changes) != 0 || len(r.records(t)) != before || r.links.String() != state {
		t.Errorf("second EnsureHost: %d changes, err %v, links:\n%s", len(res.Changes), err, r.links)
	}

	r.links.DelLink("br-b")
	if _, err := r.eng.Reconcile(context.Background(), nil, time.Now()); err == nil {
		t.Errorf("Reconcile with br-d's uplink missing succeeded")
	}
	if got := r.records(t)[before:]; strings.Join(got, "\n") != "change bridge-created br-b" {
		t.Errorf("Reconcile after br-b was deleted journaled %q, want br-b made again", got)
	}
}

// TestEnsureHostNothingAtStart: with only on_demand bridges EnsureHost
// changes nothing, not even the sysctls.
func TestEnsureHostNothingAtStart(t *testing.T) {
	r := newRig(t, "bridges:\n  br-a: {uplink: uplink0, create: on_demand}\nsysctl: {ip_forward: 1}\n")
	if res, err := r.eng.EnsureHost(context.Background(), OpStart); err != nil || len(res.Changes) != 0 || len(r.records(t)) != 0 {
		t.Errorf("EnsureHost = %v, %v; records %q; want nothing done", res.Changes, err, r.records(t))
	}
}

// journalText returns the rig's journal file as it is.
func journalText(t *testing.T, r *rig) string {
	t.Helper()
	b, err := os.ReadFile(r.file)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
