package netnstest

import (
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

var pingStatsRE = regexp.MustCompile(`(\d+) packets transmitted, (\d+) received`)

// Pinger runs `ping -i 0.01` (count pings, 10 ms apart) in a namespace, to
// measure how many replies a change costs.
type Pinger struct {
	cmd *exec.Cmd
	out strings.Builder
}

// StartPing pings addr from inside the namespace. The ping is killed at the
// end of the test if it is still running.
func (n *NS) StartPing(t testing.TB, addr string, count int) *Pinger {
	t.Helper()
	p := &Pinger{}
	p.cmd = exec.Command("ip", "netns", "exec", n.Name, "ping", "-n", "-q", "-i", "0.01",
		"-c", strconv.Itoa(count), "-W", "1", addr)
	p.cmd.Env = []string{"LC_ALL=C", "PATH=/usr/sbin:/usr/bin:/sbin:/bin"}
	p.cmd.Stdout, p.cmd.Stderr = &p.out, &p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if p.cmd.ProcessState == nil {
			p.cmd.Process.Kill()
			p.cmd.Wait()
		}
	})
	return p
}

// Lost waits for ping to end and returns how many of the packets it sent
// got no reply.
func (p *Pinger) Lost(t testing.TB) (lost, sent int) {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- p.cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		p.cmd.Process.Kill()
		<-done
		t.Fatalf("ping did not end in 60s:\n%s", p.out.String())
	}
	m := pingStatsRE.FindStringSubmatch(p.out.String())
	if m == nil {
		t.Fatalf("no statistics in ping output:\n%s", p.out.String())
	}
	tx, _ := strconv.Atoi(m[1])
	rx, _ := strconv.Atoi(m[2])
	return tx - rx, tx
}

// timerRE matches the bridge timers of `ip -d link`, which tick by
// themselves and would make equal states differ.
var timerRE = regexp.MustCompile(`\w+_timer +[0-9.]+ ?`)

// peerNetnsRE matches how `ip link` names a veth peer's namespace. iproute2
// turns the peer's netnsid into a name by scanning /run/netns, which fails
// now and then ("Error: Peer netns reference is invalid." and a bare
// link-netnsid) while other tests add and delete namespaces: noise, not
// state of this namespace.
var (
	peerNetnsRE = regexp.MustCompile(`link-netns(id)? \S+`)
	peerErrorRE = regexp.MustCompile(`(?m)^Error: Peer netns reference is invalid\.\n`)
)

// Dump is the namespace's network state as text, for before/after
// comparisons: links with details (timers left out), addresses, routes and
// policy-routing rules of both families, and the rules of iptables-nft and, where its tables exist,
// iptables-legacy (merely listing them would create them).
func (n *NS) Dump(t testing.TB) string {
	t.Helper()
	cmds := [][]string{
		{"ip", "-d", "link", "show"},
		{"ip", "addr", "show"},
		{"ip", "route", "show", "table", "all"},
		{"ip", "-6", "route", "show", "table", "all"},
		{"ip", "rule", "show"},
		{"ip", "-6", "rule", "show"},
	}
	for _, tool := range n.ruleTools() {
		cmds = append(cmds, []string{tool, "-S"})
	}
	var b strings.Builder
	for _, cmd := range cmds {
		out, err := n.Exec(cmd...)
		if err != nil {
			out = "error: " + err.Error() + "\n" + out
		}
		b.WriteString("$ " + strings.Join(cmd, " ") + "\n" + normalize(out))
	}
	return b.String()
}

// normalize takes out of a dump what changes by itself: bridge timers and
// how the peer namespace of a veth is named.
func normalize(out string) string {
	out = timerRE.ReplaceAllString(out, "")
	out = peerErrorRE.ReplaceAllString(out, "")
	return peerNetnsRE.ReplaceAllString(out, "link-netns PEER")
}
