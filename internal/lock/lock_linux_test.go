package lock

import (
	"errors"
	"path/filepath"
	"testing"
	"time"
)

func TestExclusiveWithBoundedWait(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "lock")
	a, err := Acquire(path, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Acquire(path, 30*time.Millisecond); !errors.Is(err, ErrTimeout) {
		t.Fatalf("second Acquire while held = %v, want ErrTimeout", err)
	}
	done := make(chan error, 1)
	go func() {
		b, err := Acquire(path, 5*time.Second)
		if err == nil {
			err = b.Release()
		}
		done <- err
	}()
	time.Sleep(20 * time.Millisecond)
	if err := a.Release(); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("waiter did not get the lock after release: %v", err)
	}
	if err := (*Lock)(nil).Release(); err != nil {
		t.Fatal(err)
	}
}
