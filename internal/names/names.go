// Package names validates the identifiers virtbridge takes from untrusted
// input (domain XML, hook argv, config): Linux interface names and MAC
// addresses.
package names

import (
	"fmt"
	"net"
	"strings"
	"unicode/utf8"
)

// MaxIfname is the longest Linux interface name in bytes (IFNAMSIZ-1).
const MaxIfname = 15

// Ifname reports whether s is usable as a Linux interface name, with the
// kernel's own rules (dev_valid_name): 1–15 bytes, not "." or "..", no '/',
// ':' or whitespace. It returns an error that says which rule broke.
func Ifname(s string) error {
	switch {
	case s == "":
		return fmt.Errorf("empty interface name")
	case len(s) > MaxIfname:
		return fmt.Errorf("interface name %q is %d bytes long, the kernel allows at most %d", s, len(s), MaxIfname)
	case s == "." || s == "..":
		return fmt.Errorf("interface name %q is reserved", s)
	case !utf8.ValidString(s):
		return fmt.Errorf("interface name %q is not valid UTF-8", s)
	}
	for _, r := range s {
		if r == '/' || r == ':' || r <= ' ' || r == 0x7f || strings.ContainsRune("\u0085\u00a0", r) {
			return fmt.Errorf("interface name %q contains %q, which the kernel refuses", s, r)
		}
	}
	return nil
}

// UnicastMAC parses a 48-bit Ethernet address and refuses the ones a NIC
// cannot use as its own: multicast (first octet odd: the cause of the classic
// "cannot assign requested address") and all-zero.
func UnicastMAC(s string) (net.HardwareAddr, error) {
	mac, err := net.ParseMAC(s)
	if err != nil || len(mac) != 6 {
		return nil, fmt.Errorf("%q is not a 48-bit MAC address (want aa:bb:cc:dd:ee:ff)", s)
	}
	if mac[0]&1 == 1 {
		return nil, fmt.Errorf("MAC %s is a multicast address (first octet %02x is odd); "+
			"a NIC needs a unicast MAC, e.g. 52:54:00:xx:xx:xx", mac, mac[0])
	}
	if string(mac) == "\x00\x00\x00\x00\x00\x00" {
		return nil, fmt.Errorf("MAC %s is all zeros", mac)
	}
	return mac, nil
}
