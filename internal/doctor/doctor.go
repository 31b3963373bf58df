// Package doctor inspects a hypervisor for what breaks bridged VMs — the
// troubleshooting page of the classic bridged-networking how-to, turned into
// checks — and says, for each problem, what is wrong, why it breaks bridged
// VMs and the exact fix, or that virtbridge fixes it itself (Fix, and the
// hook at the next VM start).
//
// The checks are pure functions over what Sources read: small interfaces
// owned here, with real implementations over netlink, /proc, sysfs,
// iptables and the libvirt API (the _linux.go files), and fixtures in the
// tests. Nothing here changes the host except Fix, which goes through the
// engine, under the host lock, like the hook.
package doctor

import (
	"slices"

	"github.com/virtbridge/virtbridge/internal/config"
	"github.com/virtbridge/virtbridge/internal/store"
)

// Status is the verdict of one finding.
type Status string

// Statuses, from best to worst.
const (
	OK   Status = "ok"
	Warn Status = "warn"
	Fail Status = "fail"
)

func (s Status) rank() int { return slices.Index([]Status{OK, Warn, Fail}, s) }

// Section groups findings in the output, in this order.
type Section string

// Sections.
const (
	SectionInstall    Section = "install"
	SectionConfig     Section = "config"
	SectionBridges    Section = "bridges"
	SectionForwarding Section = "forwarding"
	SectionVMs        Section = "vms"
	SectionTaps       Section = "taps"
)

// Sections lists the sections in output order.
var Sections = []Section{SectionInstall, SectionConfig, SectionBridges, SectionForwarding, SectionVMs, SectionTaps}

// Finding is the verdict of one check on one object.
type Finding struct {
	Section Section `json:"section"`
	// Check is a stable identifier of the check, e.g. "uplink-enslaved".
	Check  string `json:"check"`
	Status Status `json:"status"`
	// Object is what the finding is about: a path, a link, a table, a VM.
	Object string `json:"object"`
	// Message says what is (wrong), in one line.
	Message string `json:"message"`
	// Why says, in one line, why it breaks bridged VMs.
	Why string `json:"why,omitempty"`
	// Fix is the exact fix, in one line.
	Fix string `json:"fix,omitempty"`
	// Fixable: virtbridge fixes it itself, with `virtbridge doctor --fix`
	// and at the next start of a VM on the bridge. False while a step of
	// the operator's must come first (Fix then says which): --fix cannot
	// make a bridge whose uplink is missing, for one.
	Fixable bool `json:"fixable,omitempty"`
	// Path is, for a forward-path finding, every forward base chain the
	// bridge's bridged frames cross, in hook priority order.
	Path []Hop `json:"path,omitempty"`
}

// Report is the findings of one run, in section order.
type Report struct {
	Findings []Finding `json:"findings"`
	// blocked are the managed bridges --fix cannot make, with why.
	blocked map[string]blocker
}

func (r *Report) add(f Finding) { r.Findings = append(r.Findings, f) }

// Status is the worst status of the findings; OK when there are none.
func (r *Report) Status() Status {
	worst := OK
	for _, f := range r.Findings {
		if f.Status.rank() > worst.rank() {
			worst = f.Status
		}
	}
	return worst
}

// Count returns how many findings have status s.
func (r *Report) Count(s Status) int {
	n := 0
	for _, f := range r.Findings {
		if f.Status == s {
			n++
		}
	}
	return n
}

// ExitCode maps the report to the CLI's exit status: 0 all ok, 1 warnings,
// 2 failures.
func (r *Report) ExitCode() int { return r.Status().rank() }

// fixByVirtbridge is the fix of every problem virtbridge repairs itself.
const fixByVirtbridge = "run `virtbridge doctor --fix`, or start a VM on the bridge: the hook fixes it"

// Sources are what the checks read. A nil reader leaves out the checks
// that need it (tests check a section at a time); a reader that fails is
// reported by the checks that need it.
type Sources struct {
	// ConfigPath is the configuration file; Config is it loaded, or nil
	// with ConfigErr saying why.
	ConfigPath string
	Config     *config.Config
	ConfigErr  error
	// HooksDir is libvirt's hook directory (DefaultHooksDir); "" leaves
	// the installation unchecked.
	HooksDir string
	Daemons  Daemons
	Links    Links
	Managers Managers
	// Owners asks NetworkManager and systemd-networkd over D-Bus whether
	// they own an uplink (nil: not asked, as without a system bus).
	Owners Owners
	// Keeper tells whether a running virtbridged keeps the lease of a
	// bridge with manager: virtbridged, and how (its status); nil: not
	// asked.
	Keeper  func(bridge string) (detail string, ok bool)
	Sysctls Sysctls
	Tables  Tables
	Native  NativeChains
	// NFUsers finds what relies on bridged frames passing IP filtering.
	NFUsers  NFUsers
	Firewall Firewall
	Domains  Domains
	Store    Store
	// NetworkDirs are where libvirt network definitions are read to
	// resolve a NIC's <source network=...> (events.NetworkDirs).
	NetworkDirs []string
}

// Store reads the mapping store (tap → VM) without the lock.
type Store interface {
	Entries() ([]store.Entry, error)
}

// StoreFile reads the store file at its path.
type StoreFile string

var _ Store = StoreFile("")

// Entries returns the entries of the store; a missing file has none.
func (p StoreFile) Entries() ([]store.Entry, error) {
	s, err := store.Read(string(p))
	if err != nil {
		return nil, err
	}
	return s.All(), nil
}

// Run runs every check and returns the findings. It changes nothing.
func Run(s Sources) *Report {
	h := gather(s)
	r := &Report{blocked: blockers(s, h)}
	if s.HooksDir != "" {
		checkInstall(r, s.HooksDir, s.Daemons)
	}
	checkConfig(r, s, h)
	checkBridges(r, s, h)
	checkForwarding(r, s, h)
	checkVMs(r, s, h)
	checkTaps(r, s, h)
	settleAdvice(r, s, h)
	return r
}

// host is what several checks share, read once.
type host struct {
	noLinks  bool // no Links reader: link checks left out
	links    []Link
	linksErr error
	vms      []vm
	vmsErr   error // libvirt unreachable
}

func gather(s Sources) *host {
	h := &host{noLinks: s.Links == nil}
	if s.Links != nil {
		h.links, h.linksErr = s.Links.Links()
	}
	h.vms, h.vmsErr = readVMs(s)
	return h
}
