// Command virtbridged is virtbridge's event daemon: it listens to libvirt's
// domain events (VM started or stopped, NIC hot-plugged or unplugged) and to
// the kernel's link changes, and keeps the host's VM networking matching the
// configuration between hook calls. Run `virtbridged --help` for what it
// does and its flags; internal/eventd holds the daemon.
//
// Build it as virtbridged: go build -o bin/virtbridged ./cmd/eventd
package main

import (
	"os"
	"runtime/debug"

	"github.com/virtbridge/virtbridge/internal/eventd"
)

func main() {
	// A burst of link messages (a thousand taps at once) grows the heap;
	// collecting earlier keeps the daemon's RSS under 30 MiB (measured in
	// docs/BENCHMARKS.md: 31.9 → 27.8 MiB after such a burst).
	debug.SetGCPercent(50)
	// newHandler (handler.go) builds the engine the daemon hands events to:
	// the same code path as the hook.
	os.Exit(eventd.Main(os.Args[1:], os.Stderr, newHandler))
}
