package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"

	"github.com/virtbridge/virtbridge/internal/config"
	"github.com/virtbridge/virtbridge/internal/desired"
	"github.com/virtbridge/virtbridge/internal/events"
	"github.com/virtbridge/virtbridge/internal/links"
	"github.com/virtbridge/virtbridge/internal/owner/lease"
	"github.com/virtbridge/virtbridge/internal/policy"
)

func init() {
	register("plan", command{summary: "show what the hook would make the host look like for a domain XML (dry run)", run: runPlan})
	register("check-config", command{summary: "validate a configuration file (on the host, uplink_mac: is resolved to its NIC)", run: runCheckConfig})
}

func runPlan(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := newFlags("plan", "plan --op OP [--config FILE] < domain.xml", stderr)
	opName := fs.String("op", "prepare", "hook operation to plan for: "+opList())
	cfgPath := fs.String("config", config.PathFromEnv(), "configuration file")
	fs.Usage = func() {
		fmt.Fprint(stderr, `usage: virtbridge plan --op OP [--config FILE] < domain.xml

Reads a domain XML (virsh dumpxml NAME) on stdin and prints, as JSON, the
state the hook would make the host reach for that operation, without
changing anything: the action (host, ports, detach, none), the managed
bridges with their uplinks, the VM's ports (tap, mac, bridge; tap is empty
when the XML names none, as at prepare, migrate and restore unless the VM
chose the name with <target dev='NAME'/>: libvirt makes the taps after
those operations, and the hook only checks that no host link has that name
yet), the NICs left alone with the reason, sysctls and firewall intent, and
errors (a start the hook would refuse), and uplink_owners: for each
bridge with an uplink, who owns the uplink's addresses as read from this
host ("kernel: static addresses", or "dhcp-client: dynamic address ...
held by dhclient (pid N)", which the hook refuses to move unless the
bridge has manager: kernel, or "virtbridged: virtbridged (pid N) keeps
lease ADDRESS ..., expires ..., renews at ..." for a bridge with manager:
virtbridged whose lease the running daemon keeps). Exit status: 0 no errors, 1 the plan has errors, 2 bad input.

`)
		fs.PrintDefaults()
	}
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	op, err := events.ParseOp(*opName)
	if err != nil {
		fmt.Fprintf(stderr, "virtbridge plan: %v\n", err)
		return exitUsage
	}
	cfg, err := config.Load(*cfgPath)
	if err != nil {
		fmt.Fprintf(stderr, "virtbridge plan: %v\n", err)
		return exitUsage
	}
	data, err := io.ReadAll(io.LimitReader(stdin, events.MaxXML+1))
	if err != nil {
		fmt.Fprintf(stderr, "virtbridge plan: reading stdin: %v\n", err)
		return exitUsage
	}
	ev, err := events.FromDomainXML(events.SourceCLI, op, data)
	if err != nil {
		fmt.Fprintf(stderr, "virtbridge plan: %v\n", err)
		return exitUsage
	}
	events.ResolveNetworks(&ev, events.NetworkDirs)
	d := policy.Decide(cfg, ev)
	out := planOutput{Desired: d, UplinkOwners: map[string]string{}}
	for _, b := range d.Bridges {
		if b.Uplink == "" && b.UplinkMAC == "" {
			continue
		}
		if o, ok := keeperOwner(b.Name, b.Uplink); ok && b.Manager == lease.Manager {
			out.UplinkOwners[b.Name] = ownerText(o)
			continue
		}
		o, err := uplinkOwner(context.Background(), b.Uplink, b.UplinkMAC)
		if err != nil {
			out.UplinkOwners[b.Name] = "unknown: " + err.Error()
			continue
		}
		out.UplinkOwners[b.Name] = ownerText(o)
	}
	enc := json.NewEncoder(stdout)
	enc.SetIndent("", "  ")
	if err := enc.Encode(out); err != nil {
		fmt.Fprintf(stderr, "virtbridge plan: %v\n", err)
		return exitUsage
	}
	if len(d.Errors) > 0 {
		return exitFound
	}
	return exitOK
}

// planOutput is what plan prints: the desired state, and who owns each
// bridge's uplink as read from the host (read-only).
type planOutput struct {
	desired.Desired
	UplinkOwners map[string]string `json:"uplink_owners,omitempty"`
}

func opList() string {
	s := ""
	for i, op := range events.HookOps {
		if i > 0 {
			s += ", "
		}
		s += string(op)
	}
	return s
}

func runCheckConfig(args []string, _ io.Reader, stdout, stderr io.Writer) int {
	fs := newFlags("check-config", "check-config [FILE]", stderr)
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	path := config.PathFromEnv()
	if fs.NArg() > 0 {
		path = fs.Arg(0)
	}
	cfg, err := config.Load(path)
	if err == nil {
		// On the host itself, uplink_mac: names a NIC: one may be given
		// to two bridges, once by name and once by MAC.
		err = cfg.CheckUplinks(links.NameByMAC)
	}
	if err != nil {
		fmt.Fprintf(stderr, "%v\n", err)
		return exitUsage
	}
	fmt.Fprintf(stdout, "%s: ok (%d managed bridges)\n", path, len(cfg.Bridges))
	return exitOK
}
