package main

import (
	"time"

	"github.com/virtbridge/virtbridge/internal/config"
	"github.com/virtbridge/virtbridge/internal/engine"
)

// lockWait bounds how long the hook waits for the host lock; libvirtd waits
// for the hook meanwhile.
const lockWait = 20 * time.Second

func newEngine(cfg *config.Config) *engine.Engine {
	return engine.ForHost(cfg, lockWait)
}
