package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netns"

	"github.com/virtbridge/virtbridge/internal/testenv/lab"
)

// labMetrics is where the lab's daemon serves metrics (daemon.metrics_listen
// ":9473" in labConfig binds localhost of the lab's hypervisor namespace).
const labMetrics = "http://127.0.0.1:9473/metrics"

// scrape GETs the daemon's /metrics from inside the lab's hypervisor
// network namespace, as Prometheus on that host would, and checks the
// text with `promtool check metrics` (names, types, help texts).
func scrape(t *testing.T, l *lab.Lab) string {
	t.Helper()
	ns, err := netns.GetFromName(l.HVNetns())
	if err != nil {
		t.Fatalf("opening the lab's network namespace: %v", err)
	}
	defer ns.Close()
	tr := &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		type res struct {
			c   net.Conn
			err error
		}
		ch := make(chan res, 1)
		go func() {
			// Never unlocked: the thread ends with the goroutine, and
			// no other goroutine runs in the lab's namespace.
			runtime.LockOSThread()
			if err := netns.Set(ns); err != nil {
				ch <- res{nil, err}
				return
			}
			var d net.Dialer
			c, err := d.DialContext(ctx, network, addr)
			ch <- res{c, err}
		}()
		r := <-ch
		return r.c, r.err
	}}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	resp, err := c.Get(labMetrics)
	if err != nil {
		t.Fatalf("scraping %s in the lab: %v", labMetrics, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("scraping %s: status %s, %v\n%s", labMetrics, resp.Status, err, body)
	}
	promtoolCheck(t, body)
	return string(body)
}

// promtoolCheck runs `promtool check metrics` (Debian's prometheus
// package, installed by scripts/deps.sh) on a scrape: it must find
// nothing to say.
func promtoolCheck(t *testing.T, body []byte) {
	t.Helper()
	cmd := exec.Command("promtool", "check", "metrics")
	cmd.Stdin = bytes.NewReader(body)
	out, err := cmd.CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Fatalf("promtool check metrics: %v\n%s\non the scrape:\n%s", err, out, body)
	}
}

// series returns the lines of a scrape that start with one of prefixes,
// in the scrape's order.
func series(scrape string, prefixes ...string) string {
	var out []string
	for _, line := range strings.Split(scrape, "\n") {
		for _, p := range prefixes {
			if strings.HasPrefix(line, p) {
				out = append(out, line)
				break
			}
		}
	}
	return strings.Join(out, "\n")
}

// portInfo is the virtbridge_port_info line of one port.
func portInfo(v vm, tap, mac, bridge string) string {
	return fmt.Sprintf(`virtbridge_port_info{domain=%q,mac=%q,source_bridge=%q,target_device=%q,uuid=%q} 1`, v.name, mac, bridge, tap, v.uuid)
}
