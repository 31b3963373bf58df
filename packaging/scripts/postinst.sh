#!/bin/sh
# virtbridge post-install script, the same for the deb (postinst, called
# as "configure OLD-VERSION", OLD-VERSION empty on a first install) and the
# rpm (%post, called with 1 on install and 2 on upgrade).
set -e

case "$1" in
configure) [ -z "$2" ] && first=1 || first= ;;
1) first=1 ;;
2) first= ;;
*) exit 0 ;;
esac

# The hook: a link /etc/libvirt/hooks/qemu -> /usr/bin/virtbridge-hook. A
# hook already there is moved to /etc/libvirt/hooks/qemu.d and put back at
# removal. Idempotent, and it says once that libvirt must be reloaded.
if ! /usr/bin/virtbridge install-hook; then
	echo "virtbridge: the libvirt hook was NOT installed (see above); fix that and run: virtbridge install-hook" >&2
fi

if command -v journalctl >/dev/null 2>&1; then
	journalctl --update-catalog || true
fi

# Only where systemd runs the host: never enable or start anything
# elsewhere (a chroot, a container, a host with another init).
if [ -d /run/systemd/system ]; then
	systemd-tmpfiles --create virtbridge.conf || true
	systemctl daemon-reload || true
	if [ -n "$first" ]; then
		# Enabled or not as the distribution's presets say (Debian:
		# enabled; Fedora, RHEL: disabled); never started here.
		systemctl preset virtbridged.service || true
	else
		systemctl try-restart virtbridged.service || true
	fi
	if ! systemctl is-active --quiet virtbridged.service; then
		echo "virtbridge: start the event daemon with: systemctl enable --now virtbridged"
	fi
fi
exit 0
