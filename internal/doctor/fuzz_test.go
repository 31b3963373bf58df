package doctor

import "testing"

// FuzzParseTable feeds arbitrary text to the parsers of what other
// programs print (iptables -S, /proc/PID/stat): they must never
// panic, and a verdict names at most one deciding rule, one that exists.
func FuzzParseTable(f *testing.F) {
	for _, s := range []string{
		"-P FORWARD DROP\n-A FORWARD -j REJECT --reject-with icmp-host-prohibited\n",
		dockerSave, dockerFixed,
		"-P FORWARD ACCEPT\n-A FORWARD -m comment --comment \"a \\\"b\\\" c\" ! -i br+ -j DROP\n",
		"1 (x) S 1 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 42 0 0\n",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		startTicks(s)
		tb, err := ParseTable("nft", "ipv4", s)
		if err != nil {
			return
		}
		_ = tb.empty()
		v := forwardVerdict(tb, "VIRTBRIDGE-FWD", []string{"br0", "br-1"})
		n := len(tb.Rules["FORWARD"])
		if v.acceptedBy > 0 && v.droppedBy > 0 || v.acceptedBy > n || v.droppedBy > n {
			t.Fatalf("verdict %+v for %d FORWARD rules", v, n)
		}
		if v.blocked() && v.acceptedBy > 0 {
			t.Fatalf("blocked although rule %d accepts", v.acceptedBy)
		}
	})
}
