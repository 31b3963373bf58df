package events

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/virtbridge/virtbridge/internal/names"
)

// FuzzParseHook feeds the hook parser hostile argv and stdin. Whatever it
// accepts must hold only valid names and unicast MACs.
func FuzzParseHook(f *testing.F) {
	f.Add("vm1", "prepare", []byte(goodXML))
	f.Add("vm1", "stopped", []byte("<domain><name>vm1</name></domain>"))
	files, _ := filepath.Glob(filepath.Join("..", "..", "testdata", "hook", "*", "*.xml"))
	for _, file := range files {
		if data, err := os.ReadFile(file); err == nil {
			args, _ := os.ReadFile(strings.TrimSuffix(file, ".xml") + ".args")
			a := strings.Split(strings.TrimSpace(string(args)), "\n")
			if len(a) == 4 {
				f.Add(a[0], a[1], data)
			}
		}
	}
	f.Fuzz(func(t *testing.T, domain, op string, stdin []byte) {
		ev, err := ParseHook([]string{domain, op, "begin", "-"}, bytes.NewReader(stdin))
		if err != nil {
			return
		}
		if ev.Domain != domain {
			t.Fatalf("accepted domain %q for argv %q", ev.Domain, domain)
		}
		for _, n := range ev.NICs {
			if n.Bridge != "" && names.Ifname(n.Bridge) != nil {
				t.Fatalf("accepted bridge %q", n.Bridge)
			}
			if n.Tap != "" && names.Ifname(n.Tap) != nil {
				t.Fatalf("accepted tap %q", n.Tap)
			}
			if n.MAC != "" {
				if _, err := names.UnicastMAC(n.MAC); err != nil {
					t.Fatalf("accepted MAC %q", n.MAC)
				}
			}
		}
	})
}
