package engine

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/virtbridge/virtbridge/internal/apply"
	"github.com/virtbridge/virtbridge/internal/config"
	"github.com/virtbridge/virtbridge/internal/events"
	"github.com/virtbridge/virtbridge/internal/firewall"
	"github.com/virtbridge/virtbridge/internal/journal"
	"github.com/virtbridge/virtbridge/internal/links"
	"github.com/virtbridge/virtbridge/internal/sysctl"
)

// rig is an engine over fake backends, with the journal written to its
// JSON-lines file (no journald socket at the path given).
type rig struct {
	eng   *Engine
	links *links.Fake
	// lookups counts LinkKind calls.
	lookups int
	sys     *sysctl.Fake
	fw      *firewall.Fake
	file    string
}

func newRig(t *testing.T, cfgYAML string) *rig {
	t.Helper()
	cfg, err := config.Parse("test.yaml", []byte(cfgYAML))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	r := &rig{links: links.NewFake(), sys: sysctl.NewFake(map[string]string{
		"net.ipv4.ip_forward": "0", "net.bridge.bridge-nf-call-iptables": "1",
	}), fw: firewall.NewFake(), file: filepath.Join(dir, "journal.jsonl")}
	r.links.AddLink("uplink0", "veth", "52:54:00:00:00:99", "", "10.77.0.2/24")
	r.links.AddRoute("uplink0", "default via 10.77.0.1 metric 100")
	r.eng = &Engine{
		Config:    cfg,
		Journal:   journal.New(journal.Options{Socket: filepath.Join(dir, "no-journald"), File: r.file, Stderr: &strings.Builder{}}),
		StorePath: filepath.Join(dir, "ports.json"),
		LockPath:  filepath.Join(dir, "lock"),
		LockWait:  time.Second,
		OpenHost: func() (*apply.Host, func(), error) {
			return &apply.Host{Links: r.links, Sysctls: r.sys, Firewall: r.fw}, func() {}, nil
		},
		LinkKind: func(name string) (string, error) {
			r.lookups++
			if l := r.links.Link(name); l != nil {
				return l.Kind, nil
			}
			return "", nil
		},
	}
	return r
}

// records returns the journal records written so far, as
// "MESSAGE_KIND TAP VM" lines (host changes as "change KIND OBJECT").
func (r *rig) records(t *testing.T) []string {
	t.Helper()
	f, err := os.Open(r.file)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var m map[string]string
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("bad journal line %q: %v", sc.Text(), err)
		}
		switch m["MESSAGE_ID"] {
		case journal.IDAttached:
			out = append(out, "attached "+m["VIRTBRIDGE_TAP"]+" "+m["VIRTBRIDGE_VM"]+" "+m["VIRTBRIDGE_BRIDGE"]+" "+m["VIRTBRIDGE_OP"])
		case journal.IDDetached:
			out = append(out, "detached "+m["VIRTBRIDGE_TAP"]+" "+m["VIRTBRIDGE_VM"]+" "+m["VIRTBRIDGE_OP"])
		case journal.IDRefused:
			out = append(out, "refused "+m["VIRTBRIDGE_VM"])
		case journal.IDHostChange:
			out = append(out, "change "+m["VIRTBRIDGE_CHANGE"]+" "+m["VIRTBRIDGE_OBJECT"])
		}
	}
	return out
}

const rigConfig = "bridges:\n  br-a: {uplink: uplink0}\n  br-b: {}\nsysctl: {ip_forward: 1}\n"

func event(op events.Op, taps ...string) events.Event {
	ev := events.Event{Source: events.SourceHook, Op: op, Domain: "web01", UUID: "00000000-0000-0000-0000-0000000000a1",
		NICs: []events.NIC{
			{MAC: "52:54:00:aa:02:01", Type: "bridge", Bridge: "br-a"},
			{MAC: "52:54:00:aa:02:02", Type: "bridge", Bridge: "br-b"},
		}}
	for i, tap := range taps {
		ev.NICs[i].Tap = tap
	}
	return ev
}

func TestLifecycleRecordsEveryPortOnce(t *testing.T) {
	r := newRig(t, rigConfig)
	steps := []struct {
		ev   events.Event
		want []string
	}{
		{event(events.OpPrepare), []string{
			"change bridge-created br-a", "change uplink-enslaved uplink0",
			"change route-moved default via 10.77.0.1 metric 100", "change address-moved 10.77.0.2/24",
			"change bridge-created br-b", "change sysctl-changed net.ipv4.ip_forward",
			"change chain-created iptables-fake filter VIRTBRIDGE-FWD",
			"change rule-added iptables-fake filter VIRTBRIDGE-FWD", "change rule-added iptables-fake filter VIRTBRIDGE-FWD",
			"change rule-added iptables-fake filter FORWARD",
			"change chain-created ip6tables-fake filter VIRTBRIDGE-FWD",
			"change rule-added ip6tables-fake filter VIRTBRIDGE-FWD", "change rule-added ip6tables-fake filter VIRTBRIDGE-FWD",
			"change rule-added ip6tables-fake filter FORWARD"}},
		{event(events.OpPrepare), nil}, // idempotent
		{event(events.OpStart, "vnet0", "vnet1"), nil},
		{event(events.OpStarted, "vnet0", "vnet1"), []string{
			"change alias-set vnet0", "change alias-set vnet1",
			"attached vnet0 web01 br-a started", "attached vnet1 web01 br-b started"}},
		{event(events.OpStarted, "vnet0", "vnet1"), nil}, // idempotent
		{event(events.OpStopped), []string{"detached vnet0 web01 stopped", "detached vnet1 web01 stopped"}},
		{event(events.OpRelease), nil},
	}
	// libvirt creates the taps in their bridges.
	r.links.AddLink("vnet0", "tuntap", "fe:54:00:aa:02:01", "br-a")
	r.links.AddLink("vnet1", "tuntap", "fe:54:00:aa:02:02", "br-b")
	seen := 0
	for i, s := range steps {
		res, err := r.eng.Handle(context.Background(), s.ev)
		if err != nil || len(res.Warnings) > 0 {
			t.Fatalf("step %d (%s): err %v warnings %v", i, s.ev.Op, err, res.Warnings)
		}
		all := r.records(t)
		got := all[seen:]
		seen = len(all)
		if !equalKinds(got, s.want) {
			t.Fatalf("step %d (%s) journaled:\n%s\nwant:\n%s", i, s.ev.Op, strings.Join(got, "\n"), strings.Join(s.want, "\n"))
		}
	}
	if got := r.links.Link("vnet0"); got.Master != "br-a" || !strings.HasPrefix(got.Alias, "vm:web01 uuid:") {
		t.Fatalf("vnet0 = %+v", got)
	}
	if fw := r.fw.String(); !strings.Contains(fw, "-i br-a -o br-a") || !strings.Contains(fw, "-i br-b -o br-b") {
		t.Fatalf("firewall:\n%s", fw)
	}
}

// equalKinds compares records by prefix, so objects can carry details.
func equalKinds(got, want []string) bool {
	if len(got) != len(want) {
		return false
	}
	for i := range got {
		if !strings.HasPrefix(got[i], want[i]) {
			return false
		}
	}
	return true
}

func TestFailureRevertsAndIsJournaled(t *testing.T) {
	r := newRig(t, rigConfig)
	before := r.links.String()
	r.links.FailOn("route-add")
	_, err := r.eng.Handle(context.Background(), event(events.OpPrepare))
	var he *HostError
	if !errors.As(err, &he) || !errors.Is(err, links.ErrInjected) {
		t.Fatalf("Handle = %v, want a HostError wrapping the injected failure", err)
	}
	if after := r.links.String(); after != before {
		t.Fatalf("links not reverted:\n--- before\n%s--- after\n%s", before, after)
	}
	if got := r.records(t); len(got) == 0 || got[len(got)-1] != "refused web01" {
		t.Fatalf("journal = %q, want a refusal last", got)
	}
}

func TestUnmanagedRefusedWithoutTouchingTheHost(t *testing.T) {
	r := newRig(t, "bridges: {br-a: {uplink: uplink0}}\nunmanaged_bridges: refuse\n")
	before := r.links.String()
	_, err := r.eng.Handle(context.Background(), event(events.OpPrepare))
	if err == nil || !strings.Contains(err.Error(), `uses bridge "br-b", which virtbridge does not manage`) {
		t.Fatalf("Handle = %v", err)
	}
	if r.links.String() != before {
		t.Fatal("a refused VM changed the links")
	}
	if got := r.records(t); len(got) != 1 || got[0] != "refused web01" {
		t.Fatalf("journal = %q", got)
	}
}

func TestUnplugDetachesOnlyTheGoneNIC(t *testing.T) {
	r := newRig(t, rigConfig)
	r.links.AddLink("vnet0", "tuntap", "fe:54:00:aa:02:01", "")
	r.links.AddLink("vnet1", "tuntap", "fe:54:00:aa:02:02", "")
	if _, err := r.eng.Handle(context.Background(), event(events.OpStarted, "vnet0", "vnet1")); err != nil {
		t.Fatal(err)
	}
	ev := event(events.OpDeviceRemoved, "vnet0")
	ev.Source = events.SourceEventd
	ev.NICs = ev.NICs[:1] // net1 (vnet1) left the live XML
	if _, err := r.eng.Handle(context.Background(), ev); err != nil {
		t.Fatal(err)
	}
	got := r.records(t)
	if last := got[len(got)-1]; last != "detached vnet1 web01 device-removed" {
		t.Fatalf("last record %q", last)
	}
}

func TestNoManagedNICIsANoOp(t *testing.T) {
	r := newRig(t, rigConfig)
	ev := events.Event{Source: events.SourceHook, Op: events.OpRelease, Domain: "x", UUID: "u",
		NICs: []events.NIC{{MAC: "52:54:00:00:00:01", Type: "user"}}}
	if _, err := r.eng.Handle(context.Background(), ev); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(r.eng.LockPath); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a no-op event took the host lock (lock file: %v)", err)
	}
}

// A VM restarted while nobody recorded its stop: its NIC's old tap gets one
// detach record, the new tap one attach record.
func TestNewTapWithoutStopDetachesOldTapOnce(t *testing.T) {
	r := newRig(t, rigConfig)
	for _, tap := range []string{"vnet0", "vnet1", "vnet5", "vnet6"} {
		onA := tap == "vnet0" || tap == "vnet5"
		br := map[bool]string{true: "br-a", false: "br-b"}[onA]
		// Both boots' taps of a NIC carry the MAC libvirt gives its tap.
		mac := map[bool]string{true: "fe:54:00:aa:02:01", false: "fe:54:00:aa:02:02"}[onA]
		r.links.AddLink(tap, "tuntap", mac, br)
	}
	if _, err := r.eng.Handle(context.Background(), event(events.OpPrepare)); err != nil {
		t.Fatal(err)
	}
	if _, err := r.eng.Handle(context.Background(), event(events.OpStarted, "vnet0", "vnet1")); err != nil {
		t.Fatal(err)
	}
	before := len(r.records(t))
	if res, err := r.eng.Handle(context.Background(), event(events.OpStarted, "vnet5", "vnet6")); err != nil || len(res.Warnings) > 0 {
		t.Fatal(err, res.Warnings)
	}
	var got []string
	for _, rec := range r.records(t)[before:] {
		if !strings.HasPrefix(rec, "change") {
			got = append(got, rec)
		}
	}
	want := []string{"detached vnet0 web01 started", "attached vnet5 web01 br-a started",
		"detached vnet1 web01 started", "attached vnet6 web01 br-b started"}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("records:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// A running VM whose tap vanished (it is being destroyed) is a warning for
// the reconcile pass, not a failure that would make the daemon retry.
func TestReconcileToleratesAVanishingTap(t *testing.T) {
	r := newRig(t, rigConfig)
	r.links.AddLink("vnet0", "tuntap", "fe:54:00:aa:02:01", "")
	res, err := r.eng.Reconcile(context.Background(), []events.Event{event(events.OpReconnect, "vnet0", "vnet9")}, time.Now())
	if err != nil {
		t.Fatalf("Reconcile = %v, want only a warning", err)
	}
	if len(res.Warnings) != 1 || !errors.Is(res.Warnings[0], links.ErrTapMissing) {
		t.Fatalf("warnings = %v", res.Warnings)
	}
}

// TestNonBridgeLinkAsBridgeRefused: at the ops that make the host ready, a
// NIC whose unmanaged bridge is a host link of another kind (the host's
// NIC, a veth) is refused, with one read-only lookup per unmanaged bridge
// and none at all when every NIC is managed.
func TestNonBridgeLinkAsBridgeRefused(t *testing.T) {
	r := newRig(t, rigConfig)
	r.links.AddLink("eth0", "device", "52:54:00:00:00:01", "", "192.0.2.2/24")
	r.links.AddLink("virbr0", "bridge", "52:54:00:00:00:02", "")
	before := r.links.String()
	nic := func(mac, bridge string) events.NIC { return events.NIC{MAC: mac, Type: "bridge", Bridge: bridge} }
	for _, tc := range []struct {
		name    string
		nics    []events.NIC
		want    string // "" for no refusal
		lookups int
	}{
		{"the host's NIC", []events.NIC{nic("52:54:00:aa:03:01", "eth0"), nic("52:54:00:aa:03:02", "eth0")},
			`NIC 52:54:00:aa:03:01 names "eth0" as its bridge, but eth0 is a network interface (NIC) on this host, not a bridge`, 1},
		{"a veth", []events.NIC{nic("52:54:00:aa:03:03", "br-a"), nic("52:54:00:aa:03:04", "uplink1")}, "", 1},
		{"an unmanaged bridge", []events.NIC{nic("52:54:00:aa:03:05", "virbr0")}, "", 1},
		{"no such link", []events.NIC{nic("52:54:00:aa:03:06", "br-nowhere")}, "", 1},
		{"managed only", []events.NIC{nic("52:54:00:aa:03:07", "br-a")}, "", 0},
	} {
		if tc.name == "a veth" {
			r.links.AddLink("uplink1", "veth", "52:54:00:00:00:03", "")
			tc.want = `NIC 52:54:00:aa:03:04 names "uplink1" as its bridge, but uplink1 is a veth link on this host, not a bridge`
			before = r.links.String()
		}
		r.lookups = 0
		ev := events.Event{Source: events.SourceHook, Op: events.OpPrepare, Domain: "web02", UUID: "u-2", NICs: tc.nics}
		_, err := r.eng.Handle(context.Background(), ev)
		var re *PolicyError
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: Handle = %v, want no refusal", tc.name, err)
		case tc.want != "" && (!errors.As(err, &re) || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%s: Handle = %v, want a refusal %q", tc.name, err, tc.want)
		case tc.want != "" && r.links.String() != before:
			t.Errorf("%s: the refused VM changed the links", tc.name)
		}
		if r.lookups != tc.lookups {
			t.Errorf("%s: %d link lookups, want %d", tc.name, r.lookups, tc.lookups)
		}
	}
	// Where the host is not made ready (started, stopped) nothing is looked up.
	r.lookups = 0
	ev := events.Event{Source: events.SourceHook, Op: events.OpStarted, Domain: "web02", UUID: "u-2",
		NICs: []events.NIC{nic("52:54:00:aa:03:01", "eth0")}}
	if _, err := r.eng.Handle(context.Background(), ev); err != nil || r.lookups != 0 {
		t.Errorf("started: err %v, %d lookups", err, r.lookups)
	}
}

// A VM that started after the daemon read the running domains (a boot
// storm) is missing from the list but not gone: Reconcile leaves its ports
// alone. A pass listed after it started detaches them.
func TestReconcileJudgesOnlyWhatTheListKnew(t *testing.T) {
	// on_demand: Reconcile makes no bridge of its own, only records count.
	r := newRig(t, "bridges:\n  br-a: {uplink: uplink0, create: on_demand}\n  br-b: {create: on_demand}\nsysctl: {ip_forward: 1}\n")
	r.links.AddLink("vnet0", "tuntap", "fe:54:00:aa:02:01", "")
	r.links.AddLink("vnet1", "tuntap", "fe:54:00:aa:02:02", "")
	listed := time.Now()
	if _, err := r.eng.Handle(context.Background(), event(events.OpStarted, "vnet0", "vnet1")); err != nil {
		t.Fatal(err)
	}
	before := len(r.records(t))
	if _, err := r.eng.Reconcile(context.Background(), nil, listed); err != nil {
		t.Fatal(err)
	}
	if got := r.records(t)[before:]; len(got) > 0 {
		t.Fatalf("a list read before the VM started detached it: %q", got)
	}
	if _, err := r.eng.Reconcile(context.Background(), nil, time.Now()); err != nil {
		t.Fatal(err)
	}
	want := []string{"detached vnet0 web01 reconcile", "detached vnet1 web01 reconcile"}
	if got := r.records(t)[before:]; strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("records:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// A started event the daemon read just before the VM was destroyed is
// handled after the stopped call detached the VM: its taps are gone, and
// it must not attach the VM again.
func TestLateStartedEventAttachesNothing(t *testing.T) {
	r := newRig(t, rigConfig)
	r.links.AddLink("vnet0", "tuntap", "fe:54:00:aa:02:01", "br-a")
	r.links.AddLink("vnet1", "tuntap", "fe:54:00:aa:02:02", "br-b")
	for _, ev := range []events.Event{event(events.OpPrepare), event(events.OpStarted, "vnet0", "vnet1"), event(events.OpStopped)} {
		if _, err := r.eng.Handle(context.Background(), ev); err != nil {
			t.Fatal(err)
		}
	}
	before := len(r.records(t))
	late := event(events.OpStarted, "vnet7", "vnet8") // taps libvirt has deleted
	late.Source = events.SourceEventd
	res, err := r.eng.Handle(context.Background(), late)
	if err != nil || len(res.Warnings) == 0 || !errors.Is(res.Warnings[0], links.ErrTapMissing) {
		t.Fatalf("late started event: err %v warnings %v, want a missing-tap warning", err, res.Warnings)
	}
	for _, rec := range r.records(t)[before:] {
		if strings.HasPrefix(rec, "attached") {
			t.Errorf("a started event read before the VM stopped attached it again: %s", rec)
		}
	}
	if r.eng.storeHolds(late.UUID) {
		t.Error("the stopped VM is back in the mapping store")
	}
}

// TestTargetDevNamingAHostLinkRefused: before libvirt makes the taps
// (prepare, migrate, restore), a NIC on a managed bridge whose <target dev>
// names an existing link (the host's NIC, a container's veth, a VPN's tap)
// is refused before anything changes: libvirt would not start the VM on it,
// and it is never this VM's tap. A free name is fine (libvirt makes the
// tap later) and is neither touched nor recorded then. Once the taps exist
// (reconnect), the links backend refuses what is no tap of this NIC.
func TestTargetDevNamingAHostLinkRefused(t *testing.T) {
	r := newRig(t, rigConfig)
	r.links.AddLink("eth0", "device", "52:54:00:00:00:01", "", "192.0.2.2/24")
	r.links.AddLink("ctr0", "veth", "52:54:00:00:00:02", "docker0")
	r.links.AddLink("tap0", "tuntap", "52:54:00:00:00:03", "")
	before := r.links.String()
	for _, tc := range []struct {
		op   events.Op
		tap  string
		want string
	}{
		{events.OpPrepare, "eth0", `NIC 52:54:00:aa:02:01 names <target dev='eth0'/>, but eth0 already exists on this host (a network interface (NIC))`},
		{events.OpMigrate, "ctr0", `but ctr0 already exists on this host (a veth link)`},
		{events.OpRestore, "tap0", `but tap0 already exists on this host (a tuntap link)`},
		{events.OpReconnect, "eth0", `tap "eth0" of NIC 52:54:00:aa:02:01 on bridge "br-a": eth0 is a network interface (NIC), not a tun/tap device in tap mode`},
		{events.OpReconnect, "tap0", `tap "tap0" of NIC 52:54:00:aa:02:01 on bridge "br-a" has MAC 52:54:00:00:00:03, but libvirt gives this NIC's tap the MAC fe:54:00:aa:02:01`},
	} {
		_, err := r.eng.Handle(context.Background(), event(tc.op, tc.tap))
		if !strings.Contains(fmt.Sprint(err), tc.want) {
			t.Errorf("%s with tap %s: Handle = %v, want a refusal %q", tc.op, tc.tap, err, tc.want)
		}
		if tc.op.BeforeTaps() && r.links.String() != before {
			t.Errorf("%s with tap %s: the refused VM changed the links:\n%s", tc.op, tc.tap, r.links.String())
		}
		if tc.op == events.OpReconnect && !errors.Is(err, links.ErrNotTap) {
			t.Errorf("%s with tap %s: Handle = %v, want ErrNotTap", tc.op, tc.tap, err)
		}
		for _, l := range []string{"eth0", "ctr0", "tap0"} {
			if link := r.links.Link(l); (link.Master != "" && link.Master != "docker0") || link.Alias != "" {
				t.Fatalf("%s with tap %s: %s was touched: %+v", tc.op, tc.tap, l, link)
			}
		}
	}
	if recs := r.records(t); slices.ContainsFunc(recs, func(s string) bool { return strings.HasPrefix(s, "attached") }) {
		t.Errorf("a refused NIC was recorded: %q", recs)
	}
	// A free name at prepare: the host is made ready, the tap is neither
	// looked for nor recorded (libvirt makes it after prepare).
	if res, err := r.eng.Handle(context.Background(), event(events.OpPrepare, "vbtest0")); err != nil || len(res.Warnings) > 0 {
		t.Fatalf("prepare with a free <target dev>: %v %v", err, res.Warnings)
	}
	if r.links.Link("br-a") == nil {
		t.Error("prepare with a free <target dev> did not make br-a")
	}
	if r.links.Link("vbtest0") != nil || r.eng.storeHolds(event(events.OpPrepare).UUID) {
		t.Error("prepare with a free <target dev> made or recorded the tap libvirt has not made yet")
	}
	if recs := r.records(t); slices.ContainsFunc(recs, func(s string) bool { return strings.HasPrefix(s, "attached") }) {
		t.Errorf("prepare with a free <target dev> journaled an attach: %q", recs)
	}
}

// TestStartedRecordsOnlyTheVMsOwnTaps: at started each port is checked on
// its own; a port whose link is not the NIC's tap (another VM's, a
// program's, the host's) gets a warning and is not recorded, while the
// VM's real taps are.
func TestStartedRecordsOnlyTheVMsOwnTaps(t *testing.T) {
	r := newRig(t, rigConfig)
	r.links.AddLink("vnet0", "tuntap", "fe:54:00:aa:02:01", "br-a")
	r.links.AddLink("vnet1", "tuntap", "fe:54:00:bb:00:07", "br-b") // another VM's tap
	if _, err := r.eng.Handle(context.Background(), event(events.OpPrepare)); err != nil {
		t.Fatal(err)
	}
	before := len(r.records(t))
	res, err := r.eng.Handle(context.Background(), event(events.OpStarted, "vnet0", "vnet1"))
	if err != nil || len(res.Warnings) == 0 || !errors.Is(res.Warnings[0], links.ErrNotTap) {
		t.Fatalf("started: err %v warnings %v, want a not-its-tap warning", err, res.Warnings)
	}
	var attached []string
	for _, rec := range r.records(t)[before:] {
		if strings.HasPrefix(rec, "attached") {
			attached = append(attached, rec)
		}
	}
	if len(attached) != 1 || !strings.Contains(attached[0], "vnet0") {
		t.Fatalf("attach records %q, want vnet0's alone", attached)
	}
}

// TestForeignBridgeChangeIsAWarning: a prepare that changes a bridge
// someone else made (no "managed by virtbridge" alias) warns with what it
// changed and the bridge's other ports, and journals the notice; a bridge
// the engine creates, and the next prepare, warn about nothing.
func TestForeignBridgeChangeIsAWarning(t *testing.T) {
	r := newRig(t, rigConfig)
	r.links.AddLink("br-a", "bridge", "02:00:00:00:00:77", "").STP = true
	r.links.AddLink("veth7", "veth", "02:00:00:00:00:78", "br-a")
	res, err := r.eng.Handle(context.Background(), event(events.OpPrepare))
	if err != nil {
		t.Fatal(err)
	}
	var ws []string
	for _, w := range res.Warnings {
		ws = append(ws, w.Error())
	}
	if len(ws) != 1 || !strings.HasPrefix(ws[0], `bridge "br-a" was made by someone else`) ||
		!strings.Contains(ws[0], "stp on -> stp off") || !strings.Contains(ws[0], "its ports veth7 (veth) are neither") {
		t.Errorf("warnings = %q, want one about br-a, its STP and veth7", ws)
	}
	if got := r.records(t); !slices.Contains(got, "change foreign-bridge-changed br-a") {
		t.Errorf("journal = %q, want the notice recorded", got)
	}
	if res, err := r.eng.Handle(context.Background(), event(events.OpPrepare)); err != nil || len(res.Warnings) != 0 {
		t.Errorf("second prepare: warnings %v, error %v; want none", res.Warnings, err)
	}
}

// TestStartedJournalsTheOtherPortsChanges: at started a port that fails
// does not hide the changes made for the VM's other ports: they are in the
// result and journaled, like those of a start where every port is right.
func TestStartedJournalsTheOtherPortsChanges(t *testing.T) {
	r := newRig(t, rigConfig)
	r.links.AddLink("vnet0", "tuntap", "fe:54:00:aa:02:01", "br-a")
	r.links.AddLink("vnet1", "tuntap", "fe:54:00:bb:00:07", "br-b") // another VM's tap
	if _, err := r.eng.Handle(context.Background(), event(events.OpPrepare)); err != nil {
		t.Fatal(err)
	}
	before := len(r.records(t))
	res, err := r.eng.Handle(context.Background(), event(events.OpStarted, "vnet0", "vnet1"))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, c := range res.Changes {
		got = append(got, string(c.Kind)+" "+c.Object)
	}
	if want := []string{"alias-set vnet0"}; !slices.Equal(got, want) {
		t.Errorf("Result.Changes = %q, want %q", got, want)
	}
	want := []string{"change alias-set vnet0", "refused web01", "attached vnet0 web01 br-a started"}
	if got := r.records(t)[before:]; !equalKinds(got, want) {
		t.Errorf("journaled:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// TestCheckFirewallRestoresSysctls: the daemon's periodic check sets a
// configured sysctl back when it was changed behind virtbridge's back —
// bridge-nf-call-iptables back to 0 as after br_netfilter was loaded
// later — and journals it; a second check changes nothing; while
// br_netfilter is not loaded there is nothing to hold and no error.
func TestCheckFirewallRestoresSysctls(t *testing.T) {
	r := newRig(t, "bridges:\n  br-a: {uplink: uplink0}\nsysctl: {ip_forward: 1, bridge_nf_call_iptables: 0}\nfirewall: {bridged_forward: leave}\n")
	ctx := context.Background()
	if _, err := r.eng.CheckFirewall(ctx); err != nil {
		t.Fatal(err)
	}
	if got := r.sys.String(); !strings.Contains(got, "net.bridge.bridge-nf-call-iptables = 0") || !strings.Contains(got, "net.ipv4.ip_forward = 1") {
		t.Fatalf("after the check:\n%s", got)
	}
	r.sys.Values["net.bridge.bridge-nf-call-iptables"] = "1" // br_netfilter loaded again, say
	if _, err := r.eng.CheckFirewall(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := r.eng.CheckFirewall(ctx); err != nil {
		t.Fatal(err)
	}
	if v := r.sys.Values["net.bridge.bridge-nf-call-iptables"]; v != "0" {
		t.Errorf("bridge-nf-call-iptables %s after the check, want 0", v)
	}
	want := []string{"change sysctl-changed net.ipv4.ip_forward", "change sysctl-changed net.bridge.bridge-nf-call-iptables",
		"change sysctl-changed net.bridge.bridge-nf-call-iptables"}
	if got := r.records(t); !slices.Equal(got, want) {
		t.Errorf("journal:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	r.sys = sysctl.NewFake(map[string]string{"net.ipv4.ip_forward": "1"}) // no br_netfilter
	if _, err := r.eng.CheckFirewall(ctx); err != nil {
		t.Errorf("without br_netfilter: %v", err)
	}
}
