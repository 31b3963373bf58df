package firewall

import (
	"fmt"
	"strings"
	"testing"
)

func TestChooseZone(t *testing.T) {
	var got []string
	for _, c := range []struct {
		configured, recorded, runtime, permanent string
		ports                                    []string
		def                                      string
	}{
		{"dmz", "", "public", "", []string{"home"}, "public"},
		{"", "", "internal", "", []string{"home"}, "public"},
		{"", "", "", "work", []string{"home"}, "public"},
		{"", "", "", "", []string{"", "home"}, "public"},
		{"", "", "", "", nil, "public"},
		{"", "", "", "", []string{"trusted"}, "public"},
		{"", "", "", "", nil, "trusted"},
		{"trusted", "", "", "", nil, "public"},
		{"", "", "trusted", "", nil, "public"},
		{"", "public", "block", "block", []string{"home"}, "public"},
		{"dmz", "public", "block", "", nil, "public"},
	} {
		z, err := chooseZone("br0", c.configured, c.recorded, c.runtime, c.permanent, c.ports, c.def)
		if err != nil {
			z = "error: " + err.Error()
		}
		got = append(got, fmt.Sprintf("%q %q %q %q %q %q: %s", c.configured, c.recorded, c.runtime, c.permanent, c.ports, c.def, z))
	}
	trustedErr := "error: firewalld zone for bridge br0: its uplink's zone (or the default zone) is trusted, which opens the host to the whole segment: put the uplink in another zone, or set firewall: {firewalld_zone: trusted} to allow it"
	want := strings.Join([]string{
		`"dmz" "" "public" "" ["home"] "public": dmz`,
		`"" "" "internal" "" ["home"] "public": internal`,
		`"" "" "" "work" ["home"] "public": work`,
		`"" "" "" "" ["" "home"] "public": home`,
		`"" "" "" "" [] "public": public`,
		`"" "" "" "" ["trusted"] "public": ` + trustedErr,
		`"" "" "" "" [] "trusted": ` + trustedErr,
		`"trusted" "" "" "" [] "public": trusted`,
		`"" "" "trusted" "" [] "public": trusted`,
		`"" "public" "block" "block" ["home"] "public": public`,
		`"dmz" "public" "block" "" [] "public": dmz`,
	}, "\n")
	if g := strings.Join(got, "\n"); g != want {
		t.Errorf("got\n%s\nwant\n%s", g, want)
	}
}
