package events

import (
	"encoding/xml"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"libvirt.org/go/libvirtxml"
)

// NetworkDirs are where libvirt keeps network definitions: the live status
// of running networks first, then the persistent definitions.
var NetworkDirs = []string{"/run/libvirt/network", "/etc/libvirt/qemu/networks"}

// ResolveNetworks fills in the bridge and forward mode of NICs that name a
// libvirt network. At prepare the domain XML carries only
// <source network='lan'/>; the bridge appears there only once the VM runs,
// yet it must exist before qemu starts. The hook may not ask libvirtd (it
// would deadlock), so it reads the network's definition from dirs, as
// libvirt wrote it. A network that cannot be read leaves the NIC as it was;
// the policy then says why it skips it.
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
	if name == "" || name == "." || name == ".." || strings.ContainsAny(name, "/\x00") {
		return nil, fmt.Errorf("invalid libvirt network name %q", name)
	}
	for _, dir := range dirs {
		data, err := os.ReadFile(filepath.Join(dir, name+".xml"))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil || len(data) > MaxXML {
			return nil, fmt.Errorf("reading libvirt network %q: %v", name, err)
		}
		if checkXML(data, "network", "networkstatus") != nil {
			return nil, fmt.Errorf("libvirt network %q: unexpected XML in %s", name, dir)
		}
		// The live status file wraps the definition in <networkstatus>.
		var status struct {
			Network libvirtxml.Network `xml:"network"`
		}
		if xml.Unmarshal(data, &status) == nil && status.Network.Name != "" {
			return &status.Network, nil
		}
		var net libvirtxml.Network
		if err := net.Unmarshal(string(data)); err != nil {
			return nil, fmt.Errorf("libvirt network %q: %v", name, err)
		}
		return &net, nil
	}
	return nil, fmt.Errorf("libvirt network %q: no definition in %s", name, strings.Join(dirs, " or "))
}
