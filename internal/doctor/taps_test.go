package doctor

import (
	"errors"
	"testing"
	"time"

	"github.com/virtbridge/virtbridge/internal/store"
)

const runningUUID = "8d1f0a5e-1111-4c4c-9d9d-000000000007"

// tapHost is br0 with uplink eth0 and the ports given; the VM "running"
// (fixture) runs with tap vnet3 on br0.
func tapHost(t *testing.T, ports []Link, entries ...store.Entry) Sources {
	s := vmHost(t, "bridges: {br0: {uplink: eth0}}\n", domainFile(t, "running", true))
	s.Links = append(s.Links.(fakeLinks), ports...)
	s.Store = fakeStore(entries)
	return s
}

func vnet3(master string) Link {
	return Link{Name: "vnet3", Index: 10, Kind: "tuntap", Master: master, Up: true, MTU: 1500, MAC: "fe:54:00:00:00:07"}
}

var vnet3Entry = store.Entry{UUID: runningUUID, VM: "running", MAC: "52:54:00:00:00:07", Tap: "vnet3", Bridge: "br0", Since: time.Unix(1, 0)}

// TestTaps compares bridge ports, the mapping store and libvirt's running
// VMs.
func TestTaps(t *testing.T) {
	t.Run("all recorded", func(t *testing.T) {
		r := Run(tapHost(t, []Link{vnet3("br0")}, vnet3Entry))
		want(t, one(t, r, "port", "br0"), OK, "1 VM port(s), each recorded")
		if n := len(find(r, "vm-tap", "")); n != 0 {
			t.Errorf("unexpected vm-tap findings:\n%s", dumpReport(r))
		}
	})
	t.Run("tap of a running VM out of its bridge", func(t *testing.T) {
		r := Run(tapHost(t, []Link{vnet3("")}, vnet3Entry))
		f := one(t, r, "vm-tap", "vnet3")
		want(t, f, Fail, "vm running (NIC 52:54:00:00:00:07) is not in bridge br0 (its master: none)", "cut off", "doctor --fix")
		if !f.Fixable {
			t.Error("a tap out of its bridge is virtbridge's to fix")
		}
	})
	t.Run("tap of a running VM gone", func(t *testing.T) {
		r := Run(tapHost(t, nil, vnet3Entry))
		want(t, one(t, r, "vm-tap", "vnet3"), Fail, "does not exist", "virsh destroy running")
		want(t, one(t, r, "stale-mapping", "vnet3"), Warn, "no such link")
	})
	t.Run("not recorded", func(t *testing.T) {
		r := Run(tapHost(t, []Link{vnet3("br0")}))
		f := one(t, r, "port", "vnet3")
		want(t, f, Warn, "tap of vm running", "not in the mapping store", "`virtbridge who` cannot name its VM")
		if !f.Fixable {
			t.Error("an unrecorded tap of a running VM is virtbridge's to fix")
		}
	})
	t.Run("stale tap", func(t *testing.T) {
		stale := Link{Name: "vnet9", Index: 11, Kind: "tuntap", Master: "br0", MTU: 1500}
		r := Run(tapHost(t, []Link{vnet3("br0"), stale}, vnet3Entry))
		f := one(t, r, "port", "vnet9")
		want(t, f, Warn, "tuntap port in br0 that belongs to no running VM", "ip link del vnet9")
		if f.Fixable {
			t.Error("virtbridge must not claim to fix a tap nobody owns")
		}
	})
	t.Run("recorded for a VM that is gone", func(t *testing.T) {
		gone := store.Entry{UUID: "00000000-0000-0000-0000-00000000dead", VM: "old", MAC: "52:54:00:00:00:99", Tap: "vnet9", Bridge: "br0", Since: time.Unix(1, 0)}
		r := Run(tapHost(t, []Link{vnet3("br0"), {Name: "vnet9", Index: 11, Kind: "tuntap", Master: "br0"}}, vnet3Entry, gone))
		want(t, one(t, r, "port", "vnet9"), Warn, "recorded for vm old, which has no such tap running")
	})
	t.Run("without libvirt", func(t *testing.T) {
		s := tapHost(t, []Link{vnet3("br0"), {Name: "vnet9", Index: 11, Kind: "tuntap", Master: "br0"}}, vnet3Entry)
		s.Domains = unreachable{}
		r := Run(s)
		want(t, one(t, r, "port", "vnet9"), Warn, "not in the mapping store", "virsh domiflist")
		if n := len(find(r, "port", "vnet3")); n != 0 {
			t.Errorf("a recorded tap was reported without libvirt to contradict the store:\n%s", dumpReport(r))
		}
	})
}

type unreachable struct{}

func (unreachable) Domains() ([]Domain, error) { return nil, errors.New("libvirtd is not running") }
