package links

import (
	"context"
	"testing"
)

// TestEnsurePortRefusesWhatIsNotTheTap: in a namespace, EnsurePort refuses
// each link of notTapCases twice, before changing anything (the dump of
// links, addresses, routes and rules is byte for byte the same), with the
// message Fake gives.
func TestEnsurePortRefusesWhatIsNotTheTap(t *testing.T) {
	l := newLab(t, false)
	l.host.Script(t, "ip link add br0 type bridge\nip link add br-x type bridge\nip link set br0 up\nip link set br-x up")
	for _, tc := range notTapCases {
		if tc.script != "" {
			l.host.Script(t, tc.script)
		}
	}
	before := dump(t, l.host)
	for _, tc := range notTapCases {
		t.Run(tc.name, func(t *testing.T) {
			msg := checkNotTap(t, l.m.EnsurePort, tc.tap, tc.guest, tc.want)
			t.Log(msg)
			f := NewFake()
			f.AddLink("br0", "bridge", "02:00:00:00:00:01", "")
			f.AddLink("br-x", "bridge", "02:00:00:00:00:02", "")
			if tc.seed != nil {
				tc.seed(f)
			}
			if _, err := f.EnsurePort(context.Background(), policyPort(tc.tap, tc.guest), "vm:hostile uuid:1", nil); err == nil || err.Error() != msg {
				t.Errorf("Fake refuses otherwise:\n fake:    %v\n manager: %s", err, msg)
			}
		})
	}
	requireSame(t, "refused EnsurePort", before, dump(t, l.host))
}
