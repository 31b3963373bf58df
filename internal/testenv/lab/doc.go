// Package lab runs a real libvirtd, real bridges and real disk-less VMs on
// one machine without touching the machine's own network.
//
// A Lab owns a private network namespace (the "hypervisor", vbhv-<tag>), a
// private mount namespace inside it in which /etc/libvirt, /run/libvirt,
// /var/lib/libvirt, /var/log/libvirt, /var/cache/libvirt, /etc/virtbridge,
// /run/virtbridge, /var/lib/virtbridge and /var/log/virtbridge are replaced by directories of the
// lab, and optionally a second network namespace (the "upstream",
// vbup-<tag>) joined to the first by a veth pair and serving DHCP with
// dnsmasq. libvirtd, virtlogd and every qemu they start live in those
// namespaces, so a hook installed in the lab can only see and change the
// lab's links.
//
// Everything a Lab starts is stopped by pid, and Close removes the
// namespaces and the lab's temporary directory. The facts this package
// relies on are written down in shared/LAB.md.
package lab
