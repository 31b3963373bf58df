package lab

import "testing"

func TestFaultsString(t *testing.T) {
	if got := (Faults{}).String(); got != "none" {
		t.Errorf("Faults{}.String() = %q", got)
	}
	if got := (Faults{IPForwardOff: true, Reject: true}).String(); got != "ip_forward=0, FORWARD ... -j REJECT --reject-with icmp-host-prohibited" {
		t.Errorf("String() = %q", got)
	}
}
