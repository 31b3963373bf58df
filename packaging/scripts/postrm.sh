#!/bin/sh
# virtbridge post-removal script, the same for the deb (postrm, called as
# "remove", "purge", "upgrade NEW-VERSION", ...) and the rpm (%postun,
# called with 0 on erase and 1 on upgrade). An rpm erase is a purge: rpm
# has no other moment to clean up.
set -e

case "$1" in
remove) purge= ;;
purge | 0) purge=1 ;;
*) exit 0 ;;
esac

# emptydir DIR deletes what DIR holds, then DIR itself unless something is
# mounted on it.
emptydir() {
	if [ -d "$1" ]; then
		find "$1" -mindepth 1 -delete
		rmdir "$1" 2>/dev/null || true
	fi
}

# Volatile: the host lock and the firewall state.
emptydir /run/virtbridge
if [ -n "$purge" ]; then
	# The port mapping and the journal kept where journald is missing.
	emptydir /var/lib/virtbridge
	emptydir /var/log/virtbridge
	rmdir /etc/virtbridge 2>/dev/null || true
else
	# Kept until purge, as the configuration is; gone if empty.
	rmdir /var/lib/virtbridge /var/log/virtbridge 2>/dev/null || true
fi

if command -v journalctl >/dev/null 2>&1; then
	journalctl --update-catalog || true
fi
if [ -d /run/systemd/system ]; then
	systemctl daemon-reload || true
fi
exit 0
