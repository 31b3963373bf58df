package main

import (
	"context"
	"time"

	"github.com/virtbridge/virtbridge/internal/config"
	"github.com/virtbridge/virtbridge/internal/deadline"
	"github.com/virtbridge/virtbridge/internal/engine"
)

// lockMargin is kept from the hook's deadline when waiting for the host
// lock: time to report the busy lock (naming its holder) and journal the
// refusal before the deadline would cut the hook short.
const lockMargin = 500 * time.Millisecond

// newEngine is built once the config is read: the lock wait is capped at
// what is left of the run's context (hook_timeout), less lockMargin (at
// least a millisecond: a zero LockWait would leave the wait to the
// context alone).
func newEngine(ctx context.Context, cfg *config.Config) *engine.Engine {
	return engine.ForHost(cfg, max(deadline.Left(ctx, lockMargin, config.MaxHookTimeout), time.Millisecond))
}
