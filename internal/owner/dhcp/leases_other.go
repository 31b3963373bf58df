//go:build !linux

package dhcp

import "errors"

// Leases needs rtnetlink, which only Linux has; elsewhere (where the
// links package's planner and Fake still build, for unit tests) it says so.
func Leases(uplink string) ([]Lease, error) {
	return nil, errors.New("reading the leases of " + uplink + " needs Linux")
}
