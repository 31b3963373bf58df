package main

import (
	"flag"
	"fmt"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/virtbridge/virtbridge/internal/config"
	"github.com/virtbridge/virtbridge/internal/engine"
	"github.com/virtbridge/virtbridge/internal/metrics"
	"github.com/virtbridge/virtbridge/internal/store"
)

var uncached = flag.Bool("uncached", false, "BenchmarkScrape1000Ports: parse the store at every scrape")

// BenchmarkScrape1000Ports is one scrape of virtbridged's /metrics on a
// host with 1,000 VM ports in the mapping store (500 VMs with two NICs)
// and two managed bridges: the store stat'ed (parsed only when it changed:
// -uncached parses it every time), the bridges' health
// read from the kernel (missing here: the benchmark runs in the host's
// namespace and makes no links), the text rendered.
func BenchmarkScrape1000Ports(b *testing.B) {
	dir := b.TempDir()
	s := store.New(filepath.Join(dir, "ports.json"))
	for i := range 1000 {
		vm := i / 2
		_, _, err := s.Attach(store.Entry{UUID: fmt.Sprintf("0000%04d-0000-4000-8000-000000000000", vm), VM: fmt.Sprintf("vm%d", vm),
			MAC: fmt.Sprintf("52:54:00:00:%02x:%02x", i/256, i%256), Tap: fmt.Sprintf("vnet%d", i),
			Bridge: fmt.Sprintf("vbmbr%d", i%2), Since: time.Unix(1_800_000_000, 0)})
		if err != nil {
			b.Fatal(err)
		}
	}
	if err := s.Save(); err != nil {
		b.Fatal(err)
	}
	cfg, err := config.Parse("c.yaml", []byte("bridges:\n  vbmbr0: {uplink: vbmup0}\n  vbmbr1: {}\n"))
	if err != nil {
		b.Fatal(err)
	}
	h := handler{eng: &engine.Engine{Config: cfg, StorePath: s.Path()}, cfg: new(atomic.Pointer[config.Config]), ports: &portsCache{}}
	h.cfg.Store(cfg)
	m := metrics.New()
	m.SetState(h)
	srv := promhttp.HandlerFor(m.Registry(), promhttp.HandlerOpts{})
	var size int
	b.ReportAllocs()
	for b.Loop() {
		if *uncached {
			h.ports.ino = 0
		}
		w := httptest.NewRecorder()
		srv.ServeHTTP(w, httptest.NewRequest("GET", "/metrics", nil))
		if n := strings.Count(w.Body.String(), "virtbridge_port_info{"); n != 1000 {
			b.Fatalf("%d ports in the scrape, want 1000", n)
		}
		size = w.Body.Len()
	}
	b.ReportMetric(float64(size), "bytes/scrape")
}

// TestPortsFollowStore: the ports a scrape reads follow every save of the
// mapping store (by the hook or the daemon), though parsed only once per
// version.
func TestPortsFollowStore(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ports.json")
	h := handler{eng: &engine.Engine{StorePath: path}, ports: &portsCache{}}
	ports := func() string {
		t.Helper()
		ps, err := h.Ports()
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, p := range ps {
			out = append(out, p.Domain+"/"+p.Tap)
		}
		return strings.Join(out, " ")
	}
	if got := ports(); got != "" {
		t.Fatalf("no store: ports %q", got)
	}
	for i, want := range []string{"vm0/vnet0", "vm0/vnet0 vm1/vnet1", "vm0/vnet0 vm1/vnet1 vm2/vnet2"} {
		s, err := store.Load(path)
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := s.Attach(store.Entry{UUID: fmt.Sprintf("u%d", i), VM: fmt.Sprintf("vm%d", i), MAC: fmt.Sprintf("52:54:00:00:00:0%d", i),
			Tap: fmt.Sprintf("vnet%d", i), Bridge: "br0", Since: time.Unix(1_800_000_000, 0)}); err != nil {
			t.Fatal(err)
		}
		if err := s.Save(); err != nil {
			t.Fatal(err)
		}
		if got := ports(); got != want {
			t.Errorf("after save %d: ports %q, want %q", i+1, got, want)
		}
		if got := ports(); got != want {
			t.Errorf("again after save %d: ports %q, want %q", i+1, got, want)
		}
	}
}
