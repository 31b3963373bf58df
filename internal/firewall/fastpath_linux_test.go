package firewall

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/virtbridge/virtbridge/internal/desired"
	"github.com/virtbridge/virtbridge/internal/testenv/netnstest"
)

// ensureCounting runs Ensure and returns how many changes it made and how
// many iptables processes it started.
func ensureCounting(t testing.TB, l *lab, f *Firewall, p desired.Firewall) (changes int, runs []string) {
	t.Helper()
	l.calls(t)
	cs := mustEnsure(t, f, p)
	return len(cs), l.calls(t)
}

func TestGenerationFastPath(t *testing.T) {
	l := newLab(t)
	f := l.firewall(false)
	p := desired.Firewall{Backend: BackendAuto, AcceptBridges: []string{"br0"}}
	expect := func(name string, wantChanges, wantRuns int) {
		t.Helper()
		n, runs := ensureCounting(t, l, f, p)
		t.Logf("%s: %d changes, %d iptables runs", name, n, len(runs))
		if n != wantChanges || len(runs) != wantRuns {
			t.Errorf("%s: %d changes, %d iptables runs %q; want %d and %d", name, n, len(runs), runs, wantChanges, wantRuns)
		}
	}
	// Cold, per family: -S, -N, -A, -I, -S to read back.
	// No legacy table exists, so detection runs nothing.
	expect("cold", 6, 10)
	expect("steady", 0, 0)
	l.ipt(t, NFT, IPv4, "-A", "FORWARD", "-o", "eth9", "-j", "DROP")
	expect("after a foreign rule below ours", 0, 2)
	expect("steady again", 0, 0)
	l.ipt(t, NFT, IPv6, "-I", "FORWARD", "1", "-o", "eth9", "-j", "DROP")
	// -S per family; in ip6tables -D, -I; -S per family to read back.
	expect("after a foreign rule above ours in ip6tables", 2, 6)
	expect("steady again", 0, 0)
	p.AcceptBridges = []string{"br0", "br1"}
	expect("bridge added", 2, 6) // per family: -S, -A, -S to read back
	expect("steady again", 0, 0)

	// The generation is per namespace: a state from another namespace
	// proves nothing there, even when the generation numbers match.
	other := newLab(t)
	of := other.firewall(false)
	fx, err := of.ns.facts()
	if err != nil {
		t.Fatal(err)
	}
	st, err := loadState(l.state)
	if err != nil || st == nil {
		t.Fatalf("state: %v, %v", st, err)
	}
	st.Gen = fx.Gen
	if err := saveState(other.state, *st); err != nil {
		t.Fatal(err)
	}
	if n, runs := ensureCounting(t, other, of, p); n == 0 || len(runs) == 0 {
		t.Errorf("other namespace with a state of this one: %d changes, %d runs; want a full Ensure", n, len(runs))
	}
	// Control: the same state keyed to the other namespace is trusted.
	st.Cookie, st.Gen = fx.Cookie, 0
	if fx, err = of.ns.facts(); err != nil {
		t.Fatal(err)
	}
	st.Gen = fx.Gen
	if err := saveState(other.state, *st); err != nil {
		t.Fatal(err)
	}
	if _, runs := ensureCounting(t, other, of, p); len(runs) != 0 {
		t.Errorf("control: state keyed to the other namespace still ran %q", runs)
	}

	// Legacy has no generation: every Ensure reads each family once.
	p.Backend = BackendLegacy
	expect("legacy cold", 8, 12) // per family: -S, -N, -A×2, -I, -S
	expect("legacy steady", 0, 2)
	expect("legacy steady", 0, 2)
}

func TestDetection(t *testing.T) {
	for _, tc := range []struct {
		name     string
		variants []Variant
		setup    map[Variant][]string
		want     Variant
	}{
		{name: "fresh host", want: NFT},
		{name: "only legacy installed", variants: []Variant{Legacy}, want: Legacy},
		{name: "only nft installed", variants: []Variant{NFT}, setup: map[Variant][]string{Legacy: {"-A FORWARD -j DROP"}}, want: NFT},
		{name: "rules in legacy only", setup: map[Variant][]string{Legacy: {"-P FORWARD DROP"}}, want: Legacy},
		{name: "rules in both", setup: map[Variant][]string{Legacy: {"-A FORWARD -j DROP"}, NFT: {"-A FORWARD -j DROP"}}, want: NFT},
		{name: "legacy table without rules", setup: map[Variant][]string{Legacy: {"-S"}}, want: NFT},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := newLab(t, tc.variants...)
			for v, cmds := range tc.setup {
				for _, c := range cmds {
					l.ipt(t, v, IPv4, strings.Fields(c)...)
				}
			}
			f := l.firewall(false)
			p := desired.Firewall{Backend: BackendAuto, AcceptBridges: []string{"br0"}}
			_, runs := ensureCounting(t, l, f, p)
			if tc.name == "fresh host" && strings.Contains(strings.Join(runs, "\n"), "legacy") {
				t.Errorf("detection on a host without legacy tables ran legacy iptables: %q", runs)
			}
			st, err := loadState(l.state)
			if err != nil || st == nil || st.Variant != tc.want {
				t.Fatalf("state %+v, %v; want variant %s", st, err, tc.want)
			}
			if got := l.ipt(t, tc.want, IPv4, "-S"); !strings.Contains(got, "-N "+Chain) {
				t.Errorf("%s holds no chain:\n%s", tc.want, got)
			}
			if _, runs := ensureCounting(t, l, f, p); tc.want == NFT && len(runs) != 0 {
				t.Errorf("steady Ensure after detection ran %q", runs)
			}
		})
	}
}

// TestBridgedTrafficNeedsTheRule proves the rule form on real traffic:
// two "VMs" in their own namespaces, bridged by br0 in the lab namespace,
// whose FORWARD drops and rejects everything, as Docker and old RHEL
// defaults do. The ports are veths the test enslaves itself, not taps: a
// tap carries nothing without a qemu behind it, and the rule matches the
// bridge, whatever its ports are.
func TestBridgedTrafficNeedsTheRule(t *testing.T) {
	for _, v := range variants {
		t.Run(string(v), func(t *testing.T) {
			l := newLab(t, v)
			vm1, vm2 := netnstest.New(t, "vbvm"), netnstest.New(t, "vbvm")
			l.ns.Script(t, fmt.Sprintf(`
				ip link add br0 type bridge
				ip link set br0 up
				ip link add p1 type veth peer name eth0 netns %s
				ip link add p2 type veth peer name eth0 netns %s
				ip link set p1 master br0 up
				ip link set p2 master br0 up
				sysctl -q -w net.bridge.bridge-nf-call-iptables=1
				sysctl -q -w net.bridge.bridge-nf-call-ip6tables=1
				iptables-%[3]s -P FORWARD DROP
				iptables-%[3]s -A FORWARD -j REJECT --reject-with icmp-host-prohibited
				ip6tables-%[3]s -P FORWARD DROP
				ip6tables-%[3]s -A FORWARD -j REJECT`, vm1.Name, vm2.Name, v))
			for i, vm := range []*netnstest.NS{vm1, vm2} {
				vm.Script(t, fmt.Sprintf(`
					ip addr add 10.77.9.%d/24 dev eth0
					ip addr add fd77:9::%d/64 dev eth0 nodad
					ip link set eth0 up`, i+1, i+1))
			}
			// ping reports whether vm1 reaches addr; a success may need
			// a retry (neighbour discovery), a failure is one 0.5 s try.
			ping := func(addr string, retry bool) bool {
				for range 1 + 2*btoi(retry) {
					if _, err := vm1.Exec("ping", "-c", "1", "-W", "0.5", addr); err == nil {
						return true
					}
				}
				return false
			}
			f := l.firewall(true)
			for _, step := range []struct {
				bridges []string
				works   bool
			}{{nil, false}, {[]string{"br1"}, false}, {[]string{"br0"}, true}, {nil, false}} {
				mustEnsure(t, f, desired.Firewall{Backend: backendOf(v), AcceptBridges: step.bridges})
				for _, addr := range []string{"10.77.9.2", "fd77:9::2"} {
					if got := ping(addr, step.works); got != step.works {
						t.Errorf("accepting %v: ping vm1 -> %s works = %v, want %v\n%s", step.bridges, addr, got, step.works, l.show(t, v))
					}
				}
			}
		})
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// loadForeign puts n foreign rules into FORWARD with one iptables-restore.
func loadForeign(b testing.TB, l *lab, v Variant, n int) {
	b.Helper()
	var s strings.Builder
	s.WriteString("*filter\n")
	for i := range n {
		fmt.Fprintf(&s, "-A FORWARD -s 10.%d.%d.%d/32 -o eth9 -j DROP\n", i>>16&255, i>>8&255, i&255)
	}
	s.WriteString("COMMIT\n")
	cmd := exec.Command("ip", "netns", "exec", l.ns.Name, "iptables-"+string(v)+"-restore", "--noflush")
	cmd.Stdin = strings.NewReader(s.String())
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	if out, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("iptables-restore: %v: %s", err, out)
	}
}

// BenchmarkEnsureSteady measures an Ensure with nothing to do, in a
// namespace with no and with 10,000 foreign rules. "verify" disables the
// state file, so every Ensure reads both tables (the legacy case, and the
// nft case after any ruleset change). Exec costs include the test wrapper
// (`ip netns exec`).
func BenchmarkEnsureSteady(b *testing.B) {
	for _, tc := range []struct {
		v       Variant
		noState bool
	}{{NFT, false}, {NFT, true}, {Legacy, true}} {
		for _, n := range []int{0, 10000} {
			mode := "state"
			if tc.noState {
				mode = "verify"
			}
			b.Run(fmt.Sprintf("%s-%s/foreign=%d", tc.v, mode, n), func(b *testing.B) {
				l := newLab(b, tc.v)
				loadForeign(b, l, tc.v, n)
				f := l.firewall(tc.noState)
				p := desired.Firewall{Backend: backendOf(tc.v), AcceptBridges: []string{"br0", "br1"}}
				mustEnsure(b, f, p)
				mustEnsure(b, f, p)
				l.calls(b)
				for b.Loop() {
					mustEnsure(b, f, p)
				}
				b.ReportMetric(float64(len(l.calls(b)))/float64(b.N), "iptables-runs/op")
			})
		}
	}
}
