package doctor

import (
	"strings"
	"testing"
)

// TestBlockedAdvice: a finding --fix would fix says so only while --fix
// can make its bridge. With br-a's uplink missing, br-a's findings and,
// when no bridge can be made, the host-wide ones say what to do first;
// with a bridge made at start or another that can be made, the host-wide
// ones stay fixable.
func TestBlockedAdvice(t *testing.T) {
	links := fakeLinks{{Name: "uplink0", Kind: "veth", Up: true, MTU: 1500}}
	sys := fakeSysctls{ipForward: "0", nfCallIPTables: "0", nfCallIP6Tables: "0"}
	for _, tc := range []struct {
		name        string
		cfg         string
		hostFixable bool
	}{
		// Bridges made at start do not hold the host settings back:
		// --fix (engine.EnsureHost) applies them on their own.
		{"every bridge blocked, made at start", "bridges:\n  br-a: {uplink: eth9}\nsysctl: {ip_forward: 1}\n", true},
		{"every bridge blocked, made on demand", "bridges:\n  br-a: {uplink: eth9, create: on_demand}\nsysctl: {ip_forward: 1}\n", false},
		{"one bridge can be made", "bridges:\n  br-a: {uplink: eth9}\n  br-b: {uplink: uplink0}\nsysctl: {ip_forward: 1}\n", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := Run(Sources{ConfigPath: "test.yaml", Config: mustConfig(t, tc.cfg), Links: links, Sysctls: sys})
			f := one(t, r, "bridge-exists", "br-a")
			if strings.Contains(tc.cfg, "on_demand") {
				// A missing on_demand bridge is as configured.
				want(t, f, OK, "does not exist yet (create: on_demand")
			} else {
				want(t, f, Warn, "first make eth9 exist, or correct the uplink of bridge br-a at test.yaml:2 (see `ip link`), then run `virtbridge doctor --fix`")
			}
			if f.Fixable {
				t.Error("br-a's bridge-exists is fixable though its uplink is missing")
			}
			ipf := one(t, r, "sysctl", ipForward)
			if ipf.Fixable != tc.hostFixable || tc.hostFixable != (ipf.Fix == fixByVirtbridge) {
				t.Errorf("ip_forward: fixable %v, fix %q; want fixable %v", ipf.Fixable, ipf.Fix, tc.hostFixable)
			}
			if !tc.hostFixable && !strings.HasPrefix(ipf.Fix, "first make eth9 exist") {
				t.Errorf("ip_forward: fix %q does not say what to do first", ipf.Fix)
			}
		})
	}
}

// TestAfterFix: a bridge --fix could not make is explained with the
// doctor's reason and step (the config path it was given), and a finding
// said fixable that is still there after --fix is listed as not fixed and
// no longer advises --fix.
func TestAfterFix(t *testing.T) {
	links := fakeLinks{{Name: "uplink0", Kind: "veth", Up: true, MTU: 1500}}
	cfg := mustConfig(t, "bridges:\n  br-a: {uplink: eth9}\n  br-b: {uplink: uplink0}\nsysctl: {ip_forward: 1}\n")
	r := Run(Sources{ConfigPath: "test.yaml", Config: cfg, Links: links, Sysctls: fakeSysctls{ipForward: "0", nfCallIPTables: "0", nfCallIP6Tables: "0"}})
	res := FixResult{Errors: []string{"bridge br-a: uplink missing", "bridge br-b: taking the host lock: timed out"},
		NotFixed: []NotFixed{{Object: "bridge br-a", Reason: "uplink missing"}, {Object: "bridge br-b", Reason: "taking the host lock: timed out"}}}
	r.AfterFix(&res)
	var got []string
	for _, nf := range res.NotFixed {
		got = append(got, nf.Object+": "+nf.Reason+" | "+nf.Fix)
	}
	wantNF := []string{
		"bridge br-a: uplink eth9 of bridge br-a does not exist in this network namespace | make eth9 exist, or correct the uplink of bridge br-a at test.yaml:2 (see `ip link`), then run `virtbridge doctor --fix` again",
		"bridge br-b: taking the host lock: timed out | ",
		"bridge-exists br-b: does not exist yet, still after the fix | `virtbridge doctor --fix` did not fix it (see what it could not fix above)",
		"sysctl net.ipv4.ip_forward: 0; the config says 1, still after the fix | `virtbridge doctor --fix` did not fix it (see what it could not fix above)",
	}
	if strings.Join(got, "\n") != strings.Join(wantNF, "\n") {
		t.Errorf("not fixed:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(wantNF, "\n"))
	}
	for _, f := range r.Findings {
		if f.Fixable {
			t.Errorf("after a failed --fix, %s %s still says --fix fixes it", f.Check, f.Object)
		}
	}
}
