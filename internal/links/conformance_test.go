package links_test

import (
	"github.com/virtbridge/virtbridge/internal/apply"
	"github.com/virtbridge/virtbridge/internal/links"
)

// The compile-time checks live in a test file so that package links does
// not import apply: apply's own (internal) tests can then use links.Fake
// without an import cycle.
var _ apply.Links = (*links.Fake)(nil)
