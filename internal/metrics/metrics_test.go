package metrics

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/virtbridge/virtbridge/internal/change"
)

// fakeState is a State for unit tests: the real one reads the mapping
// store and the kernel (tested in cmd/eventd against a real daemon).
type fakeState struct {
	ports   []Port
	bridges []Bridge
	err     error
}

func (f fakeState) Ports() ([]Port, error)     { return f.ports, f.err }
func (f fakeState) Bridges() ([]Bridge, error) { return f.bridges, nil }

func serveOnce(t *testing.T, m *Metrics) []byte {
	t.Helper()
	l, err := Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { m.Serve(ctx, l, slog.New(slog.DiscardHandler)); close(done) }()
	defer func() { cancel(); <-done }()
	resp, err := http.Get("http://" + l.Addr().String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return body
}

// TestScrape: every metric the daemon counts, and the state read at
// scrape time, in the text format; a domain name made to look like a
// metric stays a quoted label value; `promtool check metrics` is content.
func TestScrape(t *testing.T) {
	m := New()
	hostile := "evil\"} 1\nvirtbridge_fake 1 #"
	m.SetState(fakeState{
		ports: []Port{
			{Domain: "web1", UUID: "u-1", Tap: "vnet0", MAC: "52:54:00:00:00:01", Bridge: "br0"},
			{Domain: hostile, UUID: "u-2", Tap: "vnet1", MAC: "52:54:00:00:00:02", Bridge: "br0"},
		},
		bridges: []Bridge{
			{Name: "br0", Uplink: "eth1", Up: true, UplinkEnslaved: true, HostAddress: true},
			{Name: "br-iso", Up: false},
		},
	})
	m.Reconciled(nil)
	m.Reconciled(errors.New("x"))
	m.Repaired([]change.Change{{Kind: change.BridgeCreated}, {Kind: change.PortAttached}, {Kind: change.PortAttached},
		{Kind: change.RuleAdded}, {Kind: change.ForeignBridge}})
	m.Refused(ReasonPolicy)
	m.Connected(true, false)
	m.Connected(false, false)
	m.Connected(true, true)
	m.HotplugWiredAfter(30 * time.Millisecond)
	body := serveOnce(t, m)
	promtoolCheck(t, body)

	var got []string
	for _, line := range strings.Split(string(body), "\n") {
		if line != "" && !strings.HasPrefix(line, "#") && !strings.Contains(line, "_bucket") {
			got = append(got, line)
		}
	}
	want := []string{
		`virtbridge_bridge_host_address{bridge="br-iso"} 0`,
		`virtbridge_bridge_host_address{bridge="br0"} 1`,
		`virtbridge_bridge_up{bridge="br-iso"} 0`,
		`virtbridge_bridge_up{bridge="br0"} 1`,
		`virtbridge_bridge_uplink_enslaved{bridge="br0",uplink="eth1"} 1`,
		`virtbridge_hotplug_wired_seconds_sum 0.03`,
		`virtbridge_hotplug_wired_seconds_count 1`,
		`virtbridge_libvirt_connected 1`,
		`virtbridge_libvirt_reconnects_total 1`,
		`virtbridge_port_info{domain="evil\"} 1\nvirtbridge_fake 1 #",mac="52:54:00:00:00:02",source_bridge="br0",target_device="vnet1",uuid="u-2"} 1`,
		`virtbridge_port_info{domain="web1",mac="52:54:00:00:00:01",source_bridge="br0",target_device="vnet0",uuid="u-1"} 1`,
		`virtbridge_reconcile_failures_total 1`,
		`virtbridge_reconciles_total 2`,
		`virtbridge_refusals_total{reason="host"} 0`,
		`virtbridge_refusals_total{reason="policy"} 1`,
		`virtbridge_repairs_total{kind="bridge_recreated"} 1`,
		`virtbridge_repairs_total{kind="firewall_rule_restored"} 1`,
		`virtbridge_repairs_total{kind="tap_reattached"} 2`,
		`virtbridge_state_read_errors_total 0`,
	}
	if !slices.Equal(got, want) {
		t.Errorf("scrape:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	// Names lists exactly the families served.
	var families []string
	for _, line := range strings.Split(string(body), "\n") {
		if f, ok := strings.CutPrefix(line, "# TYPE "); ok {
			families = append(families, strings.Fields(f)[0])
		}
	}
	names := slices.Sorted(slices.Values(Names))
	if !slices.Equal(families, names) {
		t.Errorf("families served %v, Names %v", families, names)
	}
}

// TestScrapeStateError: a store that cannot be read is counted, and the
// rest is still served.
func TestScrapeStateError(t *testing.T) {
	m := New()
	m.SetState(fakeState{err: errors.New("corrupt"), bridges: []Bridge{{Name: "br0", Up: true}}})
	body := string(serveOnce(t, m))
	for _, want := range []string{"\nvirtbridge_state_read_errors_total 1\n", "\nvirtbridge_bridge_up{bridge=\"br0\"} 1\n"} {
		if !strings.Contains(body, want) {
			t.Errorf("scrape lacks %q:\n%s", want, body)
		}
	}
}

// TestNilMetrics: with metrics off the daemon holds a nil *Metrics.
func TestNilMetrics(t *testing.T) {
	var m *Metrics
	m.Reconciled(nil)
	m.Repaired([]change.Change{{Kind: change.BridgeCreated}})
	m.Refused(ReasonHost)
	m.Connected(true, true)
	m.HotplugWiredAfter(time.Second)
}

// promtoolCheck runs `promtool check metrics` (Debian's prometheus
// package, installed by scripts/deps.sh) on a scrape.
func promtoolCheck(t *testing.T, body []byte) {
	t.Helper()
	cmd := exec.Command("promtool", "check", "metrics")
	cmd.Stdin = bytes.NewReader(body)
	out, err := cmd.CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Fatalf("promtool check metrics: %v\n%s\non:\n%s", err, out, body)
	}
}
