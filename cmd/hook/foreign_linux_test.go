package main

import (
	"strings"
	"testing"
)

// TestForeignBridgeChangesAreSaid: a br-a made by someone else (STP on,
// forward delay 15, its own MAC, another port) is changed by prepare, and
// the hook says on stderr what it changed and that the other port is
// neither the uplink nor a VM tap, exiting 0, and marks it as managed;
// the next prepare, with nothing to change, says nothing. A bridge the
// hook creates itself is marked at once and never reported.
func TestForeignBridgeChangesAreSaid(t *testing.T) {
	h := newHypervisor(t, brA)
	h.hv.Script(t, `
		ip link add br-a type bridge stp_state 1 forward_delay 1500
		ip link set br-a address 02:11:22:33:44:55
		ip link add other0 type veth peer name other0p
		ip link set other0 master br-a
		ip tuntap add dev vnet7 mode tap
		ip link set vnet7 master br-a
		ip link set br-a up`)
	r := h.hook(t, "one-nic", "01-prepare-begin")
	t.Logf("prepare: exit %d, stderr:\n%s", r.code, r.stderr)
	if r.code != 0 || r.stdout != "" {
		t.Fatalf("prepare: %+v", r)
	}
	for _, want := range []string{
		`virtbridge: domain "one-nic" (prepare): warning: bridge "br-a" was made by someone else`,
		`alias "managed by virtbridge" set`,
		"stp on -> stp off", "forward_delay 15 -> forward_delay 0", "mac 02:11:22:33:44:55 -> ",
		"uplink uplink0 enslaved", "address 10.77.0.2/24 moved from uplink0",
		"its ports other0 (veth) are neither its uplink nor VM taps",
	} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("stderr lacks %q", want)
		}
	}
	if strings.Contains(r.stderr, "vnet7") {
		t.Errorf("stderr names the tap vnet7 as a foreign port")
	}
	if link := h.hv.Run(t, "ip", "link", "show", "br-a"); !strings.Contains(link, "alias managed by virtbridge") {
		t.Errorf("the bridge taken over lacks the alias:\n%s", link)
	}
	h.settle(t)
	if r := h.hook(t, "one-nic", "01-prepare-begin"); r.code != 0 || r.stderr != "" {
		t.Errorf("second prepare (nothing to change): exit %d, stderr %q; want silence", r.code, r.stderr)
	}

	// A bridge the hook creates carries its mark and is never reported.
	h2 := newHypervisor(t, brA)
	r = h2.hook(t, "one-nic", "01-prepare-begin")
	if r.code != 0 || strings.Contains(r.stderr, "warning") {
		t.Fatalf("prepare creating br-a: exit %d, stderr %q", r.code, r.stderr)
	}
	if link := h2.hv.Run(t, "ip", "link", "show", "br-a"); !strings.Contains(link, "alias managed by virtbridge") {
		t.Errorf("the created bridge lacks its alias:\n%s", link)
	}
	h2.hv.Script(t, "ip link set br-a type bridge stp_state 1")
	if r := h2.hook(t, "one-nic", "01-prepare-begin"); r.code != 0 || strings.Contains(r.stderr, "warning") {
		t.Errorf("prepare re-applying virtbridge's own bridge: exit %d, stderr %q; want no warning", r.code, r.stderr)
	}
}
