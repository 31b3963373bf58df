package config

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// TestHookTimeout: hook_timeout defaults to 20 s, takes a duration in
// [1s, 5m], and anything else is refused with file:line.
func TestHookTimeout(t *testing.T) {
	cfg, err := Parse("c.yaml", []byte("bridges: {br0: {}}\n"))
	if err != nil || cfg.HookTimeout != 20*time.Second || Default().HookTimeout != DefaultHookTimeout {
		t.Fatalf("default hook_timeout = %v (%v), want 20s", cfg.HookTimeout, err)
	}
	for in, want := range map[string]time.Duration{"1s": time.Second, "90s": 90 * time.Second, "5m": 5 * time.Minute} {
		cfg, err := Parse("c.yaml", []byte("hook_timeout: "+in+"\n"))
		if err != nil || cfg.HookTimeout != want {
			t.Errorf("hook_timeout: %s = %v (%v), want %v", in, cfg.HookTimeout, err, want)
		}
	}
	for _, in := range []string{"999ms", "0", "-5s", "5m1s", "soon", "20", "[1s]", "{a: 1}", "''"} {
		_, err := Parse("c.yaml", []byte("on_failure: warn\nhook_timeout: "+in+"\n"))
		var ce *Error
		if !errors.As(err, &ce) || !strings.Contains(err.Error(), "c.yaml:2: hook_timeout") {
			t.Errorf("hook_timeout: %s: %v, want a refusal at c.yaml:2", in, err)
		}
	}
	if _, err := Parse("c.yaml", []byte("hook_timeout: soon\n")); err == nil || !strings.Contains(err.Error(), "between 1s and 5m0s") {
		t.Errorf("message does not give the range: %v", err)
	}
}
