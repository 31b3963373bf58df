package lab

import (
	"bufio"
	"io"
	"strings"
)

// parseLease finds mac in a dnsmasq lease file ("expiry mac ip host
// client-id" per line) and returns its address. MACs compare
// case-insensitively.
func parseLease(r io.Reader, mac string) (string, bool) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) >= 3 && strings.EqualFold(f[1], mac) {
			return f[2], true
		}
	}
	return "", false
}
