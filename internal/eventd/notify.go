package eventd

import (
	"fmt"
	"time"

	sd "github.com/coreos/go-systemd/v22/daemon"
)

// sdNotify sends state to $NOTIFY_SOCKET (a unix datagram socket, "@" for
// an abstract one). Without the variable, as when not run by systemd with
// Type=notify, it does nothing.
func sdNotify(state string) error {
	_, err := sd.SdNotify(false, state)
	return err
}

// watchdogFromEnv returns the ping period systemd asks for: half of
// $WATCHDOG_USEC, as sd_watchdog_enabled(3) recommends, or 0 when no
// watchdog is set or $WATCHDOG_PID names another process.
func watchdogFromEnv() (time.Duration, error) {
	d, err := sd.SdWatchdogEnabled(false)
	if err != nil {
		return 0, fmt.Errorf("reading $WATCHDOG_USEC: %w", err)
	}
	return d / 2, nil
}
