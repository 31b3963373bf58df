package doctor

import (
	"strings"
	"testing"
)

// TestUplinkInAnotherMaster: an uplink enslaved to another bridge or a
// bond is a failure whose advice names what to manage instead, and never
// takes the NIC out of its master (ip link set ... nomaster), which may
// cut the host off.
func TestUplinkInAnotherMaster(t *testing.T) {
	cfg := "bridges: {br0: {uplink: eth0}}\n"
	for _, tc := range []struct{ kind, says string }{
		{"bridge", "rename bridge br0 to own0"},
		{"bond", "make the bond own0 the uplink of bridge br0"},
		{"vrf", "give bridge br0 another NIC"},
	} {
		links := fakeLinks{
			{Name: "eth0", Index: 2, Kind: "device", MAC: "52:54:00:00:00:01", Master: "own0", Up: true, MTU: 1500},
			{Name: "own0", Index: 3, Kind: tc.kind, MAC: "52:54:00:00:00:01", Up: true, MTU: 1500},
			{Name: "br0", Index: 4, Kind: "bridge", MAC: "52:54:00:00:00:01", Up: true, MTU: 1500},
		}
		r := Run(Sources{ConfigPath: "t.yaml", Config: mustConfig(t, cfg), Links: links})
		f := one(t, r, "uplink-enslaved", "eth0")
		want(t, f, Fail, "enslaved to own0, not to br0", tc.says)
		if strings.Contains(f.Fix, "nomaster") {
			t.Errorf("%s: advice takes the NIC out of its master: %s", tc.kind, f.Fix)
		}
	}
}
