package main

import (
	"context"
	"fmt"
	"net"

	"github.com/virtbridge/virtbridge/internal/links"
	"github.com/virtbridge/virtbridge/internal/owner"
	"github.com/virtbridge/virtbridge/internal/owner/dhcp"
)

// uplinkOwner tells, read-only, who owns the link that carries the host's
// addresses for a bridge: link is the uplink by name, mac selects it by MAC
// instead. It says why when the owner cannot be read. NetworkManager and
// systemd-networkd are not detected here yet: they answer as the DHCP
// client or static addresses they hold.
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
	return dhcp.Detect(ctx, link)
}

// ownerText is an owner in one line: "dhcp-client: dynamic address ...".
func ownerText(o owner.Owner) string {
	if o.Detail == "" {
		return string(o.Kind)
	}
	return string(o.Kind) + ": " + o.Detail
}
