package hook

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/virtbridge/virtbridge/internal/apply"
	"github.com/virtbridge/virtbridge/internal/config"
	"github.com/virtbridge/virtbridge/internal/engine"
	"github.com/virtbridge/virtbridge/internal/firewall"
	"github.com/virtbridge/virtbridge/internal/journal"
	"github.com/virtbridge/virtbridge/internal/links"
	"github.com/virtbridge/virtbridge/internal/sysctl"
)

const vmXML = `<domain type='qemu'><name>vm1</name><uuid>00000000-0000-0000-0000-000000000001</uuid><devices>
<interface type='bridge'><mac address='52:54:00:aa:00:01'/><source bridge='br-a'/></interface>
<interface type='bridge'><mac address='52:54:00:aa:00:02'/><source bridge='%s'/></interface>
</devices></domain>`

// TestOnFailureWarnOnlyForHostFailures: with on_failure: warn a host that
// cannot be made right (an engine.HostError) lets the VM start with a
// warning, while a VM whose own XML is refused (an engine.PolicyError:
// its second NIC names the host's NIC as its bridge) is refused still.
// The hook tells them apart by the error's type alone.
func TestOnFailureWarnOnlyForHostFailures(t *testing.T) {
	for _, tc := range []struct {
		name, bridge, failOn string
		code                 int
		want                 string
	}{
		{"host failure", "br-a", "route-add", ExitOK, "warning (on_failure: warn, the VM goes on without it)"},
		{"policy refusal", "eth0", "", ExitRefused, `refused: NIC 52:54:00:aa:00:02 names "eth0" as its bridge`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			cfgPath := filepath.Join(dir, "virtbridge.yaml")
			if err := os.WriteFile(cfgPath, []byte("bridges: {br-a: {uplink: uplink0}}\non_failure: warn\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			lk := links.NewFake()
			lk.AddLink("uplink0", "veth", "52:54:00:00:00:99", "", "10.77.0.2/24")
			lk.AddRoute("uplink0", "default via 10.77.0.1 metric 100")
			lk.AddLink("eth0", "device", "52:54:00:00:00:01", "", "192.0.2.2/24")
			if tc.failOn != "" {
				lk.FailOn(tc.failOn)
			}
			before := lk.String()
			var stderr strings.Builder
			code := Run(Env{
				Args:       []string{"vm1", "prepare", "begin", "-"},
				Stdin:      strings.NewReader(strings.Replace(vmXML, "%s", tc.bridge, 1)),
				Stderr:     &stderr,
				ConfigPath: cfgPath,
				Engine: func(_ context.Context, cfg *config.Config) *engine.Engine {
					return &engine.Engine{
						Config:    cfg,
						Journal:   journal.New(journal.Options{Socket: filepath.Join(dir, "no-journald"), File: filepath.Join(dir, "journal.jsonl"), Stderr: &strings.Builder{}}),
						StorePath: filepath.Join(dir, "ports.json"),
						LockPath:  filepath.Join(dir, "lock"),
						LockWait:  time.Second,
						OpenHost: func() (*apply.Host, func(), error) {
							return &apply.Host{Links: lk, Sysctls: sysctl.NewFake(nil), Firewall: firewall.NewFake()}, func() {}, nil
						},
						LinkKind: func(name string) (string, error) {
							if l := lk.Link(name); l != nil {
								return l.Kind, nil
							}
							return "", nil
						},
					}
				},
				Exit: func(code int) { t.Errorf("the hook's deadline fired (exit %d)", code) },
			})
			if code != tc.code || !strings.Contains(stderr.String(), tc.want) {
				t.Fatalf("exit %d, stderr:\n%s\nwant exit %d with %q", code, stderr.String(), tc.code, tc.want)
			}
			if lk.String() != before {
				t.Errorf("the links changed:\n%s", lk.String())
			}
		})
	}
}
