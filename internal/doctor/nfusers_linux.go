package doctor

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// kubeProcesses are the programs of a Kubernetes node that rely on bridged
// frames passing IP filtering.
var kubeProcesses = []string{"kube-proxy", "kubelet"}

// HostNFUsers looks for Kubernetes on this host, read-only: /etc/kubernetes,
// a CNI configuration in /etc/cni/net.d, and kube-proxy or kubelet running
// in the caller's network namespace (the setting is per namespace).
type HostNFUsers struct {
	// Root is the file system root; "" means /.
	Root string
	// Proc is the proc file system; "" means /proc.
	Proc string
}

var _ NFUsers = HostNFUsers{}

// NFUsers returns what it found, one line each. It changes nothing.
func (h HostNFUsers) NFUsers() ([]string, error) {
	root, proc := h.Root, h.Proc
	if root == "" {
		root = "/"
	}
	if proc == "" {
		proc = "/proc"
	}
	var out []string
	if _, err := os.Stat(filepath.Join(root, "etc", "kubernetes")); err == nil {
		out = append(out, "Kubernetes (/etc/kubernetes exists): "+breaksKubernetes)
	}
	if ents, err := os.ReadDir(filepath.Join(root, "etc", "cni", "net.d")); err == nil && len(ents) > 0 {
		out = append(out, "a CNI network configuration (/etc/cni/net.d): "+breaksKubernetes)
	}
	procs, err := kubeProcs(proc)
	if len(procs) > 0 {
		out = append(out, strings.Join(procs, ", ")+" running: "+breaksKubernetes)
	}
	return out, err
}

// kubeProcs lists kube-proxy and kubelet processes in the caller's
// network namespace, as "NAME (pid N)".
func kubeProcs(proc string) ([]string, error) {
	self, err := os.Readlink(filepath.Join(proc, "self", "ns", "net"))
	if err != nil {
		return nil, fmt.Errorf("reading own network namespace: %w", err)
	}
	ents, err := os.ReadDir(proc)
	if err != nil {
		return nil, fmt.Errorf("listing processes: %w", err)
	}
	var out []string
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		dir := filepath.Join(proc, e.Name())
		comm, err := os.ReadFile(filepath.Join(dir, "comm"))
		name := strings.TrimSpace(string(comm))
		if err != nil || !slices.Contains(kubeProcesses, name) {
			continue
		}
		ns, err := os.Readlink(filepath.Join(dir, "ns", "net"))
		if errors.Is(err, fs.ErrNotExist) || err == nil && ns != self {
			continue
		}
		out = append(out, fmt.Sprintf("%s (pid %d)", name, pid))
	}
	return out, nil
}
