#!/bin/sh
# virtbridge pre-removal script, the same for the deb (prerm, called as
# "remove", "upgrade NEW-VERSION", ...) and the rpm (%preun, called with 0
# on erase and 1 on upgrade). Only a removal undoes anything.
set -e

case "$1" in
remove | 0) ;;
*) exit 0 ;;
esac

if [ -d /run/systemd/system ]; then
	systemctl stop virtbridged.service || true
fi
if command -v systemctl >/dev/null 2>&1; then
	# Removes the enablement links, with or without systemd running.
	systemctl --no-reload disable virtbridged.service >/dev/null 2>&1 || true
fi

# Put back the hook virtbridge replaced. A failure stops the removal: the
# host's hooks must not be left half-changed.
/usr/bin/virtbridge uninstall-hook

# The firewall chain and its jumps: nothing keeps them once virtbridge is
# gone. Bridges, uplinks, addresses and sysctls stay as they are.
if ! /usr/bin/virtbridge firewall-remove; then
	echo "virtbridge: could not remove all of its firewall rules (see above): look for VIRTBRIDGE-FWD in iptables -S and ip6tables -S" >&2
fi
exit 0
