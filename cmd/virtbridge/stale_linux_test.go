package main

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/virtbridge/virtbridge/internal/journal"
	"github.com/virtbridge/virtbridge/internal/store"
	"github.com/virtbridge/virtbridge/internal/testenv/journaltest"
	"github.com/virtbridge/virtbridge/internal/testenv/netnstest"
)

// fullDisk is a hypervisor namespace whose state directory (the mapping
// store) is a 64 KiB tmpfs seen only in a mount namespace of its own,
// held by a sleeping process: the hook and the CLI run in both.
type fullDisk struct {
	ns               *netnstest.NS
	holder           int // pid holding the mount namespace
	hook, cli, cfg   string
	state, run, logs string
	env              []string
}

// vmCall is a one-NIC VM made from testdata/hook/one-nic with its own
// name, UUID, MAC and tap.
type vmCall struct {
	name, uuid, mac, tap string
}

func newFullDisk(t *testing.T) *fullDisk {
	journaltest.Require(t)
	d := &fullDisk{ns: netnstest.New(t, "vbwst")}
	dir := t.TempDir()
	d.hook, d.cli, d.cfg = filepath.Join(dir, "virtbridge-hook"), filepath.Join(dir, "virtbridge"), filepath.Join(dir, "virtbridge.yaml")
	for bin, pkg := range map[string]string{d.hook: "../hook", d.cli: "."} {
		if out, err := exec.Command("go", "build", "-o", bin, pkg).CombinedOutput(); err != nil {
			t.Fatalf("building %s: %v\n%s", pkg, err, out)
		}
	}
	if err := os.WriteFile(d.cfg, []byte("bridges:\n  br-a: {}\nfirewall: {backend: none}\nsysctl: {ip_forward: leave}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	d.state, d.run, d.logs = t.TempDir(), t.TempDir(), t.TempDir()
	d.env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL=C", "VIRTBRIDGE_CONFIG=" + d.cfg,
		"VIRTBRIDGE_RUN_DIR=" + d.run, "VIRTBRIDGE_STATE_DIR=" + d.state, "VIRTBRIDGE_LOG_DIR=" + d.logs}
	holder := exec.Command("unshare", "-m", "--propagation", "private", "sleep", "infinity")
	if err := holder.Start(); err != nil {
		t.Fatalf("starting the mount namespace holder: %v", err)
	}
	d.holder = holder.Process.Pid
	t.Cleanup(func() {
		syscall.Kill(d.holder, syscall.SIGKILL) // its mount namespace, and the tmpfs, go with it
		holder.Wait()
	})
	self, _ := os.Readlink("/proc/self/ns/mnt")
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if ns, _ := os.Readlink(fmt.Sprintf("/proc/%d/ns/mnt", d.holder)); ns != "" && ns != self {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the mount namespace holder did not unshare its mount namespace")
		}
	}
	d.sh(t, fmt.Sprintf("mount -t tmpfs -o size=64k,mode=0755 vbwstore %s", d.state))
	return d
}

// in runs argv in the holder's mount namespace (and the hypervisor's
// network namespace when netns), with the hook's environment.
func (d *fullDisk) in(netns bool, stdin string, argv ...string) *exec.Cmd {
	args := []string{"-t", strconv.Itoa(d.holder), "-m"}
	if netns {
		args = append(args, "--net=/run/netns/"+d.ns.Name)
	}
	cmd := exec.Command("nsenter", append(append(args, "--"), argv...)...)
	cmd.Env, cmd.Stdin = d.env, strings.NewReader(stdin)
	return cmd
}

func (d *fullDisk) sh(t *testing.T, script string) {
	t.Helper()
	if out, err := d.in(true, "", "sh", "-ec", script).CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", script, err, out)
	}
}

// call runs the hook for vm at one of one-nic's captured calls and returns
// its stderr; the hook must exit 0.
func (d *fullDisk) call(t *testing.T, vm vmCall, call string) string {
	t.Helper()
	base := filepath.Join("..", "..", "testdata", "hook", "one-nic", call)
	args, err := os.ReadFile(base + ".args")
	if err != nil {
		t.Fatal(err)
	}
	xml, err := os.ReadFile(base + ".xml")
	if err != nil {
		t.Fatal(err)
	}
	r := strings.NewReplacer("one-nic", vm.name, "5b0c0000-0000-4000-8000-000000000001", vm.uuid,
		"52:54:00:aa:01:01", vm.mac, "'vnet0'", "'"+vm.tap+"'")
	argv := strings.Split(r.Replace(strings.TrimSpace(string(args))), "\n")
	out, err := d.in(true, r.Replace(string(xml)), append([]string{d.hook}, argv...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("hook %v: %v\n%s", argv, err, out)
	}
	return string(out)
}

// start runs prepare, makes the tap as libvirt does, and runs started.
func (d *fullDisk) start(t *testing.T, vm vmCall) string {
	t.Helper()
	d.call(t, vm, "01-prepare-begin")
	d.sh(t, fmt.Sprintf("ip tuntap add %[1]s mode tap\nip link set %[1]s address fe%[2]s master br-a up", vm.tap, vm.mac[2:]))
	return d.call(t, vm, "03-started-begin")
}

// stop runs stopped and release, and deletes the tap as libvirt does.
func (d *fullDisk) stop(t *testing.T, vm vmCall) string {
	t.Helper()
	out := d.call(t, vm, "04-stopped-end") + d.call(t, vm, "05-release-end")
	d.sh(t, "ip link del "+vm.tap)
	return out
}

func (d *fullDisk) entries(t *testing.T) string {
	t.Helper()
	out, err := d.in(false, "", "cat", filepath.Join(d.state, "ports.json")).CombinedOutput()
	if err != nil {
		t.Fatalf("reading the store: %v\n%s", err, out)
	}
	es, err := store.Parse(out)
	if err != nil {
		t.Fatalf("store: %v\n%s", err, out)
	}
	var lines []string
	for _, e := range es {
		lines = append(lines, e.VM+" "+e.Tap)
	}
	return strings.Join(lines, "\n")
}

func (d *fullDisk) who(t *testing.T, tap string) string {
	t.Helper()
	out, _ := d.in(false, "", d.cli, "who", tap).CombinedOutput() // exit 1: no owner
	return string(out)
}

// TestStoreCatchesUpAfterAFullDisk: VM X runs, recorded; the store's
// filesystem fills; X stops and B starts on X's old tap name, their saves
// fail (the VMs run: the hook warns and exits 0); space returns; C starts.
// The store must then hold B and C, not X: the run that saves again
// catches up from the journal's records, as `virtbridge who` shows.
func TestStoreCatchesUpAfterAFullDisk(t *testing.T) {
	d := newFullDisk(t)
	b := make([]byte, 3)
	rand.Read(b)
	id := hex.EncodeToString(b)
	vm := func(n byte, name string) vmCall {
		u := make([]byte, 6)
		rand.Read(u)
		return vmCall{name: name + "-" + id, uuid: "5b0c" + id[:4] + "-0000-4000-8000-" + hex.EncodeToString(u),
			mac: fmt.Sprintf("52:54:00:%s:%s:%02x", id[:2], id[2:4], n), tap: fmt.Sprintf("vbw%s%c", id, 'a'+n)}
	}
	x, vb, c := vm(1, "x"), vm(2, "b"), vm(3, "c")
	vb.tap = x.tap // libvirt recycles tap names

	d.start(t, x)
	if got := d.entries(t); got != x.name+" "+x.tap {
		t.Fatalf("store after X started: %q", got)
	}
	d.sh(t, fmt.Sprintf("cat /dev/zero > %s/fill || true; ! echo probe > %s/probe", d.state, d.state))

	warn := d.stop(t, x)
	if !strings.Contains(warn, "saving the mapping store") || !strings.Contains(warn, "no space left on device") {
		t.Errorf("stopping X on a full disk: the hook did not warn that the save failed:\n%s", warn)
	}
	warn = d.start(t, vb)
	if !strings.Contains(warn, "no space left on device") {
		t.Errorf("starting B on a full disk: the hook did not warn that the save failed:\n%s", warn)
	}
	if got := d.entries(t); got != x.name+" "+x.tap {
		t.Fatalf("store on the full disk: %q, want X's entry still (nothing could be written)", got)
	}
	if out := d.who(t, x.tap); !strings.Contains(out, "note: the mapping store may lack the changes since") {
		t.Errorf("who %s on the full disk does not say the store is behind: %s", x.tap, out)
	}
	d.sh(t, "rm "+filepath.Join(d.state, "fill"))

	d.start(t, c)
	want := []string{vb.name + " " + vb.tap, c.name + " " + c.tap}
	if vb.uuid > c.uuid {
		want[0], want[1] = want[1], want[0]
	}
	if got := d.entries(t); got != strings.Join(want, "\n") {
		t.Errorf("store once space returned:\n%s\nwant:\n%s", got, strings.Join(want, "\n"))
	}
	if out := d.who(t, x.tap); !strings.Contains(out, fmt.Sprintf("vm %q (uuid %s)", vb.name, vb.uuid)) {
		t.Errorf("who %s (B's now, X's before): %s", x.tap, out)
	}
	if _, err := os.Stat(filepath.Join(d.run, "ports.stale")); !os.IsNotExist(err) {
		t.Errorf("the stale marker is still there after a good save: %v", err)
	}

	// The journal tells the same story, X's stop included.
	j := journaltest.Require(t)
	j.Sync(t)
	var got []string
	for _, e := range j.Entries(t, journal.FieldIdentifier+"="+journal.Identifier, journal.FieldTap+"="+x.tap) {
		got = append(got, e[journal.FieldMessageID]+" "+e[journal.FieldVM])
	}
	wantJ := []string{journal.IDAttached + " " + x.name, journal.IDDetached + " " + x.name, journal.IDAttached + " " + vb.name}
	if strings.Join(got, "\n") != strings.Join(wantJ, "\n") {
		t.Errorf("journal of %s:\n%s\nwant:\n%s", x.tap, strings.Join(got, "\n"), strings.Join(wantJ, "\n"))
	}
}
