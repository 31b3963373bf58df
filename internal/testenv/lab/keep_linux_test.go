package lab_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/virtbridge/virtbridge/internal/testenv/lab"
)

// TestKeepRemoveKept: a kept lab survives SweepStale, whatever its owner,
// and RemoveKept removes it whole.
func TestKeepRemoveKept(t *testing.T) {
	lab.SkipIfUnavailable(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	l, err := lab.Start(ctx, lab.Options{Upstream: true, Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() }) // a no-op once RemoveKept has run
	holder := l.HolderPID()
	if err := l.Keep(); err != nil {
		t.Fatal(err)
	}
	if err := lab.SweepStale(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join("/run/netns", l.HVNetns())); err != nil {
		t.Fatalf("SweepStale removed a kept lab: %v", err)
	}
	n, err := lab.RemoveKept(l.Tag())
	if err != nil || n != 1 {
		t.Fatalf("RemoveKept = %d, %v", n, err)
	}
	for _, ns := range []string{l.HVNetns(), l.UpNetns()} {
		if _, err := os.Stat(filepath.Join("/run/netns", ns)); err == nil {
			t.Errorf("namespace %s left", ns)
		}
	}
	if _, err := os.Stat(l.Dir()); err == nil {
		t.Errorf("lab directory %s left", l.Dir())
	}
	time.Sleep(100 * time.Millisecond) // the lab's goroutine reaps the holder
	if err := syscall.Kill(holder, 0); err == nil {
		t.Errorf("namespace holder %d still runs", holder)
	}
}

// TestBreak: ClassicFaults in the hypervisor namespace, and a working
// host (zero Faults) with the bridge made.
func TestBreak(t *testing.T) {
	if !lab.BridgeNFAvailable() {
		t.Skip("skipping: no br_netfilter in this kernel")
	}
	for _, c := range []struct {
		f    lab.Faults
		want []string
	}{
		{lab.ClassicFaults(), []string{"uplink0", "inet 10.77.0.2/24", "default via 10.77.0.1 dev uplink0",
			"net.ipv4.ip_forward = 0", "bridge-nf-call-iptables = 1", "-P FORWARD DROP",
			"-A FORWARD -j REJECT --reject-with icmp-host-prohibited"}},
		{lab.Faults{}, []string{"master br0", "net.ipv4.ip_forward = 1", "bridge-nf-call-iptables = 0", "-P FORWARD ACCEPT"}},
	} {
		l := lab.ForTest(t, lab.Options{Upstream: true})
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := l.Break(ctx, "br0", c.f); err != nil {
			t.Fatal(err)
		}
		out, err := l.ExecHV(ctx, "sh", "-c", "ip -o link; ip -o addr; ip route; sysctl net.ipv4.ip_forward net.bridge.bridge-nf-call-iptables; iptables -S FORWARD")
		if err != nil {
			t.Fatal(err)
		}
		for _, w := range c.want {
			if !strings.Contains(string(out), w) {
				t.Errorf("faults %q: hypervisor lacks %q:\n%s", c.f, w, out)
			}
		}
	}
}
