package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/virtbridge/virtbridge/internal/journal"
	"github.com/virtbridge/virtbridge/internal/testenv/journald"
	"github.com/virtbridge/virtbridge/internal/testenv/lab"
)

// The demo's VM and the configuration virtbridge runs with in the lab.
const (
	vmName = "demo-vm"
	vmMAC  = "52:54:00:de:00:01"
	bridge = "br0"
	config = "# /etc/virtbridge/virtbridge.yaml of the lab; every other key keeps its default\n" +
		"bridges:\n  br0:\n    uplink: uplink0\n"
	configPath   = "/etc/virtbridge/virtbridge.yaml"
	leaseTimeout = 4 * time.Minute
	steps        = 4
)

// demo is one run: the lab, the journald the hook writes to, the VM.
type demo struct {
	w         io.Writer
	hook, cli string // absolute paths of the built binaries
	keep      bool

	jd      *journald.Hold
	l       *lab.Lab
	uuid    string
	tap     string
	running time.Time // when the VM started
	step    int
}

func (d *demo) run(ctx context.Context) error {
	fmt.Fprint(d.w, "virtbridge demo: a VM on a bridge reaches the outside network, on a host set up\n"+
		"the way the classic 2009 bridged-networking how-to leaves it. Everything runs in\n"+
		"namespaces of its own: this machine's network is not touched.\n")
	for _, s := range []struct {
		title string
		do    func(context.Context) error
	}{
		{"The lab, with a broken host", d.setUp},
		{"Starting VM " + vmName + " on bridge " + bridge + ", which does not exist yet", d.startVM},
		{"The VM reaches the outside network", d.prove},
		{"Stopping the VM", d.stopVM},
	} {
		d.step++
		fmt.Fprintf(d.w, "\n[%d/%d] %s\n", d.step, steps, s.title)
		begin := time.Now()
		if err := s.do(ctx); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			d.diagnose()
			return fmt.Errorf("step %d (%s): %w", d.step, s.title, err)
		}
		d.note("step %d done in %v", d.step, time.Since(begin).Round(100*time.Millisecond))
	}
	return nil
}

func (d *demo) setUp(ctx context.Context) error {
	jd, err := ensureJournald(d.keep)
	d.jd = jd
	switch {
	case err != nil:
		return fmt.Errorf("journald: %w", err)
	case jd == nil:
		d.note("journald: not installed; virtbridge writes its records to the lab's /var/log/virtbridge/journal.jsonl")
	case jd.Pid() != 0:
		d.note("journald: started systemd-journald (pid %d) for the demo", jd.Pid())
	default:
		d.note("journald: using the one running on this machine")
	}
	d.note("starting the lab (the first run on a machine waits up to a minute while libvirt probes qemu)")
	begin := time.Now()
	d.l, err = lab.Start(ctx, lab.Options{
		Upstream:      true,
		HookPath:      d.hook,
		EtcVirtbridge: map[string][]byte{"virtbridge.yaml": []byte(config)},
	})
	if err != nil {
		return err
	}
	d.note("lab up in %v:", time.Since(begin).Round(100*time.Millisecond))
	d.note("  hypervisor: network namespace %s with libvirtd, and virtbridge's hook as /etc/libvirt/hooks/qemu", d.l.HVNetns())
	d.note("  upstream:   network namespace %s, %s, dnsmasq serving DHCP %s-%s",
		d.l.UpNetns(), lab.UpstreamAddr, lab.UpstreamDHCPLow, lab.UpstreamDHCPHi)
	d.note("  joined by a veth pair: %s (the hypervisor's NIC) <-> %s", lab.UplinkName, lab.UpstreamLinkName)
	f := lab.ClassicFaults()
	if !lab.BridgeNFAvailable() {
		f.BridgeNFCall = false
		d.note("(this kernel has no br_netfilter: bridged frames never meet iptables here)")
	}
	d.note("breaking the host like the how-to's: %s", f)
	if err := d.l.Break(ctx, bridge, f); err != nil {
		return err
	}
	if err := d.showHost(ctx); err != nil {
		return err
	}
	_, err = d.show(ctx, inHV, "cat", configPath)
	return err
}

// showHost shows what virtbridge changes: addresses, routes, sysctls and
// the FORWARD chain of the hypervisor.
func (d *demo) showHost(ctx context.Context) error {
	sysctls := []string{"sysctl", "net.ipv4.ip_forward"}
	if lab.BridgeNFAvailable() {
		sysctls = append(sysctls, "net.bridge.bridge-nf-call-iptables")
	}
	for _, argv := range [][]string{
		{"ip", "-br", "addr"}, {"ip", "route"}, sysctls, {"iptables", "-S", "FORWARD"},
	} {
		if _, err := d.show(ctx, inHV, argv...); err != nil {
			return err
		}
	}
	return nil
}

func (d *demo) startVM(ctx context.Context) error {
	x, err := lab.DomainXML(lab.VM{Name: vmName, MAC: vmMAC, Bridges: []string{bridge}})
	if err != nil {
		return err
	}
	d.note("a disk-less VM (TCG, e1000 NIC %s on %s) whose firmware boots from the network", vmMAC, bridge)
	if err := d.l.Define(ctx, x); err != nil {
		return err
	}
	begin := time.Now()
	if _, err := d.show(ctx, inHV, "virsh", "-c", "qemu:///system", "start", vmName); err != nil {
		return err
	}
	d.note("started in %v; at \"prepare\" virtbridge's hook created %s, enslaved %s, moved the host's",
		time.Since(begin).Round(100*time.Millisecond), bridge, lab.UplinkName)
	d.note("address and default route to the bridge, turned ip_forward on and let bridged traffic")
	d.note("through FORWARD ahead of the DROP policy and the REJECT rule, which it leaves alone:")
	d.running = time.Now()
	if d.uuid, err = d.l.UUID(ctx, vmName); err != nil {
		return err
	}
	if d.tap, err = d.l.TapOf(ctx, vmName, vmMAC); err != nil {
		return err
	}
	return d.showHost(ctx)
}

func (d *demo) prove(ctx context.Context) error {
	d.note("waiting for the VM's firmware to get an address from the upstream dnsmasq...")
	begin := time.Now()
	ip, err := d.waitLease(ctx)
	if err != nil {
		return err
	}
	d.note("LEASE: the VM got %s from upstream %v after its start: it reached the outside network",
		ip, time.Since(begin).Round(time.Second))
	d.note("through %s and %s", bridge, lab.UplinkName)
	if _, err := d.show(ctx, inUp, "ping", "-c", "3", "-i", "0.2", "-W", "2", lab.HostAddr); err != nil {
		return fmt.Errorf("upstream cannot reach the host's address on the bridge: %w", err)
	}
	d.note("the host's own address answers upstream from the bridge now")
	for _, argv := range [][]string{
		{d.cli, "status", "--config", configPath},
		{"ip", "link", "show", "dev", d.tap},
	} {
		if _, err := d.show(ctx, inHV, argv...); err != nil {
			return err
		}
	}
	if err := d.showJournal(ctx, "attached", "VIRTBRIDGE_UUID="+d.uuid); err != nil {
		return err
	}
	_, err = d.show(ctx, inHV, d.cli, "who", d.tap)
	return err
}

// waitLease waits for the VM's lease, saying every 15 s that it still does.
func (d *demo) waitLease(ctx context.Context) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, leaseTimeout)
	defer cancel()
	tick := time.NewTicker(15 * time.Second)
	defer tick.Stop()
	begin := time.Now()
	for {
		if ip, ok := d.l.Lease(vmMAC); ok {
			return ip, nil
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("no DHCP lease for %s after %v: %w", vmMAC, time.Since(begin).Round(time.Second), ctx.Err())
		case <-tick.C:
			d.note("still waiting (%v)", time.Since(begin).Round(time.Second))
		case <-time.After(250 * time.Millisecond):
		}
	}
}

func (d *demo) stopVM(ctx context.Context) error {
	if _, err := d.show(ctx, inHV, "virsh", "-c", "qemu:///system", "destroy", vmName); err != nil {
		return err
	}
	d.note("at \"stopped\" the hook journaled the detach and forgot the tap:")
	if err := d.showJournal(ctx, "detached", "MESSAGE_ID="+journal.IDDetached, "VIRTBRIDGE_UUID="+d.uuid); err != nil {
		return err
	}
	if out, err := d.show(ctx, inHV, d.cli, "who", d.tap); err == nil {
		return fmt.Errorf("virtbridge who %s still names a VM after the stop: %s", d.tap, out)
	}
	d.note("no VM owns %s now, but the journal keeps its history: who owned it while the VM ran?", d.tap)
	// A moment just after the attach (who --at takes fractions of a
	// second): on a journald that other labs share, a wider window could
	// take in their records of a tap of the same name.
	at := d.running.Add(time.Millisecond).Format("15:04:05.000")
	_, err := d.show(ctx, inHV, d.cli, "who", d.tap, "--at", at)
	return err
}

// finish tears the lab down, or with --keep after a successful run leaves
// it up and says how to enter and remove it.
func (d *demo) finish(ok bool) error {
	if d.keep && ok {
		err := d.l.Keep()
		if err == nil {
			d.printKept()
			return nil
		}
		d.note("cannot leave the lab up: %v", err)
	}
	var errs []error
	if d.l != nil {
		fmt.Fprintf(d.w, "\nTearing the lab down...\n")
		begin := time.Now()
		if err := d.l.Close(); err != nil {
			errs = append(errs, err)
		} else {
			d.note("lab down in %v: its namespaces, processes and mounts are gone", time.Since(begin).Round(time.Millisecond))
		}
	}
	if d.jd.Pid() != 0 {
		d.note("stopping the demo's journald (pid %d)", d.jd.Pid())
	}
	errs = append(errs, releaseJournald(d.jd, d.note))
	return errors.Join(errs...)
}

func (d *demo) printKept() {
	enter := fmt.Sprintf("nsenter -t %d -m -n ", d.l.HolderPID())
	fmt.Fprintf(d.w, "\nThe lab stays up (--keep). Look around, as root:\n")
	for _, row := range [][2]string{
		{enter + "virsh -c qemu:///system start " + vmName, "boot the VM again"},
		{enter + d.cli + " status", "virtbridge's view of the lab"},
		{enter + "sh", "a shell in the hypervisor (exit to leave)"},
		{"ip netns exec " + d.l.HVNetns() + " ip -br addr", "the hypervisor's network"},
		{"ip netns exec " + d.l.UpNetns() + " ping -c 3 " + lab.HostAddr, "the host, from upstream"},
		{"cat " + filepath.Join(d.l.Dir(), "dnsmasq.leases"), "upstream's DHCP leases"},
		{"journalctl -o short VIRTBRIDGE_UUID=" + d.uuid, "the VM's journal records"},
	} {
		fmt.Fprintf(d.w, "  %-58s # %s\n", row[0], row[1])
	}
	what := "namespaces, processes, mounts"
	if d.jd.Pid() != 0 {
		what += ", the demo's journald"
	}
	fmt.Fprintf(d.w, "Tear it down (%s):\n  %-58s # runs %s --down\n",
		what, "sudo make demo-down", filepath.Join(filepath.Dir(d.cli), "vbdemo"))
}

// harmlessRE matches libvirtd's complaints about what a lab lacks on
// purpose (D-Bus, udev, DMI tables).
var harmlessRE = regexp.MustCompile(`DBus|dmidecode|udevGetDMIData|/dev/mem`)

// diagnose prints the tails of the lab's logs after a failed step.
func (d *demo) diagnose() {
	if d.l == nil {
		return
	}
	for _, f := range []string{"libvirtd.log", "dnsmasq.log"} {
		b, err := os.ReadFile(filepath.Join(d.l.Dir(), f))
		if err != nil {
			continue
		}
		var lines []string
		for _, line := range strings.Split(string(b), "\n") {
			if strings.TrimSpace(line) != "" && !harmlessRE.MatchString(line) {
				lines = append(lines, line)
			}
		}
		if len(lines) > 15 {
			lines = lines[len(lines)-15:]
		}
		fmt.Fprintf(d.w, "  --- last lines of the lab's %s:\n      %s\n", f, strings.Join(lines, "\n      "))
	}
}

// note prints a line of the story.
func (d *demo) note(format string, args ...any) {
	fmt.Fprintf(d.w, "  * "+format+"\n", args...)
}
