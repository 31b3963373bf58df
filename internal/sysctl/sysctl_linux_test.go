package sysctl

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"

	"github.com/virtbridge/virtbridge/internal/desired"
	"github.com/virtbridge/virtbridge/internal/revert"
	"github.com/virtbridge/virtbridge/internal/testenv/netnstest"
)

// helperEnv makes the test binary act as helper: /proc/sys/net shows the
// namespace of the process that opens it, so the Manager must run in a
// process started by `ip netns exec`, not in the test's own process.
const helperEnv = "VIRTBRIDGE_SYSCTL_HELPER"

// parentNSEnv carries the test process's namespace inode to the helper.
const parentNSEnv = "VIRTBRIDGE_SYSCTL_PARENT_NS"

func TestMain(m *testing.M) {
	if mode := os.Getenv(helperEnv); mode != "" {
		os.Exit(helper(mode, os.Args[len(os.Args)-2], os.Args[len(os.Args)-1]))
	}
	os.Exit(m.Run())
}

// helper runs Ensure(name=value) in its own namespace and prints the
// changes; mode "undo" then runs the undo steps. It refuses to run in the
// namespace of the test process that started it, so that a broken
// `ip netns exec` can never change the host's settings.
func helper(mode, name, value string) int {
	self, err := nsInode("/proc/self/ns/net")
	if err != nil || fmt.Sprint(self) == os.Getenv(parentNSEnv) || os.Getenv(parentNSEnv) == "" {
		fmt.Fprintln(os.Stderr, "helper: refusing to run outside a private network namespace", err)
		return 3
	}
	var rv revert.Reverter
	cs, err := New("").Ensure(context.Background(), desired.Sysctl{Name: name, Value: value}, &rv)
	for _, c := range cs {
		fmt.Println(c)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if mode == "undo" {
		if err := rv.Fail(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
	}
	return 0
}

func nsInode(p string) (uint64, error) {
	var st syscall.Stat_t
	err := syscall.Stat(p, &st)
	return st.Ino, err
}

func runHelper(t *testing.T, ns *netnstest.NS, mode, name, value string) string {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	parent, err := nsInode("/proc/self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("ip", "netns", "exec", ns.Name, exe, "-test.run=^$", name, value)
	cmd.Env = append(os.Environ(), helperEnv+"="+mode, parentNSEnv+"="+fmt.Sprint(parent), "LC_ALL=C")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("helper %s %s=%s in %s: %v\n%s", mode, name, value, ns.Name, err, out)
	}
	return strings.TrimSpace(string(out))
}

func nsValue(t *testing.T, ns *netnstest.NS, name string) string {
	t.Helper()
	return strings.TrimSpace(ns.Run(t, "sysctl", "-n", name))
}

func TestEnsureInNamespace(t *testing.T) {
	ns := netnstest.New(t, "vbsy")
	hostBefore, err := os.ReadFile("/proc/sys/net/ipv4/ip_forward")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, from, to string }{
		{"net.ipv4.ip_forward", "0", "1"},
		{"net.ipv6.conf.all.forwarding", "0", "1"},
		{"net.bridge.bridge-nf-call-iptables", "1", "0"},
		{"net.bridge.bridge-nf-call-ip6tables", "1", "0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := nsValue(t, ns, tc.name); got != tc.from {
				t.Fatalf("fresh namespace: %s = %s, want %s", tc.name, got, tc.from)
			}
			want := fmt.Sprintf("sysctl-changed %s: %q -> %q", tc.name, tc.from, tc.to)
			if got := runHelper(t, ns, "ensure", tc.name, tc.to); got != want {
				t.Errorf("first Ensure printed %q, want %q", got, want)
			}
			if got := nsValue(t, ns, tc.name); got != tc.to {
				t.Errorf("after Ensure %s = %s, want %s", tc.name, got, tc.to)
			}
			if got := runHelper(t, ns, "ensure", tc.name, tc.to); got != "" {
				t.Errorf("second Ensure changed: %q", got)
			}
			runHelper(t, ns, "undo", tc.name, tc.from)
			if got := nsValue(t, ns, tc.name); got != tc.to {
				t.Errorf("after Ensure+undo of %s=%s: %s, want %s", tc.name, tc.from, got, tc.to)
			}
		})
	}
	hostAfter, err := os.ReadFile("/proc/sys/net/ipv4/ip_forward")
	if err != nil {
		t.Fatal(err)
	}
	if string(hostAfter) != string(hostBefore) {
		t.Errorf("host ip_forward changed from %q to %q", hostBefore, hostAfter)
	}
}
