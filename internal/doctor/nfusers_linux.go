package doctor

import (
	"fmt"
	"os"
	"path/filepath"
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
	procs, err := procsHere(proc, kubeProcesses)
	var out []string
	for _, pr := range procs {
		out = append(out, fmt.Sprintf("%s (pid %d)", pr.name, pr.pid))
	}
	return out, err
}
