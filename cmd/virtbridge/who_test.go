package main

import (
	"testing"
	"time"
)

// TestParseTime: each --at form, with its fraction of a second kept, and a
// time of day alone taken as today.
func TestParseTime(t *testing.T) {
	now := time.Date(2026, 11, 30, 14, 30, 0, 0, time.Local)
	for in, want := range map[string]time.Time{
		"2026-11-29T14:02:05.25Z": time.Date(2026, 11, 29, 14, 2, 5, 250_000_000, time.UTC),
		"2026-11-29 14:02":        time.Date(2026, 11, 29, 14, 2, 0, 0, time.Local),
		"2026-11-29 14:02:05.5":   time.Date(2026, 11, 29, 14, 2, 5, 500_000_000, time.Local),
		"14:02:05":                time.Date(2026, 11, 30, 14, 2, 5, 0, time.Local),
		"14:02:05.120":            time.Date(2026, 11, 30, 14, 2, 5, 120_000_000, time.Local),
		"14:02":                   time.Date(2026, 11, 30, 14, 2, 0, 0, time.Local),
	} {
		got, err := parseTime(in, now)
		if err != nil || !got.Equal(want) {
			t.Errorf("parseTime(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "yesterday", "25:00", "14:02:05x"} {
		if got, err := parseTime(bad, now); err == nil {
			t.Errorf("parseTime(%q) = %v, want an error", bad, got)
		}
	}
}
