package sysctl

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/virtbridge/virtbridge/internal/apply"
	"github.com/virtbridge/virtbridge/internal/change"
	"github.com/virtbridge/virtbridge/internal/desired"
	"github.com/virtbridge/virtbridge/internal/revert"
)

// tree writes files below a temporary root standing for /proc/sys.
func tree(t *testing.T, files map[string]string) string {
	t.Helper()
	root := t.TempDir()
	for name, v := range files {
		p := filepath.Join(root, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(v), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

func read(t *testing.T, root, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, filepath.FromSlash(name)))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func render(cs []change.Change) string {
	var s []string
	for _, c := range cs {
		s = append(s, c.String())
	}
	return strings.Join(s, "\n")
}

// backends runs a test against the real Manager (on a temporary tree) and
// the Fake, which must behave the same.
func backends(t *testing.T, files map[string]string, f func(t *testing.T, s apply.Sysctls, get func(string) string)) {
	t.Run("manager", func(t *testing.T) {
		root := tree(t, files)
		f(t, New(root), func(name string) string {
			return normalize(read(t, root, strings.ReplaceAll(name, ".", "/")))
		})
	})
	t.Run("fake", func(t *testing.T) {
		vals := map[string]string{}
		for k, v := range files {
			vals[strings.ReplaceAll(k, "/", ".")] = v
		}
		fk := NewFake(vals)
		f(t, fk, func(name string) string { return fk.Values[name] })
	})
}

func TestEnsureWritesOnlyOnDifferenceAndIsIdempotent(t *testing.T) {
	backends(t, map[string]string{
		"net/ipv4/ip_forward":                "0\n",
		"net/bridge/bridge-nf-call-iptables": "1\n",
	}, func(t *testing.T, s apply.Sysctls, get func(string) string) {
		var rv revert.Reverter
		cs, err := s.Ensure(context.Background(), desired.Sysctl{Name: "net.ipv4.ip_forward", Value: "1"}, &rv)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := render(cs), `sysctl-changed net.ipv4.ip_forward: "0" -> "1"`; got != want {
			t.Errorf("first Ensure changes:\n got %s\nwant %s", got, want)
		}
		if got := get("net.ipv4.ip_forward"); got != "1" {
			t.Errorf("after Ensure ip_forward = %q, want 1", got)
		}
		cs, err = s.Ensure(context.Background(), desired.Sysctl{Name: "net.ipv4.ip_forward", Value: "1"}, &rv)
		if err != nil || len(cs) != 0 {
			t.Errorf("second Ensure: changes %v, err %v; want none", cs, err)
		}
		cs, err = s.Ensure(context.Background(), desired.Sysctl{Name: "net.bridge.bridge-nf-call-iptables", Value: "1"}, &rv)
		if err != nil || len(cs) != 0 {
			t.Errorf("Ensure of a value already set: changes %v, err %v; want none", cs, err)
		}
		if rv.Len() != 1 {
			t.Errorf("undo steps = %d, want 1 (one write)", rv.Len())
		}
		if err := rv.Fail(); err != nil {
			t.Fatal(err)
		}
		if got := get("net.ipv4.ip_forward"); got != "0" {
			t.Errorf("after undo ip_forward = %q, want 0", got)
		}
	})
}

func TestEnsureErrors(t *testing.T) {
	files := map[string]string{"net/ipv4/ip_forward": "0\n"}
	backends(t, files, func(t *testing.T, s apply.Sysctls, _ func(string) string) {
		var rv revert.Reverter
		_, err := s.Ensure(context.Background(), desired.Sysctl{Name: "net.bridge.bridge-nf-call-iptables", Value: "1"}, &rv)
		if !errors.Is(err, ErrBridgeNetfilter) {
			t.Errorf("net.bridge setting without net/bridge: err = %v, want ErrBridgeNetfilter", err)
		} else if !strings.Contains(err.Error(), "modprobe br_netfilter") {
			t.Errorf("error does not say what to do: %v", err)
		}
		_, err = s.Ensure(context.Background(), desired.Sysctl{Name: "net.ipv6.conf.all.forwarding", Value: "1"}, &rv)
		if !errors.Is(err, fs.ErrNotExist) || errors.Is(err, ErrBridgeNetfilter) {
			t.Errorf("missing setting: err = %v, want fs.ErrNotExist", err)
		}
		_, err = s.Ensure(context.Background(), desired.Sysctl{Name: "net.ipv4.ip_forward", Value: " "}, &rv)
		if err == nil {
			t.Error("empty value: no error")
		}
		if rv.Len() != 0 {
			t.Errorf("failed Ensures left %d undo steps", rv.Len())
		}
	})
}

func TestBridgeSettingMissingWithBridgeDir(t *testing.T) {
	// net/bridge exists (br_netfilter loaded) but the file does not: a plain
	// "not found", not the br_netfilter advice.
	root := tree(t, map[string]string{"net/bridge/bridge-nf-call-arptables": "1\n"})
	_, err := New(root).Ensure(context.Background(), desired.Sysctl{Name: "net.bridge.bridge-nf-call-iptables", Value: "1"}, &revert.Reverter{})
	if !errors.Is(err, fs.ErrNotExist) || errors.Is(err, ErrBridgeNetfilter) {
		t.Errorf("err = %v, want fs.ErrNotExist without ErrBridgeNetfilter", err)
	}
}

func TestPath(t *testing.T) {
	m := New("/proc/sys")
	for name, want := range map[string]string{
		"net.ipv4.ip_forward":                "/proc/sys/net/ipv4/ip_forward",
		"net.bridge.bridge-nf-call-iptables": "/proc/sys/net/bridge/bridge-nf-call-iptables",
		"net/ipv4/conf/eth0.100/forwarding":  "/proc/sys/net/ipv4/conf/eth0.100/forwarding",
		"":                                   "",
		"..":                                 "",
		"net..ipv4":                          "",
		"/net/ipv4/ip_forward":               "",
		"net/../../etc/passwd":               "",
	} {
		got, err := m.path(name)
		if (err != nil) != (want == "") || got != want {
			t.Errorf("path(%q) = %q, %v; want %q", name, got, err, want)
		}
	}
}

func TestMultiValueIsNormalized(t *testing.T) {
	root := tree(t, map[string]string{"net/ipv4/tcp_rmem": "4096\t131072\t6291456\n"})
	cs, err := New(root).Ensure(context.Background(), desired.Sysctl{Name: "net.ipv4.tcp_rmem", Value: "4096 131072  6291456"}, &revert.Reverter{})
	if err != nil || len(cs) != 0 {
		t.Errorf("same value with other white space: changes %v, err %v; want none", cs, err)
	}
}

func TestFakeString(t *testing.T) {
	f := NewFake(map[string]string{"net.ipv4.ip_forward": "0", "net.bridge.bridge-nf-call-iptables": "0"})
	var rv revert.Reverter
	for range 2 {
		if _, err := f.Ensure(context.Background(), desired.Sysctl{Name: "net.ipv4.ip_forward", Value: "1"}, &rv); err != nil {
			t.Fatal(err)
		}
	}
	want := "net.bridge.bridge-nf-call-iptables = 0\nnet.ipv4.ip_forward = 1\n"
	if got := f.String(); got != want {
		t.Errorf("String:\n%s\nwant\n%s", got, want)
	}
}
