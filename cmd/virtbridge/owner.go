package main

import (
	"context"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/godbus/dbus/v5"

	"github.com/virtbridge/virtbridge/internal/doctor"
	"github.com/virtbridge/virtbridge/internal/links"
	"github.com/virtbridge/virtbridge/internal/owner"
	"github.com/virtbridge/virtbridge/internal/owner/dhcp"
	"github.com/virtbridge/virtbridge/internal/owner/handoff"
	"github.com/virtbridge/virtbridge/internal/owner/lease"
	"github.com/virtbridge/virtbridge/internal/paths"
)

// managerOwners detects, read-only, NetworkManager or systemd-networkd
// owning a link (handoff.Owners.Owner).
type managerOwners interface {
	Owner(ctx context.Context, link string) (owner.Owner, bool, error)
}

// busOwners returns the managers' detection over the system bus (dialled
// at the first question): none (nil) without a system bus; a manager
// running in another network namespace is not asked (handoff.ForHost). A
// bus that cannot be reached answers its error to each question. Tests
// replace it.
var busOwners = sync.OnceValues(func() (managerOwners, error) {
	o, _, err := handoff.ForHost() // the connection lives as long as the command
	if err != nil || o.NM == nil && o.Networkd == nil && o.Dial == nil {
		return nil, err
	}
	return o, nil
})

// uplinkOwner tells, read-only, who owns the link that carries the host's
// addresses for a bridge: link is the uplink (or the bridge) by name, mac
// selects it by MAC instead. NetworkManager or systemd-networkd, asked over
// the system bus, come first; otherwise the DHCP client or static addresses
// the kernel shows. It says why when the owner cannot be read.
func uplinkOwner(ctx context.Context, link, mac string) (owner.Owner, error) {
	if link == "" && mac != "" {
		hw, err := net.ParseMAC(mac)
		if err != nil {
			return owner.Owner{}, err
		}
		if link = links.NameByMAC(hw); link == "" {
			return owner.Owner{}, fmt.Errorf("no one link with MAC %s", mac)
		}
	}
	if link == "" {
		return owner.Owner{}, fmt.Errorf("no uplink")
	}
	mo, err := busOwners()
	if err != nil {
		return owner.Owner{}, err
	}
	if mo != nil {
		if o, ok, err := mo.Owner(ctx, link); ok || err != nil {
			return o, err
		}
	}
	return dhcp.Detect(ctx, link)
}

// keeperOwner tells, read-only, whether virtbridged keeps the lease of
// bridge (manager: virtbridged): its status under the run directory,
// written by a virtbridged that still runs.
func keeperOwner(bridge, uplink string) (owner.Owner, bool) {
	s, ok, err := lease.ReadStatus(paths.RunDir(), bridge)
	if err != nil || !ok {
		return owner.Owner{}, false
	}
	return owner.Owner{Kind: owner.Virtbridged, Uplink: uplink, Detail: s.Describe(time.Now())}, true
}

// ownerText is an owner in one line: "dhcp-client: dynamic address ...".
func ownerText(o owner.Owner) string {
	if o.Detail == "" {
		return string(o.Kind)
	}
	return string(o.Kind) + ": " + o.Detail
}

// doctorOwners is the managers' detection for doctor: nil when there is
// none to ask; a bus that cannot be reached answers its error for each
// uplink.
func doctorOwners() doctor.Owners {
	mo, err := busOwners()
	if err != nil {
		return failedOwners{err}
	}
	if mo == nil {
		return nil
	}
	return mo
}

// failedOwners answers err for every link.
type failedOwners struct{ err error }

func (f failedOwners) Owner(context.Context, string) (owner.Owner, bool, error) {
	return owner.Owner{}, false, f.err
}

// systemBusDial connects to the system bus for doctor's questions to the
// managers: nil (their state files are read instead) without a system bus
// or outside the machine's own network namespace, as for the handoff
// (handoff.ForHost). The connection lives as long as the command.
func systemBusDial() func() (*dbus.Conn, error) {
	o, _, err := handoff.ForHost()
	if err != nil {
		return nil
	}
	return o.Dial
}
