package main

import (
	"bytes"
	"errors"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/virtbridge/virtbridge/internal/journal"
	"github.com/virtbridge/virtbridge/internal/testenv/journaltest"
)

// TestApplyNamespaceHost runs `virtbridge apply` in a namespace host broken
// like the how-to's, with no VM and no daemon: it must make br0 (the uplink
// enslaved, the host's address moved) and br1, leave br2 (create:
// on_demand) alone, set the sysctls and the firewall, print each change,
// journal it (op apply, source cli) and exit 0; a second run changes
// nothing and says so. A bridge whose uplink is missing fails alone: exit
// 1, named on stderr, the others made. An invalid configuration changes
// nothing: exit 2 with its file:line.
func TestApplyNamespaceHost(t *testing.T) {
	j := journaltest.Require(t)
	bins := buildDoctor(t)
	h := newDoctorHost(t, bins, "bridges:\n  br0: {uplink: uplink0}\n  br1: {}\n  br2: {create: on_demand}\n", doctorEmptyNode)

	code, out, errOut, pid := h.apply(t)
	if code != 0 || errOut != "" {
		t.Fatalf("apply: exit %d, stderr %q; want 0 and nothing", code, errOut)
	}
	for _, want := range []string{"changed: bridge-created br0", "changed: uplink-enslaved uplink0",
		`changed: address-moved 10.77.0.2/24: "uplink0" -> "br0"`, "changed: bridge-created br1",
		`changed: sysctl-changed net.ipv4.ip_forward: "0" -> "1"`, "changed: rule-added iptables-"} {
		if !slices.ContainsFunc(strings.Split(out, "\n"), func(l string) bool { return strings.HasPrefix(l, want) }) {
			t.Errorf("apply printed no line %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "br2:") || strings.Contains(out, "bridge-created br2") {
		t.Errorf("apply made br2, which is create: on_demand:\n%s", out)
	}
	h.checkLinks(t, "br0 bridge addrs=[10.77.0.2/24]\nuplink0 master=br0\nbr1 bridge\nbr2 missing")
	if fw := h.ns.Run(t, "iptables", "-w", "-S", "FORWARD"); !strings.Contains(fw, "-j VIRTBRIDGE-FWD") {
		t.Errorf("FORWARD does not jump to virtbridge's chain:\n%s", fw)
	}
	entries := j.WaitEntries(t, 4, "_PID="+strconv.Itoa(pid), journal.FieldOp+"=apply", journal.FieldSource+"=cli",
		journal.FieldMessageID+"="+journal.IDHostChange)
	var journaled []string
	for _, e := range entries {
		journaled = append(journaled, e[journal.FieldChange]+" "+e[journal.FieldObject])
	}
	if !slices.Contains(journaled, "bridge-created br0") || !slices.Contains(journaled, "uplink-enslaved uplink0") {
		t.Errorf("journaled %q, want br0 created and uplink0 enslaved among them", journaled)
	}

	if code, out, errOut, _ := h.apply(t); code != 0 || out != "nothing to change: the host matches the configuration\n" || errOut != "" {
		t.Errorf("second apply: exit %d, stdout %q, stderr %q; want 0 and nothing changed", code, out, errOut)
	}

	h.write(t, "virtbridge.yaml", "bridges:\n  br0: {uplink: uplink0}\n  br3: {uplink: eth9}\n  br4: {}\n")
	code, out, errOut, _ = h.apply(t)
	if code != 1 || !strings.Contains(errOut, `bridge "br3"`) || !strings.Contains(errOut, "eth9") || !strings.Contains(out, "bridge-created br4") {
		t.Errorf("apply with br3's uplink missing: exit %d, stdout %q, stderr %q; want 1, br3 and eth9 named, br4 made", code, out, errOut)
	}
	h.checkLinks(t, "br3 missing\nbr4 bridge")

	h.write(t, "virtbridge.yaml", "bridges:\n  br5:\n    create: sometimes\n")
	code, out, errOut, _ = h.apply(t)
	if code != 2 || out != "" || !strings.Contains(errOut, h.cfg+":3: create must be one of at_start, on_demand") {
		t.Errorf("apply with an invalid config: exit %d, stdout %q, stderr %q; want 2 and the file:line error", code, out, errOut)
	}
	h.checkLinks(t, "br5 missing")
}

// apply runs `virtbridge apply --config CFG` inside the namespace and
// returns its exit status, stdout, stderr and pid.
func (h *doctorHost) apply(t *testing.T) (int, string, string, int) {
	t.Helper()
	cmd := exec.Command("ip", "netns", "exec", h.ns.Name, h.bins.cli, "apply", "--config", h.cfg)
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL=C",
		"VIRTBRIDGE_RUN_DIR=" + h.dir, "VIRTBRIDGE_STATE_DIR=" + h.dir, "VIRTBRIDGE_LOG_DIR=" + h.dir}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatal(err)
	}
	return cmd.ProcessState.ExitCode(), out.String(), errb.String(), cmd.Process.Pid
}

// checkLinks compares what `ip` shows of the namespace's links with want,
// one "NAME [bridge] [master=M] [addrs=[...]]" or "NAME missing" a line.
func (h *doctorHost) checkLinks(t *testing.T, want string) {
	t.Helper()
	var got []string
	for _, line := range strings.Split(want, "\n") {
		name := strings.Fields(line)[0]
		got = append(got, h.linkText(t, name))
	}
	if strings.Join(got, "\n") != want {
		t.Errorf("links:\n%s\nwant:\n%s", strings.Join(got, "\n"), want)
	}
}

func (h *doctorHost) linkText(t *testing.T, name string) string {
	t.Helper()
	detail, err := h.ns.Exec("ip", "-o", "-d", "link", "show", "dev", name)
	if err != nil {
		return name + " missing"
	}
	s := name
	if strings.Contains(detail, " bridge ") && !strings.Contains(detail, "bridge_slave") {
		s += " bridge"
	}
	if f := strings.Fields(detail); slices.Contains(f, "master") {
		s += " master=" + f[slices.Index(f, "master")+1]
	}
	var addrs []string
	for _, l := range strings.Split(strings.TrimSpace(h.ns.Run(t, "ip", "-o", "-4", "addr", "show", "dev", name)), "\n") {
		if f := strings.Fields(l); len(f) >= 4 {
			addrs = append(addrs, f[3])
		}
	}
	if len(addrs) > 0 {
		s += " addrs=[" + strings.Join(addrs, " ") + "]"
	}
	return s
}
