package main

// The fleet test: two "hosts", each a process in its own mount, UTS and
// network namespaces with its own hostname, machine ID and systemd-journald,
// journal records with virtbridge's journal writer; systemd-journal-upload
// ships each host's journal to one systemd-journal-remote listening on
// loopback in a namespace of its own; `virtbridge who` answers over the
// collector's directory.

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/virtbridge/virtbridge/internal/journal"
	"github.com/virtbridge/virtbridge/internal/testenv/journald"
	"github.com/virtbridge/virtbridge/internal/testenv/netnstest"
)

// Environment of a fleet host process (the test binary run again).
const (
	envFleetHost = "VBM_FLEET_HOST"
	envFleetDir  = "VBM_FLEET_DIR"
	envFleetMID  = "VBM_FLEET_MACHINE_ID"
)

// Binaries of Debian's systemd-journal-remote package.
const (
	journalRemote = "/lib/systemd/systemd-journal-remote"
	journalUpload = "/lib/systemd/systemd-journal-upload"
)

// fleetCmd is one line a fleet host reads: a record to journal.
type fleetCmd struct {
	Kind string       `json:"kind"` // attached, detached, quit
	Port journal.Port `json:"port"`
}

// fleetHostMain runs in a fleet host's namespaces: private
// /run/systemd/journal, /run/log/journal and /etc/machine-id, the hostname
// set, its own journald; it journals each record read from stdin and
// answers "ok" once journald has stored it, and on "quit" stops journald and answers "bye".
func fleetHostMain() int {
	dir, name, mid := os.Getenv(envFleetDir), os.Getenv(envFleetHost), os.Getenv(envFleetMID)
	fail := func(err error) int { fmt.Fprintf(os.Stderr, "fleet host %s: %v\n", name, err); return 1 }
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fail(err)
	}
	if err := unix.Sethostname([]byte(name)); err != nil {
		return fail(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "machine-id"), []byte(mid+"\n"), 0o444); err != nil {
		return fail(err)
	}
	for src, dst := range map[string]string{"run": journald.RunDir, "runlog": "/run/log/journal", "machine-id": "/etc/machine-id"} {
		if src != "machine-id" {
			if err := os.MkdirAll(filepath.Join(dir, src), 0o755); err != nil {
				return fail(err)
			}
			if err := os.MkdirAll(dst, 0o755); err != nil {
				return fail(err)
			}
		}
		if err := unix.Mount(filepath.Join(dir, src), dst, "", unix.MS_BIND, ""); err != nil {
			return fail(fmt.Errorf("binding %s over %s: %w", src, dst, err))
		}
	}
	jd := exec.Command(journald.Binary())
	jd.Stdout, jd.Stderr = os.Stderr, os.Stderr
	jd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := jd.Start(); err != nil {
		return fail(err)
	}
	for begin := time.Now(); !journald.Answers(journald.Socket); time.Sleep(20 * time.Millisecond) {
		if time.Since(begin) > 30*time.Second {
			return fail(fmt.Errorf("journald does not answer on %s", journald.Socket))
		}
	}
	w := journal.New(journal.Options{File: filepath.Join(dir, "fallback.jsonl")})
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		var c fleetCmd
		if err := json.Unmarshal(sc.Bytes(), &c); err != nil {
			return fail(err)
		}
		var err error
		switch c.Kind {
		case "attached":
			err = w.Attached(context.Background(), c.Port)
		case "detached":
			err = w.Detached(context.Background(), c.Port)
		case "quit":
			jd.Process.Signal(syscall.SIGTERM)
			jd.Wait()
			fmt.Println("bye")
			return 0
		}
		if err != nil {
			return fail(err)
		}
		// journald stamps an entry when it reads it: "ok" once it has.
		if out, err := exec.Command("journalctl", "--sync").CombinedOutput(); err != nil {
			return fail(fmt.Errorf("journalctl --sync: %v: %s", err, out))
		}
		fmt.Println("ok")
	}
	return fail(fmt.Errorf("stdin closed"))
}

// fleetHost is a running fleet host.
type fleetHost struct {
	name, mid, dir string
	cmd            *exec.Cmd
	in             io.Writer
	out            *bufio.Scanner
}

// startFleetHost starts a fleet host; it is killed when t ends.
func startFleetHost(t *testing.T, name string) *fleetHost {
	t.Helper()
	b := make([]byte, 16)
	rand.Read(b)
	h := &fleetHost{name: name, mid: hex.EncodeToString(b), dir: t.TempDir()}
	h.cmd = exec.Command(os.Args[0], "-test.run=^$")
	h.cmd.Env = append(os.Environ(), envFleetHost+"="+name, envFleetDir+"="+h.dir, envFleetMID+"="+h.mid)
	h.cmd.Stderr = os.Stderr
	h.cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: unix.CLONE_NEWNS | unix.CLONE_NEWUTS | unix.CLONE_NEWNET, Pdeathsig: syscall.SIGKILL}
	in, err := h.cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := h.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	h.in, h.out = in, bufio.NewScanner(out)
	if err := h.cmd.Start(); err != nil {
		t.Fatalf("starting fleet host %s: %v", name, err)
	}
	t.Cleanup(func() {
		h.cmd.Process.Kill()
		h.cmd.Wait()
	})
	return h
}

// send has the host journal one record (or quit) and waits for its answer.
func (h *fleetHost) send(t *testing.T, kind string, p journal.Port) {
	t.Helper()
	line, _ := json.Marshal(fleetCmd{Kind: kind, Port: p})
	if _, err := h.in.Write(append(line, '\n')); err != nil {
		t.Fatalf("fleet host %s: %v", h.name, err)
	}
	if !h.out.Scan() {
		t.Fatalf("fleet host %s ended: %v", h.name, h.out.Err())
	}
	if got := h.out.Text(); got != "ok" && got != "bye" {
		t.Fatalf("fleet host %s answered %q", h.name, got)
	}
}

// journalDir is where the host's journald wrote its (runtime) journal.
func (h *fleetHost) journalDir() string { return filepath.Join(h.dir, "runlog", h.mid) }

// collect runs systemd-journal-remote on 127.0.0.1 in a namespace of its
// own, has systemd-journal-upload ship every host's journal to it, stops
// it, and returns the directory it wrote.
func collect(t *testing.T, hosts ...*fleetHost) string {
	t.Helper()
	ns := netnstest.New(t, "vbm")
	out := t.TempDir()
	remote := exec.Command("ip", "netns", "exec", ns.Name, journalRemote,
		"--listen-http=127.0.0.1:19532", "--output="+out+"/", "--split-mode=host")
	var remoteLog strings.Builder
	remote.Stdout, remote.Stderr = &remoteLog, &remoteLog
	if err := remote.Start(); err != nil {
		t.Fatalf("starting systemd-journal-remote: %v", err)
	}
	stopped := false
	stop := func() {
		if !stopped {
			stopped = true
			remote.Process.Signal(syscall.SIGTERM)
			remote.Wait()
		}
	}
	t.Cleanup(stop)
	for _, h := range hosts {
		var log []byte
		uploaded := false
		for begin := time.Now(); time.Since(begin) < 30*time.Second; time.Sleep(100 * time.Millisecond) {
			up := exec.Command("ip", "netns", "exec", ns.Name, journalUpload, "--url=http://127.0.0.1:19532",
				"--directory="+h.journalDir(), "--save-state="+filepath.Join(h.dir, "upload-state"), "--follow=no")
			var err error
			if log, err = up.CombinedOutput(); err == nil {
				uploaded = true
				break
			}
		}
		if !uploaded {
			t.Fatalf("systemd-journal-upload of %s failed for 30 s:\n%s\nsystemd-journal-remote:\n%s", h.name, log, remoteLog.String())
		}
	}
	stop()
	return out
}

// virtbridgeCLI builds the virtbridge command once per test.
func virtbridgeCLI(t testing.TB) string {
	t.Helper()
	cli := filepath.Join(t.TempDir(), "virtbridge")
	if out, err := exec.Command("go", "build", "-o", cli, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return cli
}

// runCLI runs the built virtbridge and returns its output, with the
// times replaced by T, and exit code.
func runCLI(t *testing.T, cli string, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(cli, args...)
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return maskTimes(stdout.String()), maskTimes(stderr.String()), code
}

var journalTimes = regexp.MustCompile(`\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6} [+-]\d{4}`)

func maskTimes(s string) string { return journalTimes.ReplaceAllString(s, "T") }

func requireFleet(t *testing.T) {
	t.Helper()
	netnstest.RequireRoot(t)
	for _, bin := range []string{journalRemote, journalUpload, journald.Binary()} {
		if bin == "" {
			bin = "systemd-journald"
		}
		if _, err := os.Stat(bin); err != nil {
			t.Fatalf("%s: %v (scripts/deps.sh installs systemd and systemd-journal-remote)", bin, err)
		}
	}
}

func port(vm, uuid, mac, tap, bridge, op string) journal.Port {
	return journal.Port{VM: journal.VM{Name: vm, UUID: uuid, Op: op, Source: "hook"}, Tap: tap, MAC: mac, Bridge: bridge}
}

// TestWhoAcrossHosts: vm1's NIC runs on host A on tap vnet0 while vm2's
// runs on host B on a tap of the same name; vm1 stops on A and starts on
// B on another tap; vm3 migrates live from A to B. Over the collector's
// directory (and its files), `who MAC` prints the NIC's timeline with the
// hosts (the migration as a move at the moment A let go, one owner at a
// time), `who TAP` answers per host, `--host` and `--at` pick one.
func TestWhoAcrossHosts(t *testing.T) {
	requireFleet(t)
	cli := virtbridgeCLI(t)
	a, b := startFleetHost(t, "vbm-host-a"), startFleetHost(t, "vbm-host-b")
	const mac1, mac2 = "52:54:00:f1:00:01", "52:54:00:f1:00:02"
	const uuid1, uuid2 = "f1000000-0000-4000-8000-000000000001", "f1000000-0000-4000-8000-000000000002"
	a.send(t, "attached", port("vm1", uuid1, mac1, "vnet0", "br-a", "start"))
	b.send(t, "attached", port("vm2", uuid2, mac2, "vnet0", "br-a", "start"))
	time.Sleep(20 * time.Millisecond)
	mid := time.Now()
	time.Sleep(20 * time.Millisecond)
	a.send(t, "detached", port("vm1", uuid1, mac1, "vnet0", "br-a", "release"))
	b.send(t, "attached", port("vm1", uuid1, mac1, "vnet3", "br-b", "start"))
	// vm3 migrates live from a to b: b's tap is attached at start while
	// vm3 still runs on a; a lets go when it is done (the daemon's
	// stopped event, detail migrated).
	const mac3, uuid3 = "52:54:00:f1:00:03", "f1000000-0000-4000-8000-000000000003"
	a.send(t, "attached", port("vm3", uuid3, mac3, "vnet5", "br-a", "start"))
	b.send(t, "attached", port("vm3", uuid3, mac3, "vnet6", "br-a", "start"))
	time.Sleep(20 * time.Millisecond)
	migrating := time.Now()
	time.Sleep(20 * time.Millisecond)
	left := port("vm3", uuid3, mac3, "vnet5", "br-a", "stopped")
	left.SubOp, left.Source = "migrated", "eventd"
	a.send(t, "detached", left)
	a.send(t, "quit", journal.Port{})
	b.send(t, "quit", journal.Port{})
	dir := collect(t, a, b)

	timeline := `host vbm-host-a: tap vnet0 on bridge br-a, vm "vm1" (uuid f1000000-0000-4000-8000-000000000001) mac 52:54:00:f1:00:01, T – T [start → release]
host vbm-host-b: tap vnet3 on bridge br-b, vm "vm1" (uuid f1000000-0000-4000-8000-000000000001) mac 52:54:00:f1:00:01, T – now [start → -]
`
	if testing.Verbose() {
		o, _ := exec.Command(cli, "who", mac1, "--directory", dir, "--json").CombinedOutput()
		t.Logf("mid %s\n%s", mid.Format(time.RFC3339Nano), o)
	}
	files, _ := filepath.Glob(filepath.Join(dir, "*.journal"))
	t.Logf("collector %s: %d journal files", dir, len(files))
	for _, src := range [][]string{{"--directory", dir}, {"--file", filepath.Join(dir, "*.journal")}} {
		if out, errOut, code := runCLI(t, cli, append([]string{"who", strings.ToUpper(mac1)}, src...)...); out != timeline || code != 0 {
			t.Errorf("who MAC %v: exit %d\n%s%s\nwant:\n%s", src, code, out, errOut, timeline)
		}
	}
	for _, c := range []struct {
		args     []string
		out, err string
		code     int
	}{
		{[]string{"who", "vnet0", "--directory", dir},
			`host vbm-host-b: tap vnet0 on bridge br-a, vm "vm2" (uuid f1000000-0000-4000-8000-000000000002) mac 52:54:00:f1:00:02, T – now [start → -]` + "\n", "", 0},
		{[]string{"who", "vnet0", "--directory", dir, "--host", "vbm-host-a", "--at", mid.Format(time.RFC3339Nano)},
			`host vbm-host-a: tap vnet0 on bridge br-a, vm "vm1" (uuid f1000000-0000-4000-8000-000000000001) mac 52:54:00:f1:00:01, T – T [start → release]` + "\n", "", 0},
		{[]string{"who", "vnet0", "--directory", dir, "--host", a.mid},
			"", `virtbridge who: no VM owned tap "vnet0" at T on host ` + a.mid + ` in --directory=` + dir +
				`; the last before: host vbm-host-a: tap vnet0 on bridge br-a, vm "vm1" (uuid f1000000-0000-4000-8000-000000000001) mac 52:54:00:f1:00:01, T – T [start → release]` + "\n", 1},
		{[]string{"who", mac1, "--directory", dir, "--at", mid.Format(time.RFC3339Nano)},
			`host vbm-host-a: tap vnet0 on bridge br-a, vm "vm1" (uuid f1000000-0000-4000-8000-000000000001) mac 52:54:00:f1:00:01, T – T [start → release]` + "\n", "", 0},
		{[]string{"who", mac3, "--directory", dir},
			`host vbm-host-a: tap vnet5 on bridge br-a, vm "vm3" (uuid f1000000-0000-4000-8000-000000000003) mac 52:54:00:f1:00:03, T – T [start → stopped/migrated] migrated to vbm-host-b
host vbm-host-b: tap vnet6 on bridge br-a, vm "vm3" (uuid f1000000-0000-4000-8000-000000000003) mac 52:54:00:f1:00:03, T – now [start → -] migrated from vbm-host-a (tap there since T)
`, "", 0},
		// While it migrated, a still owned it: one owner.
		{[]string{"who", mac3, "--directory", dir, "--at", migrating.Format(time.RFC3339Nano)},
			`host vbm-host-a: tap vnet5 on bridge br-a, vm "vm3" (uuid f1000000-0000-4000-8000-000000000003) mac 52:54:00:f1:00:03, T – T [start → stopped/migrated] migrated to vbm-host-b
`, "", 0},
		{[]string{"who", "vnet6", "--directory", dir, "--host", "vbm-host-b", "--at", migrating.Format(time.RFC3339Nano)},
			"", `virtbridge who: no VM owned tap "vnet6" at T on host vbm-host-b in --directory=` + dir + "\n", 1},
		{[]string{"who", "52:54:00:f1:00:99", "--directory", dir},
			"", "virtbridge who: no record of MAC 52:54:00:f1:00:99 in --directory=" + dir + "\n", 1},
	} {
		out, errOut, code := runCLI(t, cli, c.args...)
		if out != c.out || errOut != c.err || code != c.code {
			t.Errorf("%v: exit %d\n%s%s\nwant exit %d\n%s%s", c.args, code, out, errOut, c.code, c.out, c.err)
		}
	}
}
