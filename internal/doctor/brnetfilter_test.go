package doctor

import (
	"os"
	"path/filepath"
	"testing"
)

type fakeNFUsers []string

func (f fakeNFUsers) NFUsers() ([]string, error) { return f, nil }

// TestBrNetfilterAdvice: bridge-nf-call-iptables/ip6tables=0 is
// recommended when nothing on the host relies on bridged frames passing IP
// filtering; when Kubernetes, Docker or Incus does, the doctor says to keep
// it and what 0 would break, and warns when the config sets 0 anyway.
func TestBrNetfilterAdvice(t *testing.T) {
	on := fakeSysctls{ipForward: "1", nfCallIPTables: "1", nfCallIP6Tables: "1"}
	s := Sources{ConfigPath: "test.yaml", Config: mustConfig(t, "bridges: {br0: {}}\n"), Sysctls: on,
		NFUsers: fakeNFUsers{}, Native: fakeNative{nativeChain("inet", "filter", "forward", "drop")}}
	const obj = "net.bridge.bridge-nf-call-iptables/ip6tables"
	want(t, one(t, Run(s), "br-netfilter", obj), OK, "1/1, and nothing found on this host relies", "0 is the cleanest fix",
		"set sysctl: {bridge_nf_call_iptables: 0, bridge_nf_call_ip6tables: 0} in test.yaml", "firewall timer")

	s.NFUsers = fakeNFUsers{"kube-proxy (pid 42) running: " + breaksKubernetes}
	f := one(t, Run(s), "br-netfilter", obj)
	want(t, f, OK, "keep 1/1", "kube-proxy (pid 42)", "network policies")
	if f.Fix != "" {
		t.Errorf("0 recommended on a Kubernetes node: %s", f.Fix)
	}
	s.NFUsers = fakeNFUsers{}
	s.Native = fakeNative{nativeChain("ip", "docker-bridges", "filter-FORWARD", "accept"), nativeChain("inet", "incus", "fwd", "accept")}
	want(t, one(t, Run(s), "br-netfilter", obj), OK, "keep 1/1", "Docker (its chains or tables)", "icc=false", "Incus (table inet incus)")

	// The config sets 0 on a Docker host: what breaks, and the way out.
	s.Config = mustConfig(t, "bridges: {br0: {}}\nsysctl: {bridge_nf_call_iptables: 0, bridge_nf_call_ip6tables: 0}\n")
	s.Sysctls = fakeSysctls{ipForward: "1", nfCallIPTables: "0", nfCallIP6Tables: "0"}
	want(t, one(t, Run(s), "br-netfilter", obj), Warn, "the config sets bridge_nf_call_iptables/ip6tables to 0", "Docker", "remove bridge_nf_call_iptables/ip6tables")
	s.Native = fakeNative{}
	want(t, one(t, Run(s), "br-netfilter", obj), OK, "0/0: bridged frames skip every IP forward chain, and nothing found")

	// br_netfilter not loaded: nothing to advise.
	s.Sysctls = fakeSysctls{ipForward: "1"}
	if fs := find(Run(s), "br-netfilter", ""); len(fs) != 0 {
		t.Errorf("advice without br_netfilter: %+v", fs)
	}
}

// TestHostNFUsers finds Kubernetes by its configuration directory, a CNI
// configuration and a kube-proxy process in the caller's network
// namespace (one in another namespace does not count), in a fake root.
func TestHostNFUsers(t *testing.T) {
	root, proc := t.TempDir(), t.TempDir()
	mk := func(p string) {
		if err := os.MkdirAll(p, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	write := func(p, s string) {
		mk(filepath.Dir(p))
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	link := func(target, p string) {
		mk(filepath.Dir(p))
		if err := os.Symlink(target, p); err != nil {
			t.Fatal(err)
		}
	}
	link("net:[1]", filepath.Join(proc, "self", "ns", "net"))
	for pid, p := range map[string]struct{ comm, ns string }{"7": {"kube-proxy", "net:[1]"}, "8": {"kube-proxy", "net:[2]"}, "9": {"sshd", "net:[1]"}} {
		write(filepath.Join(proc, pid, "comm"), p.comm+"\n")
		link(p.ns, filepath.Join(proc, pid, "ns", "net"))
	}
	h := HostNFUsers{Root: root, Proc: proc}
	got, err := h.NFUsers()
	if err != nil || len(got) != 1 || got[0] != "kube-proxy (pid 7) running: "+breaksKubernetes {
		t.Fatalf("got %q, %v; want kube-proxy (pid 7) only", got, err)
	}
	mk(filepath.Join(root, "etc", "kubernetes"))
	write(filepath.Join(root, "etc", "cni", "net.d", "10-bridge.conflist"), "{}")
	if got, _ := h.NFUsers(); len(got) != 3 {
		t.Errorf("got %q, want Kubernetes, CNI and kube-proxy", got)
	}
	if got, err := (HostNFUsers{Root: t.TempDir(), Proc: "/proc"}).NFUsers(); err != nil {
		t.Errorf("this machine: %q, %v", got, err)
	}
}
