package firewall

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/virtbridge/virtbridge/internal/testenv/netnstest"
)

// lab is a test network namespace whose iptables commands are reached
// through wrapper scripts: each runs the real command with
// `ip netns exec NS` (so iptables never runs in the test's own namespace),
// logs the call for counting, and fails on demand.
type lab struct {
	ns    *netnstest.NS
	dir   string
	log   string // one line per iptables run
	fail  string // substrings that make a run fail, one per line
	state string
}

var commands = []string{
	"iptables-nft", "ip6tables-nft", "iptables-nft-save", "ip6tables-nft-save",
	"iptables-legacy", "ip6tables-legacy", "iptables-legacy-save", "ip6tables-legacy-save",
}

// newLab makes the lab with wrappers for the given variants (default both).
// Without iptables-restore wrappers the Firewall changes rules one command
// at a time; addRestore makes it batch them.
func newLab(t testing.TB, variants ...Variant) *lab {
	t.Helper()
	ns := netnstest.New(t, "vbfw")
	dir := t.TempDir()
	l := &lab{ns: ns, dir: dir, log: filepath.Join(dir, "calls.log"), fail: filepath.Join(dir, "fail"), state: filepath.Join(dir, "firewall.state")}
	l.wrap(t, commands, variants)
	return l
}

// addRestore adds iptables-restore wrappers for the variants.
func (l *lab) addRestore(t testing.TB, variants ...Variant) {
	t.Helper()
	l.wrap(t, []string{"iptables-nft-restore", "ip6tables-nft-restore", "iptables-legacy-restore", "ip6tables-legacy-restore"}, variants)
}

func (l *lab) wrap(t testing.TB, commands []string, variants []Variant) {
	t.Helper()
	ns, dir := l.ns, l.dir
	for _, c := range commands {
		if len(variants) > 0 && !slices.ContainsFunc(variants, func(v Variant) bool { return strings.Contains(c, "-"+string(v)) }) {
			continue
		}
		real, err := exec.LookPath(c)
		if err != nil {
			t.Skipf("skipped: %s not installed (apt-get install iptables)", c)
		}
		script := fmt.Sprintf(`#!/bin/sh
echo "%s $*" >> %s
if [ -s %s ] && echo "%s $*" | grep -qF -f %s; then echo "injected failure" >&2; exit 1; fi
exec ip netns exec %s %s "$@"
`, c, l.log, l.fail, c, l.fail, ns.Name, real)
		if err := os.WriteFile(filepath.Join(dir, c), []byte(script), 0o755); err != nil {
			t.Fatal(err)
		}
	}
}

// firewall returns a Firewall working in the lab's namespace.
func (l *lab) firewall(noState bool) *Firewall {
	return New(Options{BinDir: l.dir, NetNS: "/run/netns/" + l.ns.Name, StatePath: l.state, NoState: noState})
}

// calls returns the iptables runs logged since the last call, and resets.
func (l *lab) calls(t testing.TB) []string {
	t.Helper()
	b, err := os.ReadFile(l.log)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	if err := os.WriteFile(l.log, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if len(b) == 0 {
		return nil
	}
	return strings.Split(strings.TrimSpace(string(b)), "\n")
}

// failOn makes wrapper runs whose command line contains s fail ("" clears).
func (l *lab) failOn(t testing.TB, s string) {
	t.Helper()
	if err := os.WriteFile(l.fail, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}

// ipt runs an iptables command of variant v in the namespace directly.
func (l *lab) ipt(t testing.TB, v Variant, fam Family, args ...string) string {
	t.Helper()
	return l.ns.Run(t, append([]string{fam.command() + "-" + string(v)}, args...)...)
}

// both runs the same command in both families.
func (l *lab) both(t testing.TB, v Variant, args ...string) {
	t.Helper()
	l.ipt(t, v, IPv4, args...)
	l.ipt(t, v, IPv6, args...)
}

// show returns `iptables -S` and `ip6tables -S` like Fake.String.
func (l *lab) show(t testing.TB, v Variant) string {
	t.Helper()
	return "# ipv4\n" + l.ipt(t, v, IPv4, "-S") + "# ipv6\n" + l.ipt(t, v, IPv6, "-S")
}
