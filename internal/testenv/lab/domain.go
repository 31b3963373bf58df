package lab

import (
	"fmt"
	"net"

	"libvirt.org/go/libvirtxml"
)

// NIC describes one network interface of a VM built by DomainXML.
type NIC struct {
	// Type is the libvirt interface type: "bridge" (the default),
	// "network", "direct" or "user".
	Type string
	// Source is the bridge, network or host device the NIC attaches to;
	// unused for "user".
	Source string
	// MAC is the guest MAC address; empty lets libvirt choose one.
	MAC string
	// Target is an explicit tap name (<target dev=.../>); empty lets
	// libvirt name it vnetN.
	Target string
	// Mode is the macvtap mode for "direct" NICs; empty means "bridge".
	Mode string
	// Model is the emulated NIC model; empty means "e1000", which the
	// iPXE ROM of Debian 12 drives reliably under TCG.
	Model string
}

// VM describes a disk-less, network-booting domain built by DomainXML.
type VM struct {
	// Name is the domain name.
	Name string
	// UUID is the domain UUID; empty lets libvirt choose one.
	UUID string
	// MAC is the MAC address of the first NIC made from Bridges; each
	// further bridge NIC gets the next address (last octet plus one).
	MAC string
	// Bridges adds one type='bridge' NIC per bridge name, in order.
	Bridges []string
	// NICs are added after the NICs made from Bridges.
	NICs []NIC
	// MemoryMiB is the guest memory; 0 means 64.
	MemoryMiB uint
}

// DomainXML renders vm as a TCG (type='qemu') domain with ACPI, no disk,
// e1000 NICs and network boot: the cheapest VM that proves a network path
// works, since its iPXE ROM asks for a DHCP lease 20–40 s after start.
func DomainXML(vm VM) (string, error) {
	if vm.Name == "" {
		return "", fmt.Errorf("rendering domain xml: empty name")
	}
	nics := make([]NIC, 0, len(vm.Bridges)+len(vm.NICs))
	for i, br := range vm.Bridges {
		mac := ""
		if vm.MAC != "" {
			m, err := nthMAC(vm.MAC, i)
			if err != nil {
				return "", fmt.Errorf("rendering domain %q: %w", vm.Name, err)
			}
			mac = m
		}
		nics = append(nics, NIC{Type: "bridge", Source: br, MAC: mac})
	}
	nics = append(nics, vm.NICs...)

	mem := vm.MemoryMiB
	if mem == 0 {
		mem = 64
	}
	dom := &libvirtxml.Domain{
		Type:     "qemu",
		Name:     vm.Name,
		UUID:     vm.UUID,
		Memory:   &libvirtxml.DomainMemory{Value: mem, Unit: "MiB"},
		VCPU:     &libvirtxml.DomainVCPU{Value: 1},
		Features: &libvirtxml.DomainFeatureList{ACPI: &libvirtxml.DomainFeature{}},
		OS: &libvirtxml.DomainOS{
			Type:        &libvirtxml.DomainOSType{Arch: "x86_64", Machine: "pc", Type: "hvm"},
			BootDevices: []libvirtxml.DomainBootDevice{{Dev: "network"}},
		},
		Devices: &libvirtxml.DomainDeviceList{},
	}
	for _, n := range nics {
		iface, err := domainInterface(n)
		if err != nil {
			return "", fmt.Errorf("rendering domain %q: %w", vm.Name, err)
		}
		dom.Devices.Interfaces = append(dom.Devices.Interfaces, iface)
	}
	out, err := dom.Marshal()
	if err != nil {
		return "", fmt.Errorf("rendering domain %q: %w", vm.Name, err)
	}
	return out + "\n", nil
}

func domainInterface(n NIC) (libvirtxml.DomainInterface, error) {
	var iface libvirtxml.DomainInterface
	src := &libvirtxml.DomainInterfaceSource{}
	switch n.Type {
	case "", "bridge":
		src.Bridge = &libvirtxml.DomainInterfaceSourceBridge{Bridge: n.Source}
	case "network":
		src.Network = &libvirtxml.DomainInterfaceSourceNetwork{Network: n.Source}
	case "direct":
		mode := n.Mode
		if mode == "" {
			mode = "bridge"
		}
		src.Direct = &libvirtxml.DomainInterfaceSourceDirect{Dev: n.Source, Mode: mode}
	case "user":
		src.User = &libvirtxml.DomainInterfaceSourceUser{}
	default:
		return iface, fmt.Errorf("unsupported interface type %q", n.Type)
	}
	if n.Type != "user" && n.Source == "" {
		return iface, fmt.Errorf("interface of type %q needs a source", n.Type)
	}
	iface.Source = src
	if n.MAC != "" {
		if _, err := net.ParseMAC(n.MAC); err != nil {
			return iface, fmt.Errorf("parsing mac %q: %w", n.MAC, err)
		}
		iface.MAC = &libvirtxml.DomainInterfaceMAC{Address: n.MAC}
	}
	if n.Target != "" {
		iface.Target = &libvirtxml.DomainInterfaceTarget{Dev: n.Target}
	}
	model := n.Model
	if model == "" {
		model = "e1000"
	}
	iface.Model = &libvirtxml.DomainInterfaceModel{Type: model}
	return iface, nil
}

// nthMAC returns base with i added to its last octet.
func nthMAC(base string, i int) (string, error) {
	hw, err := net.ParseMAC(base)
	if err != nil {
		return "", fmt.Errorf("parsing mac %q: %w", base, err)
	}
	if len(hw) != 6 {
		return "", fmt.Errorf("parsing mac %q: not an ethernet address", base)
	}
	last := int(hw[5]) + i
	if last > 0xff {
		return "", fmt.Errorf("mac %q plus %d overflows the last octet", base, i)
	}
	hw[5] = byte(last)
	return hw.String(), nil
}

// NetworkXML renders a libvirt network that hands its ports to an existing
// host bridge (<forward mode='bridge'/>); libvirt creates no link for it.
func NetworkXML(name, bridge string) (string, error) {
	if name == "" || bridge == "" {
		return "", fmt.Errorf("rendering network xml: name and bridge are required")
	}
	n := &libvirtxml.Network{
		Name:    name,
		Forward: &libvirtxml.NetworkForward{Mode: "bridge"},
		Bridge:  &libvirtxml.NetworkBridge{Name: bridge},
	}
	out, err := n.Marshal()
	if err != nil {
		return "", fmt.Errorf("rendering network %q: %w", name, err)
	}
	return out + "\n", nil
}
