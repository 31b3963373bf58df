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
  # promtool checks virtbridged's metrics (the package's server is never
  # started: see policy-rc.d below)
  prometheus
  # `virtbridge who` across hosts: systemd-journal-upload ships two test
  # hosts' journals to systemd-journal-remote (its units are never started)
  systemd-journal-remote
  # uplink owners, run only inside test namespaces (internal/testenv/hostns):
  # NetworkManager 1.42, systemd-networkd (in systemd) and a private D-Bus bus
  network-manager dbus
  # a bare DHCP client (ISC dhclient) holding the uplink's lease, and the
  # opt-in where virtbridged takes that lease over (inside namespaces only)
  isc-dhcp-client
  # firewalld's tests: firewalld on a private D-Bus inside a test namespace
  # (never started on the machine itself: see policy-rc.d below)
  firewalld dbus-daemon
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
# Packages such as network-manager and dbus start their daemon from the
# maintainer scripts unless policy-rc.d forbids it. Never start a network
# manager on the machine itself: make policy-rc.d answer 101 (service start
# refused) before installing, and leave it so for later upgrades. A
# policy-rc.d that answers something else is the machine's own: stop here.
ensure_policy_rc_d() {
  local f=/usr/sbin/policy-rc.d
  if [ ! -e "$f" ]; then
    printf '#!/bin/sh\n# virtbridge scripts/deps.sh: never start services from package scripts\nexit 101\n' >"$f"
    chmod 755 "$f"
    echo "deps: created $f (exit 101: package scripts start no services)"
    return
  fi
  local rc=0
  "$f" network-manager start >/dev/null 2>&1 || rc=$?
  if [ "$rc" -ne 101 ]; then
    echo "deps: $f answers $rc, not 101; make it answer 101 (it would let apt start NetworkManager on this machine), then rerun" >&2
    exit 1
  fi
}

echo "deps: installing ${missing[*]}"
ensure_policy_rc_d
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq -o DPkg::Lock::Timeout=600
apt-get install -y -qq --no-install-recommends -o DPkg::Lock::Timeout=600 "${missing[@]}" >/dev/null
echo "deps: done"
