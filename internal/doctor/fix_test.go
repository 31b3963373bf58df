package doctor

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/virtbridge/virtbridge/internal/apply"
	"github.com/virtbridge/virtbridge/internal/engine"
	"github.com/virtbridge/virtbridge/internal/events"
	"github.com/virtbridge/virtbridge/internal/firewall"
	"github.com/virtbridge/virtbridge/internal/journal"
	"github.com/virtbridge/virtbridge/internal/links"
	"github.com/virtbridge/virtbridge/internal/store"
	"github.com/virtbridge/virtbridge/internal/sysctl"
)

// fixRig is the real engine over the backends' fakes, journaling to a
// file.
type fixRig struct {
	eng   *engine.Engine
	links *links.Fake
	dir   string
}

func newFixRig(t *testing.T, y string) *fixRig {
	t.Helper()
	dir := t.TempDir()
	r := &fixRig{links: links.NewFake(), dir: dir}
	r.links.AddLink("uplink0", "veth", "52:54:00:00:00:99", "", "10.77.0.2/24")
	sys := sysctl.NewFake(map[string]string{ipForward: "0", nfCallIPTables: "1", nfCallIP6Tables: "1"})
	fw := firewall.NewFake()
	r.eng = &engine.Engine{
		Source:    events.SourceCLI, // as cmd/virtbridge's
		Config:    mustConfig(t, y),
		Journal:   journal.New(journal.Options{Socket: filepath.Join(dir, "no-journald"), File: filepath.Join(dir, "journal.jsonl"), Stderr: &strings.Builder{}}),
		StorePath: filepath.Join(dir, "ports.json"), LockPath: filepath.Join(dir, "lock"), LockWait: time.Second,
		OpenHost: func() (*apply.Host, func(), error) {
			return &apply.Host{Links: r.links, Sysctls: sys, Firewall: fw}, func() {}, nil
		},
	}
	return r
}

func kinds(res FixResult) []string {
	var out []string
	for _, c := range res.Changes {
		out = append(out, string(c.Kind)+" "+c.Object)
	}
	return out
}

// TestFixBridges: Fix makes every managed bridge right as a prepare would,
// journals it, keeps going past a bridge it cannot fix, leaves the store
// alone, and changes nothing the second time.
func TestFixBridges(t *testing.T) {
	r := newFixRig(t, "bridges:\n  br-a: {uplink: uplink0}\n  br-b: {uplink: eth9}\nsysctl: {ip_forward: 1}\n")
	res := Fix(context.Background(), r.eng, r.eng.Config, nil, nil, time.Now())
	got := kinds(res)
	for _, w := range []string{"bridge-created br-a", "uplink-enslaved uplink0", "address-moved 10.77.0.2/24",
		"sysctl-changed net.ipv4.ip_forward", "rule-added iptables-fake filter FORWARD"} {
		if !slices.Contains(got, w) {
			t.Errorf("no %q among the changes %q", w, got)
		}
	}
	if len(res.Errors) != 1 || !strings.Contains(res.Errors[0], `bridge "br-b"`) || !strings.Contains(res.Errors[0], "eth9") {
		t.Errorf("errors %q, want one naming br-b's missing uplink eth9", res.Errors)
	}
	j, err := os.ReadFile(filepath.Join(r.dir, "journal.jsonl"))
	if err != nil || !strings.Contains(string(j), journal.IDHostChange) || !strings.Contains(string(j), `"VIRTBRIDGE_SOURCE":"cli"`) {
		t.Errorf("host changes not journaled as the CLI's (%v):\n%s", err, j)
	}
	s, err := store.Read(r.eng.StorePath)
	if err != nil || len(s.All()) != 0 {
		t.Errorf("store after fixing bridges: %v, %v; want empty", s.All(), err)
	}
	again := Fix(context.Background(), r.eng, r.eng.Config, nil, nil, time.Now())
	if len(again.Changes) != 0 || len(again.Errors) != 1 {
		t.Errorf("second fix: changes %q errors %q; want none and br-b's again", kinds(again), again.Errors)
	}
}

// TestFixRunning: with libvirt's running VMs, Fix also reconciles: a tap
// out of its bridge goes back in and the mapping is recorded.
func TestFixRunning(t *testing.T) {
	r := newFixRig(t, "bridges: {br0: {uplink: uplink0}}\n")
	r.links.AddLink("vnet3", "tuntap", "fe:54:00:00:00:07", "")
	ev, err := events.FromDomainXML(events.SourceEventd, events.OpReconcile, []byte(domainFile(t, "running", true).XML))
	if err != nil {
		t.Fatal(err)
	}
	res := Fix(context.Background(), r.eng, r.eng.Config, nil, []events.Event{ev}, time.Now())
	if len(res.Errors) != 0 || !slices.Contains(kinds(res), "port-attached vnet3") {
		t.Fatalf("changes %q errors %q; want vnet3 attached", kinds(res), res.Errors)
	}
	s, err := store.Read(r.eng.StorePath)
	if err != nil {
		t.Fatal(err)
	}
	if e, ok := s.ByTap("vnet3"); !ok || e.VM != "running" || e.Bridge != "br0" {
		t.Errorf("store: %+v, %v; want vnet3 of running on br0", e, ok)
	}
}

// TestFixOnDemand: Fix leaves a missing create: on_demand bridge for the
// first VM on it, as the configuration asks, but makes an existing one
// right (its forward delay here), like the at_start ones.
func TestFixOnDemand(t *testing.T) {
	r := newFixRig(t, "bridges:\n  br-a: {uplink: uplink0}\n  br-b: {create: on_demand}\n  br-c: {create: on_demand}\n")
	r.links.AddLink("br-c", "bridge", "52:54:00:00:00:c0", "")
	exists := func(name string) bool { return r.links.Link(name) != nil }
	res := Fix(context.Background(), r.eng, r.eng.Config, exists, nil, time.Now())
	got := kinds(res)
	// br-c was made by hand: changing it is said, as a warning.
	foreign := len(res.Errors) == 1 && strings.HasPrefix(res.Errors[0], `bridge br-c: warning: bridge "br-c" was made by someone else`)
	if !foreign || !slices.Contains(got, "bridge-created br-a") || !slices.Contains(got, "bridge-updated br-c") {
		t.Errorf("changes %q errors %q; want br-a created and br-c made right, with a warning that br-c was made by someone else", got, res.Errors)
	}
	if r.links.Link("br-b") != nil {
		t.Errorf("Fix made br-b, which is create: on_demand and used by no VM:\n%s", r.links)
	}
	if again := Fix(context.Background(), r.eng, r.eng.Config, exists, nil, time.Now()); len(again.Changes) != 0 || len(again.Errors) != 0 {
		t.Errorf("second fix: changes %q errors %q; want none", kinds(again), again.Errors)
	}
}
