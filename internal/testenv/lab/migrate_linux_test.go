package lab

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestLiveMigrationHookCalls migrates a (paused, TCG, disk-less) VM live
// between two labs with `virsh migrate --live` (control over the target
// libvirtd's socket, data over a veth between their namespaces) and
// records the qemu hook calls on both sides. It checks what `virtbridge
// who` relies on: the target's hook gets migrate, prepare, start, started
// (its tap exists from start) before the source's gets stopped and
// release. With $VIRTBRIDGE_CAPTURE_MIGRATION set to a directory it
// writes the calls there as testdata/hook/live-migration holds them.
func TestLiveMigrationHookCalls(t *testing.T) {
	SkipIfUnavailable(t)
	hook := filepath.Join(t.TempDir(), "capturehook")
	if out, err := exec.Command("go", "build", "-o", hook, "github.com/virtbridge/virtbridge/internal/testenv/lab/capturehook").CombinedOutput(); err != nil {
		t.Fatalf("building capturehook: %v\n%s", err, out)
	}
	src := ForTest(t, Options{HookPath: hook, Logf: t.Logf})
	dst := ForTest(t, Options{HookPath: hook, Logf: t.Logf})
	for _, l := range []*Lab{src, dst} {
		d, err := l.HostPath("/run/virtbridge/hook-capture")
		if err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		l.RunHV(t, "ip", "link", "add", "br-a", "type", "bridge")
		l.RunHV(t, "ip", "link", "set", "br-a", "up")
	}
	if out, err := exec.Command("ip", "link", "add", "vbmmig0", "netns", src.HVNetns(), "type", "veth",
		"peer", "name", "vbmmig1", "netns", dst.HVNetns()).CombinedOutput(); err != nil {
		t.Fatalf("veth between the labs: %v\n%s", err, out)
	}
	src.RunHV(t, "ip", "addr", "add", "10.79.0.1/24", "dev", "vbmmig0")
	src.RunHV(t, "ip", "link", "set", "vbmmig0", "up")
	dst.RunHV(t, "ip", "addr", "add", "10.79.0.2/24", "dev", "vbmmig1")
	dst.RunHV(t, "ip", "link", "set", "vbmmig1", "up")
	x, err := DomainXML(VM{Name: "vbmmig", MAC: "52:54:00:f2:00:01", Bridges: []string{"br-a"}})
	if err != nil {
		t.Fatal(err)
	}
	src.DefineForTest(t, "vbmmig", x)
	src.RunVirsh(t, "start", "--paused", "vbmmig")
	begin := time.Now()
	out, err := src.Virsh(t.Context(), "migrate", "--live", "vbmmig", "qemu+unix:///system?socket="+dst.inNS("/run/libvirt/libvirt-sock"),
		"tcp://10.79.0.2", "--listen-address", "10.79.0.2")
	if err != nil {
		t.Fatalf("virsh migrate --live: %v\n%s", err, out)
	}
	t.Cleanup(func() { dst.Virsh(t.Context(), "destroy", "vbmmig") })
	t.Logf("virsh migrate --live took %v", time.Since(begin).Round(time.Millisecond))
	var got []string
	for _, side := range []struct {
		name string
		l    *Lab
	}{{"source", src}, {"target", dst}} {
		got = append(got, capturedCalls(t, side.l, side.name)...)
	}
	slices.Sort(got) // by time
	for i := range got {
		got[i] = got[i][strings.Index(got[i], " ")+1:]
	}
	want := []string{"source prepare", "source start", "source started",
		"target migrate", "target prepare", "target start", "target started",
		"source stopped", "source release"}
	if !slices.Equal(got, want) {
		t.Errorf("hook calls in time order:\n  %s\nwant:\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
}

// capturedCalls returns the lab's hook calls as "TIME SIDE OP", writing
// them out when $VIRTBRIDGE_CAPTURE_MIGRATION names a directory.
func capturedCalls(t *testing.T, l *Lab, side string) []string {
	t.Helper()
	d, err := l.HostPath("/run/virtbridge/hook-capture")
	if err != nil {
		t.Fatal(err)
	}
	es, err := os.ReadDir(d)
	if err != nil {
		t.Fatal(err)
	}
	var calls []string
	for i, e := range es {
		st, err := os.Stat(filepath.Join(d, e.Name(), "done"))
		if err != nil {
			t.Fatalf("hook call %s incomplete: %v", e.Name(), err)
		}
		args, _ := os.ReadFile(filepath.Join(d, e.Name(), "args"))
		a := strings.Split(strings.TrimSpace(string(args)), "\n")
		if len(a) < 3 {
			t.Fatalf("hook call %s: argv %q", e.Name(), a)
		}
		calls = append(calls, fmt.Sprintf("%d %s %s", st.ModTime().UnixNano(), side, a[1]))
		if out := os.Getenv("VIRTBRIDGE_CAPTURE_MIGRATION"); out != "" {
			stdin, _ := os.ReadFile(filepath.Join(d, e.Name(), "stdin"))
			base := filepath.Join(out, side, fmt.Sprintf("%02d-%s-%s", i+1, a[1], a[2]))
			os.MkdirAll(filepath.Dir(base), 0o755)
			os.WriteFile(base+".args", args, 0o644)
			os.WriteFile(base+".xml", stdin, 0o644)
		}
	}
	return calls
}
