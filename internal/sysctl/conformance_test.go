package sysctl

import "github.com/virtbridge/virtbridge/internal/apply"

// The backends are what apply drives; the check lives in a test so the
// backend itself imports nothing of apply or the policy.
var (
	_ apply.Sysctls = (*Manager)(nil)
	_ apply.Sysctls = (*Fake)(nil)
)
