package packaging

import (
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// module is this module's import path.
const module = "github.com/virtbridge/virtbridge"

// deps returns the packages pkg depends on, itself included, as go list
// -deps sees them from the module root.
func deps(t *testing.T, pkg string) []string {
	t.Helper()
	goTool, err := exec.LookPath("go")
	if err != nil {
		goTool = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	cmd := exec.Command(goTool, "list", "-deps", "-f", "{{.ImportPath}}", pkg)
	cmd.Dir = ".."
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list -deps %s: %v", pkg, err)
	}
	return strings.Fields(string(out))
}

// TestShippedBinariesLeaveTestEnvOut: no binary the packages install
// imports the test environments (internal/testenv: labs with libvirtd,
// namespaces, journald for tests). A product package that reached for one
// would ship test scaffolding, and its tests would lose their line
// between product and harness.
func TestShippedBinariesLeaveTestEnvOut(t *testing.T) {
	for _, cmd := range []string{"./cmd/hook", "./cmd/virtbridge", "./cmd/eventd"} {
		for _, p := range deps(t, cmd) {
			if strings.HasPrefix(p, module+"/internal/testenv") {
				t.Errorf("%s imports %s: test environments must stay out of what ships", cmd, p)
			}
		}
	}
}

// TestBackendsKnowNoPolicy: the backends (links, sysctl, firewall) take
// the desired-state types of the leaf package internal/desired and know
// nothing of the policy that produced them, the configuration file,
// libvirt's XML or apply, which drives them.
func TestBackendsKnowNoPolicy(t *testing.T) {
	forbidden := []string{
		module + "/internal/policy", module + "/internal/config", module + "/internal/events", module + "/internal/apply",
		"go.yaml.in/yaml", "gopkg.in/yaml", "libvirt.org/go/libvirtxml", "libvirt.org/go/libvirt",
	}
	for _, b := range []string{"./internal/links", "./internal/sysctl", "./internal/firewall", "./internal/desired"} {
		for _, p := range deps(t, b) {
			for _, f := range forbidden {
				if p == f || strings.HasPrefix(p, f+"/") {
					t.Errorf("%s depends on %s", b, p)
				}
			}
		}
	}
	for _, p := range deps(t, "./internal/desired") {
		if p != module+"/internal/desired" && strings.HasPrefix(p, module+"/") {
			t.Errorf("internal/desired, the leaf of desired-state types, imports %s", p)
		}
	}
}
