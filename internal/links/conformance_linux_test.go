package links_test

import (
	"github.com/virtbridge/virtbridge/internal/apply"
	"github.com/virtbridge/virtbridge/internal/links"
)

var _ apply.Links = (*links.Manager)(nil)
