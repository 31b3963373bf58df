package firewall

import "github.com/virtbridge/virtbridge/internal/apply"

// The real firewall is what apply drives on a host.
var _ apply.Firewall = (*Firewall)(nil)
