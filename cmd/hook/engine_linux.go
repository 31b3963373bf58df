package main

import (
	"time"

	"github.com/virtbridge/virtbridge/internal/config"
	"github.com/virtbridge/virtbridge/internal/deadline"
	"github.com/virtbridge/virtbridge/internal/engine"
)

// lockMargin is kept from the hook's deadline when waiting for the host
// lock: time to report the busy lock (naming its holder) and journal the
// refusal before the deadline would cut the hook short.
const lockMargin = 500 * time.Millisecond

// newEngine is built once the config is read: the lock wait is what is
// left of hook_timeout, less lockMargin.
func newEngine(cfg *config.Config) *engine.Engine {
	return engine.ForHost(cfg, deadline.Remaining(config.MaxHookTimeout, lockMargin))
}
