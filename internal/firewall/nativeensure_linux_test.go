package firewall

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/virtbridge/virtbridge/internal/desired"
	"github.com/virtbridge/virtbridge/internal/lock"
	"github.com/virtbridge/virtbridge/internal/revert"
	"github.com/virtbridge/virtbridge/internal/testenv/netnstest"
)

// bridgedLab is a "host" namespace (the lab's) with bridge br0 and two
// ports: veth vm0, whose peer is a "VM" namespace (10.77.0.2), and veth
// up0, whose peer is an "upstream" namespace (10.77.0.1). Frames between
// them are bridged in the host, with bridge-nf-call-iptables/ip6tables=1.
type bridgedLab struct {
	*lab
	vm, up *netnstest.NS
}

func newBridgedLab(t *testing.T) *bridgedLab {
	t.Helper()
	l := newLab(t, NFT)
	l.addRestore(t, NFT)
	b := &bridgedLab{lab: l, vm: netnstest.New(t, "vbt"), up: netnstest.New(t, "vbt")}
	l.ns.Script(t, `ip link add br0 type bridge
ip link set br0 up
ip link add vm0 type veth peer name eth0 netns `+b.vm.Name+`
ip link add up0 type veth peer name eth0 netns `+b.up.Name+`
ip link set vm0 master br0
ip link set up0 master br0
ip link set vm0 up
ip link set up0 up
sysctl -qw net.bridge.bridge-nf-call-iptables=1
sysctl -qw net.bridge.bridge-nf-call-ip6tables=1`)
	b.vm.Script(t, "ip addr add 10.77.0.2/24 dev eth0\nip link set eth0 up")
	b.up.Script(t, "ip addr add 10.77.0.1/24 dev eth0\nip link set eth0 up")
	return b
}

// reaches reports whether the VM reaches upstream across the bridge: a
// ping answered within a generous deadline.
func (b *bridgedLab) reaches(t *testing.T) bool {
	t.Helper()
	start := time.Now()
	for time.Since(start) < 20*time.Second {
		if _, err := b.vm.Exec("ping", "-c", "1", "-W", "1", "10.77.0.1"); err == nil {
			t.Logf("VM reached upstream after %v", time.Since(start).Round(time.Millisecond))
			return true
		}
	}
	return false
}

// blocked reports that a few pings are all lost.
func (b *bridgedLab) blocked(t *testing.T) bool {
	t.Helper()
	_, err := b.vm.Exec("ping", "-c", "3", "-i", "0.3", "-W", "1", "10.77.0.1")
	return err != nil
}

// rulesets returns `nft list ruleset` and `iptables-save`/`ip6tables-save`
// of the host namespace, without counters.
func (b *bridgedLab) rulesets(t *testing.T) string {
	t.Helper()
	var out []string
	for _, c := range [][]string{{"nft", "-s", "list", "ruleset"}, {"iptables-nft-save"}, {"ip6tables-nft-save"}} {
		for _, l := range strings.Split(b.ns.Run(t, c...), "\n") {
			if strings.HasPrefix(l, ":") {
				l, _, _ = strings.Cut(l, " [") // the chain's packet counters
			}
			if !strings.HasPrefix(l, "#") {
				out = append(out, l)
			}
		}
	}
	return strings.Join(out, "\n")
}

const (
	inetDrop = `table inet filter {
	chain forward {
		type filter hook forward priority filter; policy drop;
		ct state established,related accept
	}
	chain input {
		type filter hook input priority filter; policy accept;
	}
}
`
	inetReject = `table inet filter {
	chain forward {
		type filter hook forward priority filter; policy accept;
		ct state invalid drop
		reject with icmpx admin-prohibited
	}
}
`
	// Docker's and libvirt's tables, named as Docker 29 and libvirt ≥ 10.4
	// name them: never touched.
	dockerTable = `table ip docker-bridges {
	chain filter-FORWARD {
		type filter hook forward priority filter; policy accept;
		oifname "docker0" drop
	}
}
table inet libvirt_network {
	chain forward {
		type filter hook forward priority filter; policy accept;
		oifname "virbr0" reject
	}
}
`
)

// TestNativeTablesPass: an administrator's inet filter forward chain
// (policy drop; then a trailing reject), with iptables-nft's FORWARD at
// policy DROP too: after Ensure the VM reaches upstream across the bridge,
// a second Ensure changes nothing, Docker's table is left alone, and
// Remove leaves the rulesets as they were.
func TestNativeTablesPass(t *testing.T) {
	for _, tc := range []struct{ name, ruleset string }{{"policy drop", inetDrop}, {"trailing reject", inetReject}} {
		t.Run(tc.name, func(t *testing.T) {
			b := newBridgedLab(t)
			nftLoad(t, b.ns, tc.ruleset+dockerTable)
			b.ipt(t, NFT, IPv4, "-P", "FORWARD", "DROP")
			b.ipt(t, NFT, IPv6, "-P", "FORWARD", "DROP")
			before := b.rulesets(t)
			if !b.blocked(t) {
				t.Fatal("control: the VM reaches upstream before Ensure")
			}
			f := b.firewall(false)
			p := desired.Firewall{Backend: BackendNFT, AcceptBridges: []string{"br0"}}
			cs := mustEnsure(t, f, p)
			t.Logf("changes: %v", cs)
			if !b.reaches(t) {
				t.Fatalf("the VM does not reach upstream after Ensure:\n%s", b.rulesets(t))
			}
			after := b.rulesets(t)
			if n := strings.Count(after, "\t\tiifname \"br0\" oifname \"br0\" accept comment \"virtbridge: bridged traffic of br0\"\n"); n != 1 {
				t.Errorf("%d native rules of virtbridge's, want 1:\n%s", n, after)
			}
			if !strings.Contains(after, "\t\toifname \"docker0\" drop\n\t}") || !strings.Contains(after, "policy accept;\n\t\toifname \"virbr0\" reject\n\t}") {
				t.Errorf("Docker's or libvirt's table changed:\n%s", after)
			}
			if cs := mustEnsure(t, b.firewall(true), p); len(cs) != 0 {
				t.Errorf("second Ensure (no state) changed %v", cs)
			}
			if got := b.rulesets(t); got != after {
				t.Errorf("second Ensure changed the rulesets:\n%s", got)
			}
			if _, err := f.Remove(context.Background()); err != nil {
				t.Fatal(err)
			}
			if got := b.rulesets(t); got != before {
				t.Errorf("after Remove:\n%s\nwant as before:\n%s", got, before)
			}
			if !b.blocked(t) {
				t.Error("the VM still reaches upstream after Remove")
			}
		})
	}
}

// TestNativeTablesLeave: with native_tables: leave the start is refused,
// naming the table and chain, and nothing is changed, in nftables or
// iptables.
func TestNativeTablesLeave(t *testing.T) {
	b := newBridgedLab(t)
	nftLoad(t, b.ns, inetDrop)
	before := b.rulesets(t)
	var rv revert.Reverter
	_, err := b.firewall(false).Ensure(context.Background(),
		desired.Firewall{Backend: BackendNFT, AcceptBridges: []string{"br0"}, NativeTables: NativeLeave}, &rv)
	if ferr := rv.Fail(); ferr != nil {
		t.Error(ferr)
	}
	if !errors.Is(err, ErrNativeLeave) || !strings.Contains(fmtErr(err), "nftables chain inet filter forward (the administrator's table) may drop bridged frames of br0 (policy drop)") {
		t.Errorf("Ensure: %v; want a refusal naming inet filter forward", err)
	}
	t.Logf("refusal: %v", err)
	if got := b.rulesets(t); got != before {
		t.Errorf("rulesets changed:\n%s\nwant\n%s", got, before)
	}
}

func fmtErr(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// TestNativeTablesConcurrent: 30 concurrent Ensures, each under the host
// lock as the hook's prepares are, each with its own Firewall and no
// state (every one reads and plans), leave one rule per bridge per chain.
func TestNativeTablesConcurrent(t *testing.T) {
	b := newBridgedLab(t)
	nftLoad(t, b.ns, inetDrop+inetSecond)
	lockPath := filepath.Join(t.TempDir(), "lock")
	p := desired.Firewall{Backend: BackendNFT, AcceptBridges: []string{"br0", "br1"}}
	var wg sync.WaitGroup
	errs := make(chan error, 30)
	for range 30 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l, err := lock.Acquire(lockPath, time.Minute)
			if err != nil {
				errs <- err
				return
			}
			defer l.Release()
			var rv revert.Reverter
			_, err = b.firewall(true).Ensure(context.Background(), p, &rv)
			rv.Success()
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	got := b.ns.Run(t, "nft", "-s", "list", "ruleset")
	for _, br := range []string{"br0", "br1"} {
		line := fmt.Sprintf("\t\tiifname %q oifname %q accept comment %q\n", br, br, nativeComment(br))
		if n := strings.Count(got, line); n != 2 { // inet filter forward and inet second fw
			t.Errorf("%d rules for %s, want one in each of 2 chains:\n%s", n, br, got)
		}
	}
	if !b.reaches(t) {
		t.Error("the VM does not reach upstream")
	}
}

// inetSecond is a second administrator's table whose forward chain
// rejects everything.
const inetSecond = `table inet second {
	chain fw {
		type filter hook forward priority 10; policy accept;
		reject
	}
}
`
