// Package events turns what virtbridge learns about a VM — a libvirt hook
// call (argv and domain XML on stdin) or, later, a libvirt domain event —
// into one Event type that the policy decides on.
package events

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"

	"libvirt.org/go/libvirtxml"

	"github.com/virtbridge/virtbridge/internal/names"
)

// Source says who reported an event.
type Source string

// Sources of events.
const (
	SourceHook   Source = "hook"
	SourceEventd Source = "eventd"
	SourceCLI    Source = "cli"
)

// Op is the VM operation an event reports. The hook's ops are libvirt's
// names for the qemu hook; the daemon adds its own.
type Op string

// Ops of the libvirt qemu hook (libvirt's docs, "hooks.html") and of the
// event daemon.
const (
	OpPrepare   Op = "prepare"
	OpStart     Op = "start"
	OpStarted   Op = "started"
	OpStopped   Op = "stopped"
	OpRelease   Op = "release"
	OpMigrate   Op = "migrate"
	OpRestore   Op = "restore"
	OpReconnect Op = "reconnect"
	OpAttach    Op = "attach"

	// OpDeviceAdded and OpDeviceRemoved come from libvirt device events
	// (a NIC hot-plugged or unplugged); the hook never sees them.
	OpDeviceAdded   Op = "device-added"
	OpDeviceRemoved Op = "device-removed"
	// OpReconcile is the daemon's full pass over a running domain: make
	// the host right and record only what differs from the store.
	OpReconcile Op = "reconcile"
)

// HookOps lists the ops libvirt passes to the qemu hook.
var HookOps = []Op{OpPrepare, OpStart, OpStarted, OpStopped, OpRelease, OpMigrate, OpRestore, OpReconnect, OpAttach}

// ParseOp returns the hook op called s.
func ParseOp(s string) (Op, error) {
	for _, op := range HookOps {
		if string(op) == s {
			return op, nil
		}
	}
	return "", fmt.Errorf("unknown hook operation %q (libvirt sends one of %s)", s, joinOps(HookOps))
}

func joinOps(ops []Op) string {
	s := make([]string, len(ops))
	for i, op := range ops {
		s[i] = string(op)
	}
	return strings.Join(s, ", ")
}

// NeedsHost reports whether the op is one where the VM's networking must be
// ready when the hook returns: the bridges must exist before qemu starts.
func (op Op) NeedsHost() bool {
	switch op {
	case OpPrepare, OpReconnect, OpMigrate, OpRestore, OpAttach, OpDeviceAdded, OpReconcile:
		return true
	}
	return false
}

// BeforeTaps reports whether libvirt has not created the VM's taps yet at
// op (prepare, migrate, restore come before qemu starts): a <target dev>
// in the XML then names a tap still to be made, and libvirt refuses to
// start the VM if a link of that name already exists, so such a link is
// never the VM's tap.
func (op Op) BeforeTaps() bool { return op == OpPrepare || op == OpMigrate || op == OpRestore }

// Ends reports whether the op means the VM's ports are gone.
func (op Op) Ends() bool { return op == OpStopped || op == OpRelease }

// MayFail reports whether a non-zero hook exit at op aborts the operation
// (and so can refuse a broken start). At reconnect a failure kills the
// running VM, and at stopped/release nothing can be undone: there the hook
// must exit 0.
func (op Op) MayFail() bool {
	switch op {
	case OpPrepare, OpStart, OpStarted, OpMigrate, OpRestore:
		return true
	}
	return false
}

// NIC is one network interface of a VM, as the domain XML describes it.
type NIC struct {
	MAC     string `json:"mac"`
	Type    string `json:"type"`              // libvirt interface type: bridge, network, direct, user, ...
	Bridge  string `json:"bridge,omitempty"`  // source bridge, also for a network in bridge mode
	Network string `json:"network,omitempty"` // libvirt network name, if any
	// NetworkMode is the forward mode of that network (bridge, nat, route,
	// open, isolated, ...), once ResolveNetworks has read it.
	NetworkMode string `json:"network_mode,omitempty"`
	Tap         string `json:"tap,omitempty"` // target dev; empty before libvirt created it
	Model       string `json:"model,omitempty"`
	Alias       string `json:"alias,omitempty"` // device alias, e.g. net0
	Dev         string `json:"dev,omitempty"`   // source dev of a direct (macvtap) NIC
}

// Event is one thing that happened to a VM.
type Event struct {
	Source Source `json:"source"`
	Op     Op     `json:"op"`
	SubOp  string `json:"subop,omitempty"`
	Extra  string `json:"extra,omitempty"`
	Domain string `json:"domain"`
	UUID   string `json:"uuid"`
	NICs   []NIC  `json:"nics"`
}

// domainDoc is the part of a domain definition virtbridge needs; the NICs
// are decoded by libvirtxml's own type. Decoding into the whole
// libvirtxml.Domain builds reflection data for its hundreds of types in
// every one-shot hook process (~0.4 ms, ~15% of a steady prepare, measured
// in docs/BENCHMARKS.md).
type domainDoc struct {
	XMLName xml.Name `xml:"domain"`
	Name    string   `xml:"name"`
	UUID    string   `xml:"uuid"`
	Devices *struct {
		Interfaces []libvirtxml.DomainInterface `xml:"interface"`
	} `xml:"devices"`
}

// MaxXML bounds the domain XML read from the hook's stdin.
const MaxXML = 8 << 20

// MaxNICs bounds the interfaces of one domain. libvirt puts each NIC on a
// PCI(e) slot; even a q35 machine filled with root ports has at most 256
// buses, and real VMs have a handful of NICs. The bound caps the links,
// journal records and store entries one hook run can make.
const MaxNICs = 256

// InputError is bad input: the hook refuses it and changes nothing.
type InputError struct{ Msg string }

func (e *InputError) Error() string { return e.Msg }

func inputErr(format string, args ...any) error {
	return &InputError{Msg: fmt.Sprintf(format, args...)}
}

// ParseHook turns the qemu hook's arguments (argv without the program name:
// domain, op, subop, extra) and its stdin into an Event. It reads at most
// MaxXML+1 bytes.
func ParseHook(args []string, stdin io.Reader) (Event, error) {
	if len(args) != 4 {
		return Event{}, inputErr("want 4 arguments from libvirtd (domain op subop extra), got %d; "+
			"this program is meant to be installed as /etc/libvirt/hooks/qemu", len(args))
	}
	for i, a := range args {
		if !utf8.ValidString(a) {
			return Event{}, inputErr("argument %d is not valid UTF-8", i+1)
		}
	}
	op, err := ParseOp(args[1])
	if err != nil {
		return Event{}, &InputError{Msg: err.Error()}
	}
	data, err := io.ReadAll(io.LimitReader(stdin, MaxXML+1))
	if err != nil {
		return Event{}, fmt.Errorf("reading domain XML from stdin: %w", err)
	}
	ev, err := FromDomainXML(SourceHook, op, data)
	if err != nil {
		return Event{}, err
	}
	ev.SubOp, ev.Extra = args[2], args[3]
	if ev.Domain != args[0] {
		return Event{}, inputErr("domain name %q in argv does not match <name>%s</name> in the XML on stdin", args[0], ev.Domain)
	}
	return ev, nil
}

// FromDomainXML builds an Event from a domain XML document.
func FromDomainXML(src Source, op Op, data []byte) (Event, error) {
	if err := checkXML(data, "domain"); err != nil {
		return Event{}, err
	}
	var dom domainDoc
	if err := decodeOne(data, &dom, "domain"); err != nil {
		return Event{}, err
	}
	if dom.Name == "" {
		return Event{}, inputErr("domain XML has no <name>")
	}
	if err := checkText("domain name", dom.Name); err != nil {
		return Event{}, err
	}
	ev := Event{Source: src, Op: op, Domain: dom.Name, UUID: dom.UUID}
	if err := checkText("domain uuid", dom.UUID); err != nil {
		return Event{}, err
	}
	if dom.Devices == nil {
		return ev, nil
	}
	if n := len(dom.Devices.Interfaces); n > MaxNICs {
		return Event{}, inputErr("domain %q has %d interfaces, more than the %d virtbridge handles in one VM; "+
			"split them over several VMs", dom.Name, n, MaxNICs)
	}
	networks := sourceNetworks(data)
	owner := map[string]int{}
	for i, ifc := range dom.Devices.Interfaces {
		nic, err := nicOf(ifc)
		if err == nil && nic.Network == "" && i < len(networks) {
			nic.Network = networks[i]
		}
		if err == nil && nic.Network != "" {
			err = checkNetworkName(nic.Network)
		}
		if err != nil {
			return Event{}, fmt.Errorf("interface %d of domain %q: %w", i+1, dom.Name, err)
		}
		if first, dup := owner[nic.MAC]; dup {
			return Event{}, inputErr("interfaces %d and %d of domain %q have the same MAC %s; "+
				"each NIC needs a MAC of its own (remove the <mac> of one and libvirt picks a new one)", first, i+1, dom.Name, nic.MAC)
		}
		owner[nic.MAC] = i + 1
		ev.NICs = append(ev.NICs, nic)
	}
	return ev, nil
}

// decodeOne decodes the one root element of data into v and refuses
// anything after it but whitespace, comments and processing instructions:
// a second root element could hold NICs one reader sees and another not.
func decodeOne(data []byte, v any, root string) error {
	d := xml.NewDecoder(bytes.NewReader(data))
	if err := d.Decode(v); err != nil {
		return inputErr("malformed %s XML: %v", root, err)
	}
	for {
		tok, err := d.Token()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return inputErr("malformed %s XML after </%s>: %v", root, root, err)
		}
		if err := outsideRoot(tok, root, "after </"+root+">"); err != nil {
			return err
		}
	}
}

// outsideRoot refuses a token found before or after the root element that
// is not whitespace, a comment or a processing instruction.
func outsideRoot(tok xml.Token, root, where string) error {
	switch t := tok.(type) {
	case xml.StartElement:
		return inputErr("%s XML has a second root element <%s> %s; libvirt sends one <%s> document", root, t.Name.Local, where, root)
	case xml.CharData:
		if len(bytes.TrimSpace(t)) > 0 {
			return inputErr("%s XML has text %q %s; libvirt sends one <%s> document", root, truncate(string(bytes.TrimSpace(t)), 40), where, root)
		}
	case xml.Directive:
		return inputErr("%s XML has a <!%s> declaration %s; libvirt never sends one", root, truncate(string(t), 40), where)
	}
	return nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// checkXML refuses what must not reach the XML parser: empty or oversized
// input, invalid UTF-8, and DTDs (entity expansion has no place in a domain
// definition, which libvirt never sends with one).
func checkXML(data []byte, roots ...string) error {
	switch {
	case len(bytes.TrimSpace(data)) == 0:
		return inputErr("no domain XML on stdin (libvirtd sends the domain definition there)")
	case len(data) > MaxXML:
		return inputErr("domain XML on stdin is larger than %d MiB", MaxXML>>20)
	case !utf8.Valid(data):
		return inputErr("domain XML on stdin is not valid UTF-8")
	}
	for rest := data; ; {
		i := bytes.Index(rest, []byte("<!"))
		if i < 0 {
			break
		}
		rest = rest[i+2:]
		for _, decl := range []string{"DOCTYPE", "ENTITY"} {
			if len(rest) >= len(decl) && strings.EqualFold(string(rest[:len(decl)]), decl) {
				return inputErr("domain XML contains a <!%s declaration; libvirt never sends one, and entities are not expanded", decl)
			}
		}
	}
	// Find the root element and refuse a wrong one before the full parse,
	// so the message names it.
	d := xml.NewDecoder(bytes.NewReader(data))
	for {
		tok, err := d.Token()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return inputErr("domain XML on stdin is truncated: no root element")
			}
			return inputErr("malformed domain XML: %v", err)
		}
		se, ok := tok.(xml.StartElement)
		if !ok {
			if err := outsideRoot(tok, roots[0], "before <"+roots[0]+">"); err != nil {
				return err
			}
			continue
		}
		if !slices.Contains(roots, se.Name.Local) {
			return inputErr("root element of the XML on stdin is <%s>, want <%s>", se.Name.Local, roots[0])
		}
		return nil
	}
}

// checkText refuses control characters in names that end up in logs and
// journal fields.
func checkText(what, s string) error {
	for _, r := range s {
		if unicode.IsControl(r) {
			return inputErr("%s %q contains a control character", what, s)
		}
	}
	return nil
}

func nicOf(ifc libvirtxml.DomainInterface) (NIC, error) {
	var n NIC
	if ifc.MAC == nil || ifc.MAC.Address == "" {
		// libvirt gives every NIC a MAC when it parses a definition, so
		// the XML it hands the hook or reports as live always has one
		// (testdata/hook); the MAC is what the store keys a port by.
		return n, inputErr("no <mac address='...'/>: libvirt fills one in for every NIC it defines; " +
			"pass the XML libvirt gives (virsh dumpxml), or add a unicast MAC")
	}
	n.MAC = strings.ToLower(ifc.MAC.Address)
	if _, err := names.UnicastMAC(n.MAC); err != nil {
		return n, &InputError{Msg: err.Error()}
	}
	if ifc.Model != nil {
		n.Model = ifc.Model.Type
	}
	if ifc.Alias != nil {
		n.Alias = ifc.Alias.Name
	}
	if ifc.Target != nil {
		n.Tap = ifc.Target.Dev
		if err := names.Ifname(n.Tap); err != nil {
			return n, inputErr("target dev: %v", err)
		}
	}
	n.Type = "unknown"
	if s := ifc.Source; s != nil {
		switch {
		case s.Bridge != nil:
			n.Type, n.Bridge = "bridge", s.Bridge.Bridge
		case s.Network != nil:
			n.Type, n.Network, n.Bridge = "network", s.Network.Network, s.Network.Bridge
		case s.Direct != nil:
			n.Type, n.Dev = "direct", s.Direct.Dev
		case s.User != nil:
			n.Type = "user"
		case s.Ethernet != nil:
			n.Type = "ethernet"
		case s.VHostUser != nil:
			n.Type = "vhostuser"
		case s.Hostdev != nil:
			n.Type = "hostdev"
		case s.Internal != nil:
			n.Type = "internal"
		case s.Server != nil:
			n.Type = "server"
		case s.Client != nil:
			n.Type = "client"
		case s.MCast != nil:
			n.Type = "mcast"
		case s.UDP != nil:
			n.Type = "udp"
		}
	}
	if n.Bridge != "" {
		if err := names.Ifname(n.Bridge); err != nil {
			return n, inputErr("source bridge: %v", err)
		}
	}
	return n, nil
}

// sourceNetworks returns the network= attribute of each interface's
// <source>. libvirt reports a NIC of a bridge-mode network in the live XML as
// type='bridge' with both network= and bridge=; libvirtxml keeps only the
// bridge for that type, so read the attribute alongside.
func sourceNetworks(data []byte) []string {
	var doc struct {
		Interfaces []struct {
			Source struct {
				Network string `xml:"network,attr"`
			} `xml:"source"`
		} `xml:"devices>interface"`
	}
	if xml.Unmarshal(data, &doc) != nil {
		return nil
	}
	out := make([]string, len(doc.Interfaces))
	for i, ifc := range doc.Interfaces {
		out[i] = ifc.Source.Network
	}
	return out
}
