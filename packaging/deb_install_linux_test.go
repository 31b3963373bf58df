package packaging

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/virtbridge/virtbridge/internal/install"
	"github.com/virtbridge/virtbridge/internal/testenv/lab"
)

const (
	reloadHint = "libvirt looks for hooks only when it starts or reloads"
	hookPath   = "/etc/libvirt/hooks/qemu"
	savedPath  = "/etc/libvirt/hooks/qemu.d/" + install.SavedName
	// testConfig makes one isolated managed bridge.
	testConfig = "bridges:\n  br-pkg: {}\n"
	// foreignHook is another program's hook. It leaves a trace of its
	// calls next to itself (libvirt skips the trace: not executable).
	foreignHook = "#!/bin/sh\necho \"$1 $2 $3\" >>\"${0%/*}/trace\"\n"
)

// TestDebWithoutHook installs the deb where libvirt has no hook, upgrades
// it, runs the installed hook, removes and purges it, and wants the
// machine as it was.
func TestDebWithoutHook(t *testing.T) {
	p := buildPackages(t)
	h := newHost(t)
	before := h.snapshot()

	out := h.mustExec("dpkg", "-i", p.deb)
	if n := strings.Count(out, reloadHint); n != 1 {
		t.Errorf("dpkg -i told the operator %d times to reload libvirt, want once:\n%s", n, out)
	}
	h.checkInstalled()
	if _, err := os.Lstat(h.path("/etc/libvirt/hooks/qemu.d")); !os.IsNotExist(err) {
		t.Errorf("qemu.d made without a hook to keep: %v", err)
	}
	h.checkDoctor(false)
	h.runHook()
	h.checkUpgrade(p.debNext)

	h.mustExec("dpkg", "-r", "virtbridge")
	h.checkRemoved(before, true)
	h.mustExec("dpkg", "-P", "virtbridge")
	if got := h.snapshot(); got != before {
		t.Errorf("after dpkg -P the machine differs from before the install:\n%s", diff(before, got))
	}
}

// TestDebOverForeignHook installs the deb where another program's hook
// is, starts a VM through the installed hook in a lab, and wants the
// foreign hook back, untouched, after removal.
func TestDebOverForeignHook(t *testing.T) {
	p := buildPackages(t)
	h := newHost(t)
	hooks := h.path("/etc/libvirt/hooks")
	if err := os.MkdirAll(filepath.Join(hooks, "qemu.d"), 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(hooks, "qemu"), foreignHook, 0o750)
	writeFile(t, filepath.Join(hooks, "qemu.d", "50-other"), "#!/bin/sh\nexit 0\n", 0o755)
	before := h.snapshot()

	out := h.mustExec("dpkg", "-i", p.deb)
	if n := strings.Count(out, reloadHint); n != 1 {
		t.Errorf("dpkg -i told the operator %d times to reload libvirt, want once:\n%s", n, out)
	}
	if !strings.Contains(out, "moved the existing hook "+hookPath) {
		t.Errorf("dpkg -i did not say where the existing hook went:\n%s", out)
	}
	h.checkInstalled()
	saved := h.path(savedPath)
	if data, err := os.ReadFile(saved); err != nil || string(data) != foreignHook {
		t.Fatalf("the foreign hook was not kept as %s: %q, %v", savedPath, data, err)
	}
	if fi, _ := os.Stat(saved); fi.Mode().Perm() != 0o750 {
		t.Errorf("kept hook has mode %v, want 0750", fi.Mode().Perm())
	}
	h.checkDoctor(true)
	h.checkUpgrade(p.debNext)
	h.startVM(saved)

	h.mustExec("dpkg", "-r", "virtbridge")
	if data, err := os.ReadFile(filepath.Join(hooks, "qemu")); err != nil || string(data) != foreignHook {
		t.Errorf("after dpkg -r the foreign hook is not back: %q, %v", data, err)
	}
	h.checkRemoved(before, false)
	h.mustExec("dpkg", "-P", "virtbridge")
	if got := h.snapshot(); got != before {
		t.Errorf("after dpkg -P the machine differs from before the install:\n%s", diff(before, got))
	}
}

func writeFile(t *testing.T, path, content string, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
}

// checkInstalled checks the installed files, their modes and owners, the
// hook link, the configuration, the catalog and the unit.
func (h *host) checkInstalled() {
	t := h.t
	t.Helper()
	for _, w := range wantFiles {
		f := strings.Fields(w) // mode owner group path
		fi, err := os.Lstat(h.path(f[3]))
		if err != nil {
			t.Errorf("installed file: %v", err)
			continue
		}
		st := fi.Sys().(*syscall.Stat_t)
		if fi.Mode().String() != f[0] || st.Uid != 0 || st.Gid != 0 {
			t.Errorf("%s: mode %v owner %d:%d, want %s root:root", f[3], fi.Mode(), st.Uid, st.Gid, f[0])
		}
	}
	if text, err := os.Readlink(h.path(hookPath)); err != nil || text != "/usr/bin/virtbridge-hook" {
		t.Errorf("%s is %q (%v), want a link to /usr/bin/virtbridge-hook", hookPath, text, err)
	}
	want, _ := os.ReadFile("virtbridge.yaml")
	if got, err := os.ReadFile(h.path("/etc/virtbridge/virtbridge.yaml")); err != nil || string(got) != string(want) {
		t.Errorf("installed configuration differs from packaging/virtbridge.yaml (%v)", err)
	}
	if out := h.mustExec("virtbridge", "check-config", "/etc/virtbridge/virtbridge.yaml"); !strings.Contains(out, ": ok") {
		t.Errorf("check-config: %s", out)
	}
	if _, err := exec.LookPath("journalctl"); err == nil {
		if out := mustRun(t, "journalctl", "--list-catalog", "--no-pager"); !strings.Contains(out, "5ff2a649b70307c98b6ebf8e9ad17c24") {
			t.Errorf("journald's catalog lacks virtbridge's entries after install:\n%s", out)
		}
	}
	if _, err := exec.LookPath("systemd-analyze"); err == nil {
		args := []string{"verify", "/usr/lib/systemd/system/virtbridged.service"}
		if _, err := exec.LookPath("man"); err != nil {
			args = append(args, "--man=no")
		}
		if out, err := run("", nil, "systemd-analyze", args...); err != nil || out != "" {
			t.Errorf("systemd-analyze verify of the installed unit: %v\n%s", err, out)
		}
	}
}

// checkDoctor runs the installed `virtbridge doctor` and wants it to find
// virtbridge's hook installed (and, with foreign, the kept hook too). It
// only looks at the hook findings: libvirtd does not run in the view.
func (h *host) checkDoctor(foreign bool) {
	t := h.t
	t.Helper()
	if !strings.Contains(h.mustExec("virtbridge", "--help"), "doctor") {
		t.Logf("virtbridge has no doctor yet: check-config only")
		return
	}
	out, _ := h.exec("virtbridge", "doctor", "--json")
	var doc struct {
		Findings []struct{ Check, Status, Object, Message string }
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("virtbridge doctor --json: %v\n%s", err, out)
	}
	found := map[string]string{}
	for _, f := range doc.Findings {
		if f.Check == "hook" || f.Check == "hook-other" {
			found[f.Object] = f.Check + " " + f.Status
		}
	}
	want := map[string]string{hookPath: "hook ok"}
	if foreign {
		want[savedPath] = "hook-other ok"
		want["/etc/libvirt/hooks/qemu.d/50-other"] = "hook-other ok"
	}
	for obj, w := range want {
		if found[obj] != w {
			t.Errorf("doctor on %s: %q, want %q\n%s", obj, found[obj], w, out)
		}
	}
}

// runHook calls the installed hook as libvirtd does at a VM's prepare, in
// the test's namespace: it makes the bridge and virtbridge's firewall
// chain there, for checkRemoved to see what removal leaves.
func (h *host) runHook() {
	t := h.t
	t.Helper()
	cfg := filepath.Join(t.TempDir(), "virtbridge.yaml")
	writeFile(t, cfg, testConfig, 0o644)
	x, err := lab.DomainXML(lab.VM{Name: "pkgvm", MAC: "52:54:00:70:6b:01", Bridges: []string{"br-pkg"}})
	if err != nil {
		t.Fatal(err)
	}
	if out, err := h.execIn(x, "env", "VIRTBRIDGE_CONFIG="+cfg, hookPath, "pkgvm", "prepare", "begin", "-"); err != nil {
		t.Fatalf("the installed hook at prepare: %v\n%s", err, out)
	}
	if out := h.ns.Run(t, "ip", "-d", "link", "show", "br-pkg"); !strings.Contains(out, "bridge") {
		t.Fatalf("the installed hook made no bridge br-pkg:\n%s", out)
	}
	if rules := h.firewall(); !strings.Contains(rules, "VIRTBRIDGE-FWD") {
		t.Fatalf("the installed hook made no VIRTBRIDGE-FWD chain:\n%s", rules)
	}
}

// firewall is the test namespace's iptables rules, both variants.
func (h *host) firewall() string {
	var all string
	for _, c := range []string{"iptables-nft-save", "ip6tables-nft-save", "iptables-legacy-save", "ip6tables-legacy-save"} {
		if _, err := exec.LookPath(c); err == nil {
			out, _ := h.ns.Exec(c)
			all += out
		}
	}
	return all
}

// checkUpgrade changes the configuration, upgrades, and wants the change
// kept, the hook unchanged and the operator not told again.
func (h *host) checkUpgrade(next string) {
	t := h.t
	t.Helper()
	conf := h.path("/etc/virtbridge/virtbridge.yaml")
	data, err := os.ReadFile(conf)
	if err != nil {
		t.Fatal(err)
	}
	changed := string(data) + "# changed by the operator\n"
	writeFile(t, conf, changed, 0o644)
	hooksBefore := h.listing("/etc/libvirt/hooks")
	out := h.mustExec("dpkg", "-i", next)
	if strings.Contains(out, reloadHint) {
		t.Errorf("the upgrade told the operator again to reload libvirt:\n%s", out)
	}
	if got, _ := os.ReadFile(conf); string(got) != changed {
		t.Errorf("the upgrade replaced the changed configuration")
	}
	if got := h.listing("/etc/libvirt/hooks"); got != hooksBefore {
		t.Errorf("the upgrade changed the hooks:\n%s", diff(hooksBefore, got))
	}
	if st := packageStatus(t); st != "installed" {
		t.Errorf("after the upgrade the package is %q", st)
	}
}

func (h *host) listing(dir string) string {
	var b strings.Builder
	h.walk(&b, dir, h.path(dir))
	return b.String()
}

// checkRemoved checks the machine after dpkg -r: as before but for the
// configuration, the data virtbridge recorded (kept until purge) and
// dpkg's record of the configuration; the firewall chain gone, the bridge
// left alone (when the hook made one: hookRan).
func (h *host) checkRemoved(before string, hookRan bool) {
	t := h.t
	t.Helper()
	kept := []string{"/etc/virtbridge/virtbridge.yaml ", "/var/log/virtbridge", "/var/lib/virtbridge/", "/var/lib/dpkg/info/virtbridge."}
	isKept := func(l string) bool {
		for _, k := range kept {
			if strings.HasPrefix(l, k) {
				return true
			}
		}
		return false
	}
	var unexpected []string
	for _, l := range strings.Split(diff(before, h.snapshot()), "\n") {
		if l != "" && !(strings.HasPrefix(l, "+ ") && isKept(l[2:])) {
			unexpected = append(unexpected, l)
		}
	}
	if len(unexpected) > 0 {
		t.Errorf("after dpkg -r the machine differs from before the install:\n%s", strings.Join(unexpected, "\n"))
	}
	if _, err := os.Stat(h.path("/etc/virtbridge/virtbridge.yaml")); err != nil {
		t.Errorf("dpkg -r removed the configuration: %v", err)
	}
	if rules := h.firewall(); strings.Contains(rules, "VIRTBRIDGE") {
		t.Errorf("dpkg -r left virtbridge's firewall rules:\n%s", rules)
	}
	if out, err := h.ns.Exec("ip", "link", "show", "br-pkg"); hookRan && err != nil {
		t.Errorf("dpkg -r deleted the bridge the hook made: %v\n%s", err, out)
	}
}

// startVM starts a VM on a managed bridge in a lab whose libvirtd runs the
// installed hook and the hook install-hook kept, as the view has them.
func (h *host) startVM(saved string) {
	t := h.t
	t.Helper()
	if err := lab.Unavailable(false); err != nil {
		t.Logf("no VM started: %v", err)
		return
	}
	kept, err := os.ReadFile(saved)
	if err != nil {
		t.Fatal(err)
	}
	l := lab.ForTest(t, lab.Options{
		HookPath:      "/usr/bin/virtbridge-hook",
		HookFiles:     map[string][]byte{"qemu.d/" + install.SavedName: kept},
		EtcVirtbridge: map[string][]byte{"virtbridge.yaml": []byte(testConfig)},
	})
	trace, err := l.HostPath("/etc/libvirt/hooks/qemu.d/trace")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	const mac = "52:54:00:70:6b:02"
	x, err := lab.DomainXML(lab.VM{Name: "pkgvm", MAC: mac, Bridges: []string{"br-pkg"}})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := l.DestroyUndefine(ctx, "pkgvm"); err != nil {
			t.Errorf("removing the VM: %v", err)
		}
	}()
	if err := l.DefineStart(ctx, x); err != nil {
		t.Fatalf("starting a VM through the installed hook: %v", err)
	}
	tap, err := l.TapOf(ctx, "pkgvm", mac)
	if err != nil {
		t.Fatal(err)
	}
	out, err := l.ExecHV(ctx, "ip", "link", "show", tap)
	if err != nil || !strings.Contains(string(out), "master br-pkg") {
		t.Errorf("tap %s is not in br-pkg: %v\n%s", tap, err, out)
	}
	// libvirt ran the kept hook after virtbridge's, at every step.
	if got, _ := os.ReadFile(trace); !strings.Contains(string(got), "pkgvm prepare begin") || !strings.Contains(string(got), "pkgvm started begin") {
		t.Errorf("libvirt did not run the kept hook in qemu.d: trace %q", got)
	}
}
