package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"libvirt.org/go/libvirtxml"

	"github.com/virtbridge/virtbridge/internal/journal"
	"github.com/virtbridge/virtbridge/internal/testenv/lab"
)

// startLab starts a lab (internal/testenv/lab) whose hook and daemon write their
// journal records to a file of this run: a tmpfs over /run/systemd in the
// lab's mount namespace hides any journald of the machine (or of a test
// running beside), and dir is bound over /var/log/virtbridge.
func (b *bencher) startLab(ctx context.Context, opts lab.Options, journalDir string) (*lab.Lab, error) {
	if err := lab.Unavailable(opts.Upstream); err != nil {
		return nil, err
	}
	opts.Logf = func(format string, args ...any) {}
	l, err := lab.Start(ctx, opts)
	if err != nil {
		return nil, err
	}
	b.closers = append(b.closers, l.Close)
	if err := os.MkdirAll(journalDir, 0o755); err != nil {
		return nil, err
	}
	// A mount point for the bind; an empty directory on the machine.
	if err := os.MkdirAll(journal.DefaultFile[:strings.LastIndex(journal.DefaultFile, "/")], 0o755); err != nil {
		return nil, err
	}
	_, err = l.ExecHV(ctx, "sh", "-c", fmt.Sprintf("mount -t tmpfs -o mode=0755 tmpfs /run/systemd && mount --bind %s %s",
		journalDir, filepath.Dir(journal.DefaultFile)))
	return l, err
}

// hotplugXML renders a one-NIC VM whose NICs can be unplugged without a
// guest OS, as internal/eventd's tests do: on q35 with ACPI hotplug off a
// hot-plugged device sits in a powered-off PCIe root port and QEMU
// unplugs it at once (on "pc" the unplug waits for a guest that never
// answers).
func hotplugXML(name, mac, bridge string) (string, error) {
	x, err := lab.DomainXML(lab.VM{Name: name, MAC: mac, Bridges: []string{bridge}})
	if err != nil {
		return "", err
	}
	var dom libvirtxml.Domain
	if err := dom.Unmarshal(x); err != nil {
		return "", err
	}
	dom.OS.Type.Machine = "q35"
	zero := uint(0)
	dom.Devices.Controllers = []libvirtxml.DomainController{{Type: "pci", Index: &zero, Model: "pcie-root"}}
	for range 6 { // the NIC, the balloon and hot-plugged NICs, one at a time
		dom.Devices.Controllers = append(dom.Devices.Controllers, libvirtxml.DomainController{Type: "pci", Model: "pcie-root-port"})
	}
	dom.QEMUCommandline = &libvirtxml.DomainQEMUCommandline{Args: []libvirtxml.DomainQEMUCommandlineArg{
		{Value: "-global"}, {Value: "ICH9-LPC.acpi-pci-hotplug-with-bridge-support=off"},
	}}
	return dom.Marshal()
}

// journalWatch follows a JSON-lines journal file and reports when a record
// with a MESSAGE_ID and MAC first shows up.
type journalWatch struct {
	path   string
	offset int64
	seen   map[string]time.Time // id + " " + mac → when first read
	buf    []byte
}

func newJournalWatch(path string) *journalWatch {
	return &journalWatch{path: path, seen: map[string]time.Time{}}
}

// poll reads what was appended since the last poll.
func (w *journalWatch) poll() {
	f, err := os.Open(w.path)
	if err != nil {
		return
	}
	defer f.Close()
	now := time.Now()
	chunk := make([]byte, 64<<10)
	for {
		n, err := f.ReadAt(chunk, w.offset)
		w.buf = append(w.buf, chunk[:n]...)
		w.offset += int64(n)
		if err != nil || n == 0 {
			break
		}
	}
	for {
		i := strings.IndexByte(string(w.buf), '\n')
		if i < 0 {
			return
		}
		line := w.buf[:i]
		w.buf = w.buf[i+1:]
		fields, ok := journal.ParseFields(line)
		if !ok {
			continue
		}
		k := fields[journal.FieldMessageID] + " " + fields[journal.FieldMAC]
		if _, dup := w.seen[k]; !dup {
			w.seen[k] = now
		}
	}
}

// wait polls every millisecond until the record (id, mac) is there and
// returns when it was first seen.
func (w *journalWatch) wait(ctx context.Context, id, mac string, limit time.Duration) (time.Time, error) {
	deadline := time.Now().Add(limit)
	for {
		w.poll()
		if t, ok := w.seen[id+" "+mac]; ok {
			return t, nil
		}
		if time.Now().After(deadline) {
			return time.Time{}, fmt.Errorf("no journal record %s for %s in %s after %v", id, mac, w.path, limit)
		}
		select {
		case <-ctx.Done():
			return time.Time{}, ctx.Err()
		case <-time.After(time.Millisecond):
		}
	}
}
