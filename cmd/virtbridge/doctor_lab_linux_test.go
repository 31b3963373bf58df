package main

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"strconv"
	"testing"
	"time"

	"github.com/virtbridge/virtbridge/internal/doctor"
	"github.com/virtbridge/virtbridge/internal/testenv/lab"
)

// labDoctor runs `virtbridge doctor --json` where libvirtd and the hook
// run: in the lab's network and mount namespaces, with every default path
// (config, hooks, store, qemu:///system).
func labDoctor(t *testing.T, ctx context.Context, l *lab.Lab, bin string) doctorRun {
	t.Helper()
	out, err := l.ExecHV(ctx, bin, "doctor", "--json")
	r := doctorRun{}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		r.code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(out, &r.doc); err != nil {
		t.Fatalf("doctor --json printed no JSON (%v):\n%s", err, out)
	}
	return r
}

// TestDoctorLab runs the doctor on a real hypervisor: libvirtd with
// virtbridge's hook, a VM started on a managed bridge (its prepare made
// the host right, its start recorded the tap): all ok. Then a defined VM
// with a broken NIC fails, and a hook changed after libvirtd started warns
// until libvirtd restarts.
func TestDoctorLab(t *testing.T) {
	if testing.Short() {
		t.Skip("skipped in -short mode: starts libvirtd and a VM")
	}
	lab.SkipIfUnavailable(t)
	bins := buildDoctor(t)
	l := lab.ForTest(t, lab.Options{HookPath: bins.hook, Upstream: true,
		EtcVirtbridge: map[string][]byte{"virtbridge.yaml": []byte("bridges:\n  br-up: {uplink: " + lab.UplinkName + "}\n")}})
	started := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	xml, err := lab.DomainXML(lab.VM{Name: "doc1", MAC: "52:54:00:d0:c0:01", Bridges: []string{"br-up"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := l.DefineStart(ctx, xml); err != nil {
		t.Fatal(err)
	}
	r := labDoctor(t, ctx, l, bins.cli)
	r.requireClean(t, "a lab host after a VM start")
	r.expect(t, 0, "daemon", "libvirtd (pid "+strconv.Itoa(l.LibvirtdPID())+")", doctor.OK, "it calls them")
	r.expect(t, 0, "vm", "doc1", doctor.OK)
	r.expect(t, 0, "port", "br-up", doctor.OK, "1 VM port(s), each recorded")
	if err := l.DestroyUndefine(ctx, "doc1"); err != nil {
		t.Fatal(err)
	}

	// Defined, never started: a guest MAC in the taps' fe: range on a
	// bridge that neither exists nor is managed.
	xml, err = lab.DomainXML(lab.VM{Name: "doc2", MAC: "fe:54:00:d0:c0:02", Bridges: []string{"br-nope"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Define(ctx, xml); err != nil {
		t.Fatal(err)
	}
	r = labDoctor(t, ctx, l, bins.cli)
	r.expect(t, 2, "vm-mac", "doc2 NIC fe:54:00:d0:c0:02", doctor.Fail, "fe:")
	r.expect(t, 2, "vm-bridge", "doc2 NIC fe:54:00:d0:c0:02", doctor.Fail, "br-nope", "Cannot get interface MTU")
	if err := l.DestroyUndefine(ctx, "doc2"); err != nil {
		t.Fatal(err)
	}

	// The hook changes after libvirtd started (as a first install would):
	// libvirtd has not looked for it since.
	time.Sleep(time.Until(started.Add(2 * time.Second)))
	hook, err := l.HostPath("/etc/libvirt/hooks/qemu")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(hook, 0o755); err != nil { // a new ctime
		t.Fatal(err)
	}
	pid := strconv.Itoa(l.LibvirtdPID())
	labDoctor(t, ctx, l, bins.cli).expect(t, 1, "daemon", "libvirtd (pid "+pid+")", doctor.Warn,
		"before the hooks appeared or changed", "kill -HUP "+pid)
	if err := l.RestartLibvirtd(ctx); err != nil {
		t.Fatal(err)
	}
	labDoctor(t, ctx, l, bins.cli).requireClean(t, "after restarting libvirtd")
}
