package doctor

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/virtbridge/virtbridge/internal/config"
)

// find returns the findings of check about object ("" matches any).
func find(r *Report, check, object string) []Finding {
	var out []Finding
	for _, f := range r.Findings {
		if f.Check == check && (object == "" || f.Object == object) {
			out = append(out, f)
		}
	}
	return out
}

// one returns the single finding of check about object, failing the test
// (with the whole report) when there is not exactly one.
func one(t *testing.T, r *Report, check, object string) Finding {
	t.Helper()
	fs := find(r, check, object)
	if len(fs) != 1 {
		t.Fatalf("want one %q finding about %q, got %d:\n%s", check, object, len(fs), dumpReport(r))
	}
	return fs[0]
}

// want checks a finding's status and that its message contains each of
// the fragments.
func want(t *testing.T, f Finding, st Status, fragments ...string) {
	t.Helper()
	if f.Status != st {
		t.Errorf("%s %s: status %s, want %s: %s", f.Check, f.Object, f.Status, st, f.Message)
	}
	text := f.Message + " | " + f.Why + " | " + f.Fix
	for _, s := range fragments {
		if !strings.Contains(text, s) {
			t.Errorf("%s %s: %q does not say %q", f.Check, f.Object, text, s)
		}
	}
}

func dumpReport(r *Report) string {
	var b strings.Builder
	for _, f := range r.Findings {
		fmt.Fprintf(&b, "  %-4s %-10s %-16s %s: %s\n", f.Status, f.Section, f.Check, f.Object, f.Message)
	}
	return b.String()
}

func mustConfig(t *testing.T, y string) *config.Config {
	t.Helper()
	cfg, err := config.Parse("test.yaml", []byte(y))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// buildHook builds the real virtbridge-hook into dir: the install check
// recognises it by the build information Go writes into the binary.
func buildHook(t *testing.T, dir string) string {
	t.Helper()
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("skipped: needs the go command to build virtbridge-hook")
	}
	p := filepath.Join(dir, "virtbridge-hook")
	if out, err := exec.Command("go", "build", "-o", p, "../../cmd/hook").CombinedOutput(); err != nil {
		t.Fatalf("building the hook: %v\n%s", err, out)
	}
	return p
}

// fakeLinks is a fixed list of links.
type fakeLinks []Link

func (f fakeLinks) Links() ([]Link, error) { return f, nil }

// fakeSysctls is a fixed set of kernel settings; a missing one reads as
// an error.
type fakeSysctls map[string]string

func (f fakeSysctls) Get(name string) (string, error) {
	v, ok := f[name]
	if !ok {
		return "", fmt.Errorf("sysctl %q: %w", name, os.ErrNotExist)
	}
	return v, nil
}

// fakeDomains are domains read from XML files.
type fakeDomains []Domain

func (f fakeDomains) Domains() ([]Domain, error) { return f, nil }

// domainFile reads testdata/domains/NAME.xml as a domain.
func domainFile(t *testing.T, name string, active bool) Domain {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "domains", name+".xml"))
	if err != nil {
		t.Fatal(err)
	}
	return Domain{Name: name, Active: active, XML: string(b)}
}

var (
	_ Links   = fakeLinks(nil)
	_ Sysctls = fakeSysctls(nil)
	_ Domains = fakeDomains(nil)
)
