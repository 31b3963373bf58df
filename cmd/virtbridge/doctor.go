package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"

	"github.com/virtbridge/virtbridge/internal/config"
	"github.com/virtbridge/virtbridge/internal/doctor"
	"github.com/virtbridge/virtbridge/internal/firewall"
	"github.com/virtbridge/virtbridge/internal/paths"
	"github.com/virtbridge/virtbridge/internal/sysctl"
)

func init() {
	register("doctor", command{summary: "check the host for what breaks bridged VMs, with the fix for each problem", run: runDoctor})
}

// fixLockWait bounds the wait for the host lock with --fix (a VM start in
// progress holds it).
const fixLockWait = 30 * time.Second

func runDoctor(args []string, _ io.Reader, stdout, stderr io.Writer) int {
	fs := newFlags("doctor", "doctor [--config FILE] [--uri URI] [--json] [--fix]", stderr)
	cfgPath := fs.String("config", config.PathFromEnv(), "configuration file")
	uri := fs.String("uri", doctor.DefaultURI, "libvirt connection whose VMs to check")
	asJSON := fs.Bool("json", false, "print JSON")
	fix := fs.Bool("fix", false, "apply the fixes virtbridge owns, as the hook does, then check again")
	hooksDir := fs.String("hooks-dir", doctor.DefaultHooksDir, "libvirt's hook directory")
	fs.Usage = func() {
		fmt.Fprint(stderr, `usage: virtbridge doctor [--config FILE] [--uri URI] [--json] [--fix]

Checks this host for what breaks bridged VMs — the hook's installation, the
configuration, each managed bridge and its uplink, forwarding sysctls and
firewall rules (Docker's too), the forward path of each managed
bridge (every forward chain its bridged frames cross — iptables-legacy,
iptables-nft, native nftables tables, firewalld — in hook priority order,
and the first that drops them; whether bridge-nf-call-iptables/ip6tables=0
is safe here, or what it would break), the NICs of the defined VMs and the taps in
the bridges — and says for each problem what is wrong, why it breaks
bridged VMs, and the exact fix, or that virtbridge fixes it itself.
--fix applies those fixes the way the hook does (under the host lock,
journaled): what virtbridge apply does (every bridge made at start, the
sysctls, the firewall), each existing create: on_demand bridge made right,
and the running VMs' taps reconciled as virtbridged does; then it checks
again and says what it could not fix, why, and what to do first (e.g. an
uplink that does not exist yet). Exit status: 0 all ok, 1 warnings, 2
failures, something --fix could not fix, or bad usage.

`)
		fs.PrintDefaults()
	}
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	if fs.NArg() > 0 {
		fs.Usage()
		return exitUsage
	}
	src := doctorSources(*cfgPath, *uri, *hooksDir)
	var fixed *doctor.FixResult
	if *fix {
		if src.Config == nil {
			fmt.Fprintf(stderr, "virtbridge doctor: not fixing anything: the configuration does not load\n")
		} else {
			running, listed, ok := doctor.RunningEvents(src)
			if !ok {
				running = nil // libvirt unreachable: leave the taps and the store alone
			}
			res := doctor.Fix(context.Background(), cliEngine(src.Config), src.Config, doctor.LinkExists(src.Links), running, listed)
			fixed = &res
			src = doctorSources(*cfgPath, *uri, *hooksDir) // read everything again
		}
	}
	r := doctor.Run(src)
	if fixed != nil {
		r.AfterFix(fixed)
	}
	var err error
	if *asJSON {
		err = doctor.WriteJSON(stdout, r, fixed)
	} else {
		err = doctor.WriteText(stdout, r, fixed, colorful(stdout))
	}
	if err != nil {
		fmt.Fprintf(stderr, "virtbridge doctor: %v\n", err)
	}
	if fixed != nil && len(fixed.NotFixed) > 0 {
		return max(r.ExitCode(), 2)
	}
	return r.ExitCode()
}

// doctorSources opens the real readers of this host (the calling process's
// namespaces).
func doctorSources(cfgPath, uri, hooksDir string) doctor.Sources {
	cfg, err := config.Load(cfgPath)
	return doctor.Sources{
		ConfigPath: cfgPath, Config: cfg, ConfigErr: err,
		HooksDir: hooksDir,
		Daemons:  doctor.ProcDaemons{},
		Links:    doctor.HostLinks{},
		Managers: &doctor.HostManagers{Dial: systemBusDial()},
		Owners:   doctorOwners(),
		Sysctls:  sysctl.New(""),
		Tables:   doctor.HostTables{},
		Native:   doctor.HostNative{},
		NFUsers:  doctor.HostNFUsers{},
		Firewall: firewall.New(firewall.Options{NoState: true}),
		Domains:  doctor.LibvirtDomains{URI: uri},
		Store:    doctor.StoreFile(filepath.Join(paths.StateDir(), "ports.json")),
	}
}

// colorful: colours only on a terminal, and never with NO_COLOR set.
func colorful(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok || os.Getenv("NO_COLOR") != "" {
		return false
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}
