package engine

import (
	"errors"
	"fmt"

	"github.com/virtbridge/virtbridge/internal/firewall"
	"github.com/virtbridge/virtbridge/internal/links"
	"github.com/virtbridge/virtbridge/internal/sysctl"
)

// configFixable are the backend errors whose fix may be a key of the
// configuration. The backends do not know which file was loaded (--config,
// $VIRTBRIDGE_CONFIG): their messages say "in the configuration", and
// withConfigPath names the file.
var configFixable = []error{
	links.ErrNotBridge, links.ErrUplinkMissing, links.ErrUplinkAmbiguous,
	links.ErrUplinkBusy, links.ErrUnmovable, links.ErrDynamicAddress,
	sysctl.ErrBridgeNetfilter, firewall.ErrNoIptables,
}

// withConfigPath adds the path of the configuration in use to an error
// whose fix may be a key of it; other errors are returned as they are.
func (e *Engine) withConfigPath(err error) error {
	if err == nil || e.Config == nil || e.Config.Path == "" {
		return err
	}
	for _, target := range configFixable {
		if errors.Is(err, target) {
			return fmt.Errorf("%w (configuration: %s)", err, e.Config.Path)
		}
	}
	return err
}
