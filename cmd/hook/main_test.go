package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/virtbridge/virtbridge/internal/testenv/journaltest"
)

var hookBin string

// TestMain builds the real hook binary: exit codes must be seen the way
// libvirtd sees them, from a separate process.
func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "vbhook")
	if err != nil {
		panic(err)
	}
	hookBin = filepath.Join(dir, "virtbridge-hook")
	if out, err := exec.Command("go", "build", "-o", hookBin, ".").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "building hook: %v\n%s", err, out)
		os.Exit(1)
	}
	code := journaltest.Main(m) // stops the journald TestStorm may start
	os.RemoveAll(dir)
	os.Exit(code)
}

type result struct {
	code           int
	stdout, stderr string
}

// runHook executes the built hook with a config and an isolated run dir.
func runHook(t *testing.T, cfg string, stdin string, args ...string) result {
	t.Helper()
	return runHookFrom(t, cfg, strings.NewReader(stdin), args...)
}

// runHookFrom is runHook with any stdin (a pipe never closed, say). A hook
// still running after two minutes is killed: a hung hook fails the test
// instead of hanging it.
func runHookFrom(t *testing.T, cfg string, stdin io.Reader, args ...string) result {
	t.Helper()
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "virtbridge.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, hookBin, args...)
	cmd.Env = []string{"VIRTBRIDGE_CONFIG=" + cfgPath, "VIRTBRIDGE_RUN_DIR=" + dir, "VIRTBRIDGE_STATE_DIR=" + dir, "VIRTBRIDGE_LOG_DIR=" + dir}
	cmd.Stdin = stdin
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return result{code, out.String(), errb.String()}
}

const vmXML = `<domain type='qemu'><name>vm1</name><uuid>00000000-0000-0000-0000-000000000001</uuid><devices>
<interface type='bridge'><mac address='52:54:00:aa:00:01'/><source bridge='br-x'/><model type='e1000'/></interface>
</devices></domain>`

// The hook only decides here (no managed bridge is named), so these runs
// change nothing on the machine.
const cfgNone = "bridges: {br-managed: {}}\n"

func TestExitCodesPerOp(t *testing.T) {
	for _, op := range []string{"prepare", "start", "started", "stopped", "release", "migrate", "restore", "reconnect", "attach"} {
		r := runHook(t, cfgNone, vmXML, "vm1", op, "begin", "-")
		if r.code != 0 || r.stdout != "" || r.stderr != "" {
			t.Errorf("%s: exit %d stdout %q stderr %q, want a silent 0", op, r.code, r.stdout, r.stderr)
		}
	}
}

func TestRefusalsReachLibvirt(t *testing.T) {
	refuse := cfgNone + "unmanaged_bridges: refuse\n"
	for _, tc := range []struct {
		name, cfg, stdin string
		args             []string
		code             int
		stderr           string
	}{
		{"unmanaged refused at prepare", refuse, vmXML, []string{"vm1", "prepare", "begin", "-"}, 1,
			`virtbridge: domain "vm1" (prepare): refused: NIC 52:54:00:aa:00:01 uses bridge "br-x", which virtbridge does not manage`},
		{"unmanaged at reconnect never fails", refuse, vmXML, []string{"vm1", "reconnect", "begin", "-"}, 0,
			`not failing the reconnect operation`},
		{"unmanaged at stopped never fails", refuse, vmXML, []string{"vm1", "stopped", "end", "-"}, 0,
			`not failing the stopped operation`},
		{"malformed xml at prepare", cfgNone, "<domain><name>vm1", []string{"vm1", "prepare", "begin", "-"}, 1,
			`refused: malformed domain XML`},
		{"malformed xml at release", cfgNone, "<domain><name>vm1", []string{"vm1", "release", "end", "-"}, 0,
			`malformed domain XML`},
		{"empty stdin", cfgNone, "", []string{"vm1", "start", "begin", "-"}, 1, `no domain XML on stdin`},
		{"unknown op", cfgNone, vmXML, []string{"vm1", "explode", "begin", "-"}, 1, `unknown hook operation "explode"`},
		{"no args", cfgNone, vmXML, nil, 1, `want 4 arguments`},
		{"bad config", "bridges: {br0: {uplnk: eth0}}\n", vmXML, []string{"vm1", "prepare", "begin", "-"}, 1,
			`virtbridge.yaml:1: unknown key "uplnk" in bridge "br0"`},
		{"bad config at reconnect", "nonsense: 1\n", vmXML, []string{"vm1", "reconnect", "begin", "-"}, 0,
			`unknown key "nonsense"`},
		{"multicast mac", cfgNone, strings.Replace(vmXML, "52:54:00:aa:00:01", "11:22:33:44:55:66", 1),
			[]string{"vm1", "prepare", "begin", "-"}, 1, `MAC 11:22:33:44:55:66 is a multicast address`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := runHook(t, tc.cfg, tc.stdin, tc.args...)
			if r.code != tc.code || !strings.Contains(r.stderr, tc.stderr) || r.stdout != "" {
				t.Fatalf("exit %d (want %d)\nstdout %q (want empty)\nstderr %q\nwant stderr containing %q", r.code, tc.code, r.stdout, r.stderr, tc.stderr)
			}
			if strings.Count(strings.TrimSpace(r.stderr), "\n") > 1 {
				t.Errorf("stderr is not one clear line: %q", r.stderr)
			}
		})
	}
}

func TestHelpGoesToStderr(t *testing.T) {
	r := runHook(t, cfgNone, "", "--help")
	if r.code != 0 || r.stdout != "" || !strings.Contains(r.stderr, "/etc/libvirt/hooks/qemu") {
		t.Fatalf("--help: %+v", r)
	}
}
