package policy

import (
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/virtbridge/virtbridge/internal/events"
)

// fixtureConfig manages the bridges the captured VMs use (br-a with an
// uplink, br-b isolated); br-missing and the macvtap parent stay unmanaged.
const fixtureConfig = `
bridges:
  br-a: {uplink: uplink0}
  br-b: {}
`

// TestFixturePlans plans every hook call captured from a real libvirtd
// (testdata/hook, see its README) and compares with what the hook must do.
func TestFixturePlans(t *testing.T) {
	want := map[string]string{
		"custom-tap/01-prepare-begin": "action=host bridge=br-a/uplink0 port=52:54:00:aa:03:01@br-a[vbtest0] net.ipv4.ip_forward=1 fw=br-a,br-b",
		"custom-tap/02-start-begin":   "action=none bridge=br-a/uplink0 port=52:54:00:aa:03:01@br-a[vbtest0]",
		"custom-tap/03-started-begin": "action=ports bridge=br-a/uplink0 port=52:54:00:aa:03:01@br-a[vbtest0]",
		"custom-tap/04-stopped-end":   "action=detach bridge=br-a/uplink0 port=52:54:00:aa:03:01@br-a[vbtest0]",
		"custom-tap/05-release-end":   "action=detach bridge=br-a/uplink0 port=52:54:00:aa:03:01@br-a[vbtest0]",

		"macvtap/01-prepare-begin": "action=none skip=52:54:00:aa:05:01",
		"macvtap/02-start-begin":   "action=none skip=52:54:00:aa:05:01",
		"macvtap/03-started-begin": "action=none skip=52:54:00:aa:05:01",
		"macvtap/04-stopped-end":   "action=none skip=52:54:00:aa:05:01",
		"macvtap/05-release-end":   "action=none skip=52:54:00:aa:05:01",

		"missing-bridge/01-prepare-begin": "action=none skip=52:54:00:aa:08:01",
		"missing-bridge/02-stopped-end":   "action=none skip=52:54:00:aa:08:01",
		"missing-bridge/03-release-end":   "action=none skip=52:54:00:aa:08:01",

		"network-bridge/01-prepare-begin": "action=host bridge=br-a/uplink0 port=52:54:00:aa:04:01@br-a[] net.ipv4.ip_forward=1 fw=br-a,br-b",
		"network-bridge/02-start-begin":   "action=none bridge=br-a/uplink0 port=52:54:00:aa:04:01@br-a[vnet0]",
		"network-bridge/03-started-begin": "action=ports bridge=br-a/uplink0 port=52:54:00:aa:04:01@br-a[vnet0]",
		"network-bridge/04-stopped-end":   "action=detach bridge=br-a/uplink0 port=52:54:00:aa:04:01@br-a[]",
		"network-bridge/05-release-end":   "action=detach bridge=br-a/uplink0 port=52:54:00:aa:04:01@br-a[]",

		"no-nic/01-prepare-begin": "action=none",
		"no-nic/02-start-begin":   "action=none",
		"no-nic/03-started-begin": "action=none",
		"no-nic/04-stopped-end":   "action=none",
		"no-nic/05-release-end":   "action=none",

		"one-nic/01-prepare-begin": "action=host bridge=br-a/uplink0 port=52:54:00:aa:01:01@br-a[] net.ipv4.ip_forward=1 fw=br-a,br-b",
		"one-nic/02-start-begin":   "action=none bridge=br-a/uplink0 port=52:54:00:aa:01:01@br-a[vnet0]",
		"one-nic/03-started-begin": "action=ports bridge=br-a/uplink0 port=52:54:00:aa:01:01@br-a[vnet0]",
		"one-nic/04-stopped-end":   "action=detach bridge=br-a/uplink0 port=52:54:00:aa:01:01@br-a[]",
		"one-nic/05-release-end":   "action=detach bridge=br-a/uplink0 port=52:54:00:aa:01:01@br-a[]",

		"reconnect/01-prepare-begin":   "action=host bridge=br-a/uplink0 port=52:54:00:aa:09:01@br-a[] net.ipv4.ip_forward=1 fw=br-a,br-b",
		"reconnect/02-start-begin":     "action=none bridge=br-a/uplink0 port=52:54:00:aa:09:01@br-a[vnet0]",
		"reconnect/03-started-begin":   "action=ports bridge=br-a/uplink0 port=52:54:00:aa:09:01@br-a[vnet0]",
		"reconnect/04-reconnect-begin": "action=host bridge=br-a/uplink0 port=52:54:00:aa:09:01@br-a[vnet0] net.ipv4.ip_forward=1 fw=br-a,br-b",
		"reconnect/05-stopped-end":     "action=detach bridge=br-a/uplink0 port=52:54:00:aa:09:01@br-a[]",
		"reconnect/06-release-end":     "action=detach bridge=br-a/uplink0 port=52:54:00:aa:09:01@br-a[]",

		"two-nics/01-prepare-begin": "action=host bridge=br-a/uplink0 bridge=br-b/ port=52:54:00:aa:02:01@br-a[] port=52:54:00:aa:02:02@br-b[] net.ipv4.ip_forward=1 fw=br-a,br-b",
		"two-nics/02-start-begin":   "action=none bridge=br-a/uplink0 bridge=br-b/ port=52:54:00:aa:02:01@br-a[vnet0] port=52:54:00:aa:02:02@br-b[vnet1]",
		"two-nics/03-started-begin": "action=ports bridge=br-a/uplink0 bridge=br-b/ port=52:54:00:aa:02:01@br-a[vnet0] port=52:54:00:aa:02:02@br-b[vnet1]",
		"two-nics/04-stopped-end":   "action=detach bridge=br-a/uplink0 bridge=br-b/ port=52:54:00:aa:02:01@br-a[] port=52:54:00:aa:02:02@br-b[]",
		"two-nics/05-release-end":   "action=detach bridge=br-a/uplink0 bridge=br-b/ port=52:54:00:aa:02:01@br-a[] port=52:54:00:aa:02:02@br-b[]",

		"user/01-prepare-begin": "action=none skip=52:54:00:aa:06:01",
		"user/02-start-begin":   "action=none skip=52:54:00:aa:06:01",
		"user/03-started-begin": "action=none skip=52:54:00:aa:06:01",
		"user/04-stopped-end":   "action=none skip=52:54:00:aa:06:01",
		"user/05-release-end":   "action=none skip=52:54:00:aa:06:01",
	}
	// The network-bridge VM's network, as libvirt stored it.
	netDir := t.TempDir()
	def, err := os.ReadFile(filepath.Join("..", "..", "testdata", "hook", "network-bridge", "defined-network.xml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(netDir, "lan-a.xml"), def, 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := mustConfig(t, fixtureConfig)
	files, _ := filepath.Glob(filepath.Join("..", "..", "testdata", "hook", "*", "[0-9]*.args"))
	seen := map[string]bool{}
	for _, f := range files {
		key := filepath.Base(filepath.Dir(f)) + "/" + strings.TrimSuffix(filepath.Base(f), ".args")
		seen[key] = true
		t.Run(key, func(t *testing.T) {
			args, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			stdin, err := os.Open(strings.TrimSuffix(f, ".args") + ".xml")
			if err != nil {
				t.Fatal(err)
			}
			defer stdin.Close()
			ev, err := events.ParseHook(strings.Split(strings.TrimRight(string(args), "\n"), "\n"), stdin)
			if err != nil {
				t.Fatal(err)
			}
			events.ResolveNetworks(&ev, []string{netDir})
			got := summary(Decide(cfg, ev))
			if w, ok := want[key]; !ok {
				t.Fatalf("no expectation for fixture; it plans to:\n%s", got)
			} else if got != w {
				t.Fatalf("plan:\n got %s\nwant %s", got, w)
			}
		})
	}
	var missing []string
	for k := range want {
		if !seen[k] {
			missing = append(missing, k)
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		t.Fatalf("fixtures missing from testdata/hook: %v", missing)
	}
}
