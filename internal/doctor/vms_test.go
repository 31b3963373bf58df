package doctor

import (
	"path/filepath"
	"testing"

	"github.com/virtbridge/virtbridge/internal/store"
)

// vmHost is a host with eth0 in managed bridge br0 and an unmanaged bridge
// br-other, ip_forward 0.
func vmHost(t *testing.T, cfgYAML string, ds ...Domain) Sources {
	t.Helper()
	return Sources{
		ConfigPath: "test.yaml", Config: mustConfig(t, cfgYAML),
		Links: fakeLinks{
			{Name: "eth0", Index: 2, Kind: "device", Master: "br0", Up: true, MTU: 1500, Addresses: []string{}},
			{Name: "br0", Index: 3, Kind: "bridge", Up: true, MTU: 1500, Addresses: []string{"192.0.2.10/24"}},
			{Name: "br-other", Index: 4, Kind: "bridge", Up: true, MTU: 1500},
		},
		Sysctls:     fakeSysctls{ipForward: "0", nfCallIPTables: "0", nfCallIP6Tables: "0"},
		Domains:     fakeDomains(ds),
		NetworkDirs: []string{filepath.Join("testdata", "networks")},
	}
}

// TestVMChecks feeds the domain fixtures through the checks: each broken
// NIC is a failure naming the VM and the NIC, each fine domain one ok.
func TestVMChecks(t *testing.T) {
	s := vmHost(t, "bridges: {br0: {uplink: eth0}}\nsysctl: {ip_forward: leave}\n",
		domainFile(t, "howto", false), domainFile(t, "fe-mac", false), domainFile(t, "missing-bridge", false),
		domainFile(t, "good", false), domainFile(t, "routed", false), domainFile(t, "running", true))
	r := Run(s)
	want(t, one(t, r, "vm-mac", "howto NIC 11:22:33:44:55:66"), Fail, "multicast", "cannot assign requested address", "virsh edit howto")
	want(t, one(t, r, "vm-mac", "fe-mac NIC fe:54:00:12:34:56"), Fail, "fe:", "the bridge takes the guest's frames as its own")
	want(t, one(t, r, "vm-bridge", "missing-bridge NIC 52:54:00:00:00:03"), Fail, "br-gone", "Cannot get interface MTU on 'br-gone'", "add br-gone under bridges:")
	want(t, one(t, r, "vm", "good"), OK, "2 NIC(s)")
	want(t, one(t, r, "vm", "routed"), OK)
	want(t, one(t, r, "vm", "running"), OK)
	if n := len(find(r, "vm-xml", "")); n != 0 {
		t.Errorf("a MAC problem was reported twice (as vm-xml too):\n%s", dumpReport(r))
	}
	// The NAT network routes: ip_forward=0 matters now.
	want(t, one(t, r, "sysctl", ipForward), Warn, "routed (network default, nat)", "ip_forward: 1")
	if r.ExitCode() != 2 {
		t.Errorf("exit code %d, want 2", r.ExitCode())
	}
}

// TestVMUnmanagedRefused: with unmanaged_bridges: refuse, a NIC on an
// unmanaged bridge is a start the hook refuses.
func TestVMUnmanagedRefused(t *testing.T) {
	r := Run(vmHost(t, "bridges: {br0: {uplink: eth0}}\nunmanaged_bridges: refuse\n", domainFile(t, "good", false)))
	want(t, one(t, r, "vm-bridge", "good"), Fail, "br-other", "unmanaged_bridges: refuse")
}

// TestVMRunningOnDeletedBridge: a running VM on an unmanaged bridge that
// was deleted is cut off; on a managed one that is gone, the bridge check
// fails instead of warning.
func TestVMRunningOnDeletedBridge(t *testing.T) {
	s := vmHost(t, "bridges: {br-new: {}}\n", domainFile(t, "running", true))
	s.Links = fakeLinks{{Name: "eth0", Index: 2, Kind: "device", Up: true, MTU: 1500}}
	r := Run(s)
	want(t, one(t, r, "vm-bridge", "running NIC 52:54:00:00:00:07"), Fail, "no longer exists", "cut off")

	s = vmHost(t, "bridges: {br0: {}}\n", domainFile(t, "running", true))
	s.Links = fakeLinks{{Name: "eth0", Index: 2, Kind: "device", Up: true, MTU: 1500}}
	r = Run(s)
	want(t, one(t, r, "bridge-exists", "br0"), Fail, "running VMs use it: running")
	s.Domains = fakeDomains{domainFile(t, "running", false)}
	want(t, one(t, Run(s), "bridge-exists", "br0"), Warn, "does not exist yet", "doctor --fix")
}

// TestOnDemandBridgeMissing: a missing create: on_demand bridge is as
// configured (the hook makes it at the first VM's start): no problem, and
// nothing for --fix; one that running VMs use and that is gone fails, and
// --fix (the reconcile of the running VMs) makes it.
func TestOnDemandBridgeMissing(t *testing.T) {
	s := vmHost(t, "bridges: {br0: {create: on_demand}}\n", domainFile(t, "running", false))
	s.Links = fakeLinks{{Name: "eth0", Index: 2, Kind: "device", Up: true, MTU: 1500}}
	f := one(t, Run(s), "bridge-exists", "br0")
	want(t, f, OK, "does not exist yet", "create: on_demand")
	if f.Fixable || f.Fix != "" {
		t.Errorf("a missing on_demand bridge is fixable (%q): --fix leaves it alone", f.Fix)
	}
	s.Domains = fakeDomains{domainFile(t, "running", true)}
	f = one(t, Run(s), "bridge-exists", "br0")
	want(t, f, Fail, "running VMs use it: running")
	if !f.Fixable {
		t.Errorf("a gone bridge that running VMs use is not fixable: --fix reconciles them")
	}
}

// TestVMLibvirtUnreachable: the VM checks say so, the rest still runs.
func TestVMLibvirtUnreachable(t *testing.T) {
	s := vmHost(t, "bridges: {br0: {uplink: eth0}}\n")
	s.Domains = LibvirtDomains{URI: "qemu:///system?socket=" + filepath.Join(t.TempDir(), "no-sock")}
	s.Store = fakeStore{}
	r := Run(s)
	want(t, one(t, r, "libvirt", "libvirt"), Warn, "Failed to connect socket", "start libvirtd")
	want(t, one(t, r, "uplink-enslaved", "eth0"), OK)
	want(t, one(t, r, "port", "br0"), OK, "no VM ports")
	if r.ExitCode() != 1 {
		t.Errorf("exit code %d, want 1:\n%s", r.ExitCode(), dumpReport(r))
	}
}

type fakeStore []store.Entry

func (f fakeStore) Entries() ([]store.Entry, error) { return f, nil }
