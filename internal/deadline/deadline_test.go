package deadline

import (
	"testing"
	"time"
)

func TestRemainingAndDoing(t *testing.T) {
	t.Cleanup(func() { Set(time.Time{}) })
	if got := Remaining(5*time.Second, time.Second); got != 5*time.Second {
		t.Fatalf("no deadline: %v, want the fallback", got)
	}
	Set(time.Now().Add(time.Hour))
	if got := Remaining(5*time.Second, time.Second); got != 5*time.Second {
		t.Fatalf("far deadline: %v, want the fallback", got)
	}
	Set(time.Now().Add(3 * time.Second))
	if got := Remaining(time.Minute, time.Second); got > 2*time.Second || got < time.Second {
		t.Fatalf("near deadline: %v, want about 2s", got)
	}
	Set(time.Now().Add(-time.Second))
	if got := Remaining(time.Minute, 0); got != 0 {
		t.Fatalf("past deadline: %v, want 0", got)
	}
	outer := Doing("reading %s", "stdin")
	inner := Doing("running %q", "iptables")
	if Current() != `running "iptables"` {
		t.Fatalf("Current() = %q", Current())
	}
	inner()
	if Current() != "reading stdin" {
		t.Fatalf("after restore: %q", Current())
	}
	outer()
}
