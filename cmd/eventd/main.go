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

	"github.com/virtbridge/virtbridge/internal/eventd"
)

func main() {
	// newHandler (handler.go) builds the engine the daemon hands events to:
	// the same code path as the hook.
	os.Exit(eventd.Main(os.Args[1:], os.Stderr, newHandler))
}
