package firewall

import "github.com/virtbridge/virtbridge/internal/apply"

// The Fake is what apply drives in callers' tests; the check lives in a
// test so the backend itself imports nothing of apply or the policy.
var _ apply.Firewall = (*Fake)(nil)
