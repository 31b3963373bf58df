package engine

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/virtbridge/virtbridge/internal/deadline"
	"github.com/virtbridge/virtbridge/internal/events"
	"github.com/virtbridge/virtbridge/internal/lock"
)

// TestHandleEndsWithCtx: with the host lock held elsewhere, Handle's wait
// ends when its context is cancelled (a daemon's SIGTERM), long before
// LockWait, with an error naming the lock and its holder; meanwhile the
// context's Activity says what it waits for. Nothing changes.
func TestHandleEndsWithCtx(t *testing.T) {
	r := newRig(t, rigConfig)
	r.eng.LockWait = time.Hour
	held, err := lock.Acquire(r.eng.LockPath, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer held.Release()
	before := r.links.String()
	ctx, cancel := context.WithCancel(context.Background())
	ctx, act := deadline.WithActivity(ctx)
	done := make(chan error, 1)
	go func() {
		_, err := r.eng.Handle(ctx, event(events.OpPrepare))
		done <- err
	}()
	want := fmt.Sprintf("the host lock %s held by pid %d", r.eng.LockPath, os.Getpid())
	for end := time.Now().Add(30 * time.Second); !strings.Contains(act.Current(), want); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatalf("Activity %q, want it to name %q", act.Current(), want)
		}
	}
	start := time.Now()
	cancel()
	select {
	case err := <-done:
		t.Logf("%v after %v", err, time.Since(start))
		var de *deadline.Error
		if !errors.As(err, &de) || !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), want) {
			t.Fatalf("Handle = %v, want a stop naming %q", err, want)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Handle still waits 30 s after its context was cancelled")
	}
	if after := r.links.String(); after != before || len(r.records(t)) != 0 {
		t.Fatalf("a stopped Handle changed the host or journaled:\n%s\n%q", after, r.records(t))
	}
}

// TestReconcileStopsWithCtx: a Reconcile whose context has ended stops
// before the next VM and judges no store entry gone.
func TestReconcileStopsWithCtx(t *testing.T) {
	r := newRig(t, rigConfig)
	if _, err := r.eng.Handle(context.Background(), event(events.OpStarted, "vnet0", "vnet1")); err != nil {
		t.Fatal(err)
	}
	n := len(r.records(t))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := r.eng.Reconcile(ctx, []events.Event{event(events.OpReconnect, "vnet0", "vnet1")}, time.Time{})
	if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "reconciling 1 running domains: stopped") {
		t.Fatalf("Reconcile = %v, want it stopped", err)
	}
	if got := r.records(t); len(got) != n {
		t.Fatalf("a stopped Reconcile journaled %q", got[n:])
	}
}
