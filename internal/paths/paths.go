// Package paths names the files virtbridge keeps on the host. Each directory
// can be moved with an environment variable, for tests and for hosts with
// an unusual layout (libvirtd runs the hook with a scrubbed environment, so
// production uses the defaults).
package paths

import (
	"os"
	"path/filepath"
)

// Defaults and the variables that override them.
const (
	DefaultRunDir   = "/run/virtbridge"     // $VIRTBRIDGE_RUN_DIR: lock, firewall cache
	DefaultStateDir = "/var/lib/virtbridge" // $VIRTBRIDGE_STATE_DIR: the port mapping
	DefaultLogDir   = "/var/log/virtbridge" // $VIRTBRIDGE_LOG_DIR: journal fallback
)

func dir(env, def string) string {
	if d := os.Getenv(env); d != "" {
		return d
	}
	return def
}

// RunDir holds volatile state: the host lock and caches.
func RunDir() string { return dir("VIRTBRIDGE_RUN_DIR", DefaultRunDir) }

// StateDir holds state that survives reboots: the port mapping store.
func StateDir() string { return dir("VIRTBRIDGE_STATE_DIR", DefaultStateDir) }

// LogDir holds the JSON-lines journal used where journald is absent.
func LogDir() string { return dir("VIRTBRIDGE_LOG_DIR", DefaultLogDir) }

// Lock is the host lock file, shared by the hook, the daemon and the CLI.
func Lock() string { return filepath.Join(RunDir(), "lock") }
