#!/usr/bin/env bash
# Installs the Debian packages the build and the test suite need, if they are
# missing. Idempotent: a machine that has them all is left alone (no apt run).
# As a normal user it only reports what is missing: the privileged tests skip
# without them, the unit tests do not need them.
set -euo pipefail

packages=(
  # cgo build of the event daemon (libvirt.org/go/libvirt)
  gcc pkg-config libvirt-dev
  # the lab: a real libvirtd running real (disk-less, PXE-booting) VMs
  libvirt-daemon libvirt-daemon-driver-qemu libvirt-clients
  qemu-system-x86 ipxe-qemu seabios dnsmasq-base
  # namespaces, links, firewall, traffic proofs
  iproute2 iputils-ping iptables nftables tcpdump
  # journald and journalctl for the mapping journal; systemd-analyze
  systemd
  # package tests: rpm queries, dpkg-deb; man pages for systemd-analyze verify
  rpm man-db
  # the durability tests of atomic writes trace fsync and rename
  strace
)

# Seen on this kind of machine: a package's maintainer script left /dev/null
# a regular file, which breaks go vet and every `>/dev/null`. Put it right.
fix_dev_null() {
  if [ "$(id -u)" -eq 0 ] && [ ! -c /dev/null ]; then
    echo "deps: /dev/null is not a character device; recreating it"
    rm -f /dev/null && mknod -m 666 /dev/null c 1 3
  fi
}
fix_dev_null
trap fix_dev_null EXIT

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "deps: all ${#packages[@]} Debian packages present"
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "deps: not root, not installing: ${missing[*]} (privileged tests will skip)"
  exit 0
fi
echo "deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq -o DPkg::Lock::Timeout=600
apt-get install -y -qq --no-install-recommends -o DPkg::Lock::Timeout=600 "${missing[@]}" >/dev/null
echo "deps: done"
