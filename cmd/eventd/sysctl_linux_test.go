package main

import (
	"strings"
	"testing"
	"time"
)

// sysctlConfig manages br-a with bridged frames kept out of IP filtering
// (bridge-nf-call-iptables/ip6tables 0) and re-checks every 2 s.
const sysctlConfig = `bridges:
  br-a:
    uplink: upa0
sysctl:
  bridge_nf_call_iptables: 0
  bridge_nf_call_ip6tables: 0
daemon:
  firewall_recheck: 2s
`

// TestRestoresSysctls: the daemon sets bridge-nf-call-iptables and
// -ip6tables to 0 at its start; when one is set back to 1 behind its back
// (as br_netfilter does when it is loaded after boot), the periodic check
// sets it to 0 again and journals the repair as op firewall-check.
func TestRestoresSysctls(t *testing.T) {
	l, j := startLab(t)
	const cfgPath = "/etc/virtbridge/sysctl.yaml"
	writeLabConfig(t, l, cfgPath, sysctlConfig)
	n := listenNotify(t)
	d := startDaemonWith(t, l, n, cfgPath)
	_, readyIdx := n.wait(t, 0, "READY=1", 30*time.Second)
	nfCall := func() string {
		return strings.TrimSpace(l.RunHV(t, "sysctl", "-n", "net.bridge.bridge-nf-call-iptables", "net.bridge.bridge-nf-call-ip6tables"))
	}
	if got := nfCall(); got != "0\n0" {
		t.Fatalf("at READY=1 bridge-nf-call-iptables/ip6tables are %q, want 0 and 0", got)
	}
	// Let the reconcile that the start's own link changes cause pass, so
	// that only the periodic check can restore the setting.
	n.waitPrefix(t, readyIdx, "STATUS=connected to qemu:///system, 0 running domains reconciled at ", 30*time.Second)
	time.Sleep(time.Second)
	pid := d.cmd.Process.Pid
	since := time.Now()
	l.RunHV(t, "sysctl", "-qw", "net.bridge.bridge-nf-call-iptables=1")
	changed := time.Now()
	for nfCall() != "0\n0" {
		if time.Since(changed) > 20*time.Second {
			t.Fatalf("bridge-nf-call-iptables not restored 20 s after it was set to 1, with firewall_recheck: 2s: %q", nfCall())
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("bridge-nf-call-iptables set to 1: restored %v later", time.Since(changed).Round(time.Millisecond))
	waitChanges(t, j, pid, since, []string{"sysctl-changed net.bridge.bridge-nf-call-iptables op=firewall-check"})
	stopDaemon(t, d, n)
}
