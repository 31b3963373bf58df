package events

import (
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"strings"
	"unicode"

	"libvirt.org/go/libvirtxml"

	"github.com/virtbridge/virtbridge/internal/paths"
)

// NetworkDirs are where libvirt keeps network definitions: the live status
// of running networks first, then the persistent definitions.
var NetworkDirs = []string{"/run/libvirt/network", "/etc/libvirt/qemu/networks"}

// MaxNetworkName bounds a libvirt network name: it becomes the file name
// NAME.xml, and a file name has at most 255 bytes (NAME_MAX).
const MaxNetworkName = 255 - len(".xml")

// checkNetworkName refuses a <source network=...> name that is no file
// name in one directory. libvirt itself refuses '/' in network names, and
// the name of a network that exists is a file name under NetworkDirs, so
// such a name cannot come from libvirt: refusing it says so, where
// ignoring it would start the VM without its bridge.
func checkNetworkName(name string) error {
	bad := ""
	switch {
	case name == "" || name == "." || name == "..":
		bad = "is empty or a directory name"
	case len(name) > MaxNetworkName:
		bad = fmt.Sprintf("is %d bytes long, more than the %d a file name allows", len(name), MaxNetworkName)
	case strings.ContainsRune(name, '/'):
		bad = "contains '/'"
	case strings.IndexFunc(name, unicode.IsControl) >= 0:
		bad = "contains a control character"
	default:
		return nil
	}
	return inputErr("source network %q %s; libvirt network names are plain file names: "+
		"point the NIC at a network `virsh net-list --all` shows", truncate(name, 64), bad)
}

// ResolveNetworks fills in the bridge and forward mode of NICs that name a
// libvirt network. At prepare the domain XML carries only
// <source network='lan'/>; the bridge appears there only once the VM runs,
// yet it must exist before qemu starts. The hook may not ask libvirtd (it
// would deadlock), so it reads the network's definition from dirs, as
// libvirt wrote it. A network that cannot be read leaves the NIC as it was;
// the policy then says why it skips it. So does a name that is no plain
// file name (FromDomainXML refuses those already) and a definition that is
// a symlink or no regular file: nothing outside dirs is ever read.
func ResolveNetworks(ev *Event, dirs []string) {
	cache := map[string]*libvirtxml.Network{}
	for i := range ev.NICs {
		n := &ev.NICs[i]
		if n.Network == "" {
			continue
		}
		net, ok := cache[n.Network]
		if !ok {
			net, _ = readNetwork(n.Network, dirs)
			cache[n.Network] = net
		}
		if net == nil {
			continue
		}
		n.NetworkMode = "isolated"
		if net.Forward != nil {
			n.NetworkMode = net.Forward.Mode
			if n.NetworkMode == "" {
				n.NetworkMode = "nat" // libvirt's default forward mode
			}
		}
		if n.Bridge == "" && net.Bridge != nil {
			n.Bridge = net.Bridge.Name
		}
	}
}

// readNetwork reads the definition of network name from the first of dirs
// that has it.
func readNetwork(name string, dirs []string) (*libvirtxml.Network, error) {
	if err := checkNetworkName(name); err != nil {
		return nil, err
	}
	for _, dir := range dirs {
		data, err := paths.ReadRegular(filepath.Join(dir, name+".xml"), MaxXML, false)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("reading libvirt network %q: %w", name, err)
		}
		if checkXML(data, "network", "networkstatus") != nil {
			return nil, fmt.Errorf("libvirt network %q: unexpected XML in %s", name, dir)
		}
		// The live status file wraps the definition in <networkstatus>.
		var status struct {
			Network libvirtxml.Network `xml:"network"`
		}
		if decodeOne(data, &status, "networkstatus") == nil && status.Network.Name != "" {
			return &status.Network, nil
		}
		var net libvirtxml.Network
		if err := decodeOne(data, &net, "network"); err != nil {
			return nil, fmt.Errorf("libvirt network %q: %w", name, err)
		}
		return &net, nil
	}
	return nil, fmt.Errorf("libvirt network %q: no definition in %s", name, strings.Join(dirs, " or "))
}
