package revert

import (
	"errors"
	"strings"
	"testing"
)

func TestFailRunsInReverseAndJoinsErrors(t *testing.T) {
	var r Reverter
	var order []string
	r.Add(func() error { order = append(order, "a"); return nil })
	r.Add(func() error { order = append(order, "b"); return errors.New("b failed") })
	r.Add(func() error { order = append(order, "c"); return nil })
	err := r.Fail()
	if got := strings.Join(order, ""); got != "cba" {
		t.Fatalf("undo order = %q, want cba", got)
	}
	if err == nil || !strings.Contains(err.Error(), "b failed") {
		t.Fatalf("Fail() = %v, want the failing step's error", err)
	}
	if r.Len() != 0 {
		t.Fatalf("stack not emptied: %d", r.Len())
	}
}

func TestSuccessForgets(t *testing.T) {
	var r Reverter
	ran := false
	r.Add(func() error { ran = true; return nil })
	r.Success()
	if err := r.Fail(); err != nil || ran {
		t.Fatalf("after Success, Fail ran a step (ran=%v err=%v)", ran, err)
	}
}
