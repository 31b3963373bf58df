package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"path/filepath"
	"strings"

	"github.com/virtbridge/virtbridge/internal/config"
	"github.com/virtbridge/virtbridge/internal/links"
	"github.com/virtbridge/virtbridge/internal/owner"
	"github.com/virtbridge/virtbridge/internal/paths"
	"github.com/virtbridge/virtbridge/internal/store"
)

func init() {
	register("status", command{summary: "managed bridges, their uplinks and ports with the VM behind each (brctl show with names)", run: runStatus})
}

// statusPort is one port of a bridge as status shows it.
type statusPort struct {
	Tap  string `json:"tap"`
	Kind string `json:"kind"`
	MAC  string `json:"mac"`
	VM   string `json:"vm,omitempty"`
	UUID string `json:"uuid,omitempty"`
	// VMMAC is the guest's MAC (the tap's own MAC differs: fe:...).
	VMMAC string `json:"vm_mac,omitempty"`
	Alias string `json:"alias,omitempty"`
}

// statusBridge is one managed bridge as status shows it.
type statusBridge struct {
	links.BridgeInfo
	WantUplink        string `json:"configured_uplink,omitempty"`
	AddressesOnBridge bool   `json:"addresses_on_bridge"`
	// Owner is who owns the host's addresses of this bridge (on the
	// bridge once moved, else on the uplink): "kernel: static addresses",
	// "dhcp-client: dynamic address ... held by ...".
	Owner string `json:"owner,omitempty"`
	// Manager is the configuration's manager: when not auto.
	Manager string       `json:"manager,omitempty"`
	Ports   []statusPort `json:"ports"`
}

func runStatus(args []string, _ io.Reader, stdout, stderr io.Writer) int {
	fs := newFlags("status", "status [--config FILE] [--json]", stderr)
	cfgPath := fs.String("config", config.PathFromEnv(), "configuration file")
	asJSON := fs.Bool("json", false, "print JSON")
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	cfg, err := config.Load(*cfgPath)
	if err != nil {
		fmt.Fprintf(stderr, "virtbridge status: %v\n", err)
		return exitUsage
	}
	bridges, err := gatherStatus(cfg)
	if err != nil {
		fmt.Fprintf(stderr, "virtbridge status: %v\n", err)
		return exitUsage
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		enc.Encode(map[string]any{"bridges": bridges})
		return exitOK
	}
	printStatus(stdout, bridges)
	return exitOK
}

func gatherStatus(cfg *config.Config) ([]statusBridge, error) {
	m, err := links.New()
	if err != nil {
		return nil, err
	}
	defer m.Close()
	// The store is read without the lock: status only looks.
	s, err := store.Read(filepath.Join(paths.StateDir(), "ports.json"))
	if err != nil {
		return nil, err
	}
	out := []statusBridge{}
	for _, b := range cfg.Bridges {
		info, err := m.BridgeState(b.Name)
		if err != nil {
			return nil, err
		}
		sb := statusBridge{BridgeInfo: info, WantUplink: b.UplinkString(), Ports: []statusPort{}}
		sb.AddressesOnBridge = len(info.Addresses) > 0 && len(info.UplinkAddresses) == 0
		sb.Owner = statusOwner(b, info, sb.AddressesOnBridge)
		if b.Manager != config.ManagerAuto {
			sb.Manager = b.Manager.String()
		}
		if info.IsBridge {
			ports, err := m.BridgePorts(b.Name)
			if err != nil {
				return nil, err
			}
			for _, p := range ports {
				sp := statusPort{Tap: p.Name, Kind: p.Kind, MAC: p.MAC, Alias: p.Alias}
				if e, ok := s.ByTap(p.Name); ok {
					sp.VM, sp.UUID, sp.VMMAC = e.VM, e.UUID, e.MAC
				}
				sb.Ports = append(sb.Ports, sp)
			}
		}
		out = append(out, sb)
	}
	return out, nil
}

// statusOwner reads who owns the bridge's host addresses: the bridge's once
// they are on it, else the uplink's; "" when neither holds any.
func statusOwner(b config.Bridge, info links.BridgeInfo, onBridge bool) string {
	var o owner.Owner
	var err error
	if k, ok := keeperOwner(b.Name, b.Uplink); ok && b.Manager == config.ManagerVirtbridged {
		return ownerText(k)
	}
	switch {
	case onBridge:
		o, err = uplinkOwner(context.Background(), b.Name, "")
	case b.HasUplink() && (!info.Exists || len(info.UplinkAddresses) > 0 || info.Uplink == ""):
		mac := ""
		if b.UplinkMAC != nil {
			mac = b.UplinkMAC.String()
		}
		o, err = uplinkOwner(context.Background(), b.Uplink, mac)
	default:
		return ""
	}
	if err != nil {
		return "unknown: " + err.Error()
	}
	return ownerText(o)
}

func printStatus(w io.Writer, bridges []statusBridge) {
	if len(bridges) == 0 {
		fmt.Fprintln(w, "no managed bridges in the configuration")
	}
	for _, b := range bridges {
		switch {
		case !b.Exists:
			fmt.Fprintf(w, "%s: missing (created at the next start of a VM that uses it)\n", b.Name)
			if b.Owner != "" {
				fmt.Fprintf(w, "  owner:     %s\n", b.Owner)
			}
			continue
		case !b.IsBridge:
			fmt.Fprintf(w, "%s: NOT A BRIDGE (a %s link holds the name)\n", b.Name, b.Kind)
			continue
		}
		state := "down"
		if b.Up {
			state = "up"
		}
		fmt.Fprintf(w, "%s: %s, mtu %d, stp %s, forward delay %ds, mac %s\n", b.Name, state, b.MTU, onOff(b.STP), b.ForwardDelay, b.MAC)
		uplink := b.Uplink
		if uplink == "" {
			uplink = "none"
		}
		if b.WantUplink != "" && b.WantUplink != b.Uplink {
			uplink += fmt.Sprintf(" (configured: %s, not enslaved yet)", b.WantUplink)
		}
		fmt.Fprintf(w, "  uplink:    %s\n", uplink)
		addrs := strings.Join(b.Addresses, ", ")
		if addrs == "" {
			addrs = "none"
		}
		fmt.Fprintf(w, "  addresses: %s\n", addrs)
		if b.Owner != "" {
			fmt.Fprintf(w, "  owner:     %s\n", b.Owner)
		}
		if b.Manager != "" {
			fmt.Fprintf(w, "  manager:   %s (configured)\n", b.Manager)
		}
		if len(b.UplinkAddresses) > 0 {
			fmt.Fprintf(w, "  WARNING: still on the uplink: %s\n", strings.Join(b.UplinkAddresses, ", "))
		}
		for _, p := range b.Ports {
			switch {
			case p.VM != "":
				fmt.Fprintf(w, "  %-15s vm %q (uuid %s) mac %s\n", p.Tap, p.VM, p.UUID, p.VMMAC)
			case p.Tap == b.Uplink:
				fmt.Fprintf(w, "  %-15s uplink (%s)\n", p.Tap, p.MAC)
			default:
				fmt.Fprintf(w, "  %-15s %s, no VM recorded (%s)\n", p.Tap, p.Kind, p.MAC)
			}
		}
	}
}

func onOff(b bool) string {
	if b {
		return "on"
	}
	return "off"
}
