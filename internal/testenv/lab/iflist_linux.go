package lab

import (
	"context"
	"fmt"
	"strings"
)

// Iface is one NIC of a domain as `virsh domiflist` lists it.
type Iface struct {
	Tap    string // "-" while the domain is not running
	Type   string
	Source string // bridge or network
	Model  string
	MAC    string
}

// parseIfList reads `virsh domiflist` output: a header, a rule, then one
// "Interface Type Source Model MAC" line per NIC.
func parseIfList(out string) []Iface {
	var list []Iface
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) == 5 && strings.Count(f[4], ":") == 5 {
			list = append(list, Iface{Tap: f[0], Type: f[1], Source: f[2], Model: f[3], MAC: strings.ToLower(f[4])})
		}
	}
	return list
}

// Interfaces returns the NICs of a domain, with the taps libvirt made for
// them, as libvirt itself reports them (`virsh domiflist`).
func (l *Lab) Interfaces(ctx context.Context, domain string) ([]Iface, error) {
	out, err := l.Virsh(ctx, "domiflist", domain)
	if err != nil {
		return nil, fmt.Errorf("listing interfaces of %q: %w", domain, err)
	}
	return parseIfList(out), nil
}

// TapOf returns the tap of the domain's NIC with the given MAC.
func (l *Lab) TapOf(ctx context.Context, domain, mac string) (string, error) {
	list, err := l.Interfaces(ctx, domain)
	if err != nil {
		return "", err
	}
	for _, i := range list {
		if strings.EqualFold(i.MAC, mac) && i.Tap != "-" {
			return i.Tap, nil
		}
	}
	return "", fmt.Errorf("domain %q has no running NIC with mac %s: %+v", domain, mac, list)
}

// UUID returns the UUID of a domain.
func (l *Lab) UUID(ctx context.Context, domain string) (string, error) {
	out, err := l.Virsh(ctx, "domuuid", domain)
	if err != nil {
		return "", fmt.Errorf("reading uuid of %q: %w", domain, err)
	}
	return strings.TrimSpace(out), nil
}
