package firewall

import (
	"errors"
	"fmt"
)

// Family is an IP family: each has its own iptables command and tables.
type Family int

// The families virtbridge keeps rules in.
const (
	IPv4 Family = iota
	IPv6
)

// String returns "ipv4" or "ipv6".
func (f Family) String() string {
	if f == IPv6 {
		return "ipv6"
	}
	return "ipv4"
}

// command is the family's iptables command name.
func (f Family) command() string {
	if f == IPv6 {
		return "ip6tables"
	}
	return "iptables"
}

// Variant is an iptables implementation. Both keep their own rules, and a
// packet must pass both, so virtbridge must use the one the host uses.
type Variant string

// The iptables variants.
const (
	NFT    Variant = "nft"    // iptables-nft: rules in nf_tables
	Legacy Variant = "legacy" // iptables-legacy: the old x_tables
)

// Backends accepted in desired.Firewall.Backend.
const (
	BackendAuto   = "iptables" // detect the variant
	BackendNFT    = "iptables-nft"
	BackendLegacy = "iptables-legacy"
	BackendNone   = "none"
)

// ErrNoIptables is returned when neither iptables variant is installed.
var ErrNoIptables = errors.New(`no iptables found (looked for iptables-nft and iptables-legacy): ` +
	`install the iptables package, or set firewall.backend: none in the configuration`)

// detector answers the questions that choose the variant. The answers cost
// iptables runs, so chooseVariant asks only what it needs.
type detector interface {
	installed(v Variant) bool
	// rules counts rules and non-ACCEPT policies in all tables of both
	// families of variant v.
	rules(v Variant) (int, error)
}

// chooseVariant is the one place that picks the variant for backend
// "iptables": the only one installed; else legacy when legacy holds rules
// and nf_tables does not (a host whose firewall still lives in legacy
// tables); else nft, the default of current distributions.
func chooseVariant(d detector) (Variant, error) {
	nft, legacy := d.installed(NFT), d.installed(Legacy)
	switch {
	case !nft && !legacy:
		return "", ErrNoIptables
	case !legacy:
		return NFT, nil
	case !nft:
		return Legacy, nil
	}
	l, err := d.rules(Legacy)
	if err != nil {
		return "", err
	}
	if l == 0 {
		return NFT, nil
	}
	n, err := d.rules(NFT)
	if err != nil {
		return "", err
	}
	if n == 0 {
		return Legacy, nil
	}
	return NFT, nil
}

// variantOf maps a configured backend to a variant; "" for detection.
func variantOf(backend string) (Variant, error) {
	switch backend {
	case BackendAuto, "":
		return "", nil
	case BackendNFT:
		return NFT, nil
	case BackendLegacy:
		return Legacy, nil
	}
	return "", fmt.Errorf("firewall backend %q: want iptables, iptables-nft, iptables-legacy or none", backend)
}
