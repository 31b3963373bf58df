package deadline

import (
	"context"
	"errors"
	"os"
	"testing"
	"time"
)

func TestLeftAndDoing(t *testing.T) {
	bg := context.Background()
	if got := Left(bg, time.Second, 5*time.Second); got != 5*time.Second {
		t.Fatalf("no deadline: %v, want the fallback", got)
	}
	far, cancel := Within(bg, time.Now(), time.Hour)
	defer cancel()
	if got := Left(far, time.Second, 5*time.Second); got != 5*time.Second {
		t.Fatalf("far deadline: %v, want the fallback", got)
	}
	near, cancel := Within(bg, time.Now(), 3*time.Second)
	defer cancel()
	if got := Left(near, time.Second, time.Minute); got > 2*time.Second || got < time.Second {
		t.Fatalf("near deadline: %v, want about 2s", got)
	}
	past, cancel := Within(bg, time.Now().Add(-time.Minute), time.Second)
	defer cancel()
	if got := Left(past, 0, time.Minute); got != 0 {
		t.Fatalf("past deadline: %v, want 0", got)
	}

	a := ActivityOf(near)
	if a == nil {
		t.Fatal("Within gave no Activity")
	}
	outer := Doing(near, "reading %s", "stdin")
	inner := Doing(near, "running %q", "iptables")
	if a.Current() != `running "iptables"` {
		t.Fatalf("Current() = %q", a.Current())
	}
	inner()
	if a.Current() != "reading stdin" {
		t.Fatalf("after restore: %q", a.Current())
	}
	outer()
	Doing(bg, "nothing carries this")() // no Activity: records nothing, no panic
	if ActivityOf(bg).Current() != "" {
		t.Fatal("an Activity out of nowhere")
	}
}

// TestUncancelled: a stopped run's undo and records keep its deadline but
// not its cancellation.
func TestUncancelled(t *testing.T) {
	ctx, cancel := Within(context.Background(), time.Now(), time.Hour)
	cancel()
	u, ucancel := Uncancelled(ctx)
	defer ucancel()
	if u.Err() != nil {
		t.Fatalf("uncancelled ctx ended: %v", u.Err())
	}
	want, _ := ctx.Deadline()
	if got, ok := u.Deadline(); !ok || !got.Equal(want) {
		t.Fatalf("deadline %v %v, want %v", got, ok, want)
	}
	if ActivityOf(u) != ActivityOf(ctx) {
		t.Fatal("the Activity was lost")
	}
}

func TestErrorSaysWhatAndWhy(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	if Ended(ctx, "waiting for %s", "x") != nil {
		t.Fatal("a live ctx ended a wait")
	}
	cancel()
	err := Ended(ctx, "waiting for the host lock %s", "/run/x/lock")
	if !errors.Is(err, context.Canceled) || err.Error() != "waiting for the host lock /run/x/lock: stopped" {
		t.Fatalf("cancelled: %v", err)
	}
	err = &Error{Waiting: "sending to journald", Err: os.ErrDeadlineExceeded}
	if err.Error() != "sending to journald: timed out" {
		t.Fatalf("%v", err)
	}
}
