package names

import (
	"strings"
	"testing"
)

func TestIfname(t *testing.T) {
	good := []string{"br0", "vnet12", "br-up", "a", "abcdefghijklmno", "br_x.10"}
	for _, s := range good {
		if err := Ifname(s); err != nil {
			t.Errorf("Ifname(%q) = %v, want ok", s, err)
		}
	}
	bad := map[string]string{
		"":                 "empty",
		"abcdefghijklmnop": "16 bytes",
		".":                "reserved",
		"..":               "reserved",
		"br/0":             "'/'",
		"br 0":             "' '",
		"br\t0":            "'\\t'",
		"br:0":             "':'",
		"br\xff":           "UTF-8",
	}
	for s, want := range bad {
		err := Ifname(s)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Ifname(%q) = %v, want an error mentioning %s", s, err, want)
		}
	}
}

func TestUnicastMAC(t *testing.T) {
	if _, err := UnicastMAC("52:54:00:11:22:33"); err != nil {
		t.Fatal(err)
	}
	for s, want := range map[string]string{
		"11:22:33:44:55:66":       "multicast",
		"00:00:00:00:00:00":       "zeros",
		"52:54:00":                "not a 48-bit",
		"zz:54:00:11:22:33":       "not a 48-bit",
		"00:00:00:00:fe:80:00:00": "not a 48-bit",
	} {
		if _, err := UnicastMAC(s); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("UnicastMAC(%q) = %v, want %q", s, err, want)
		}
	}
}
