#!/usr/bin/env bash
# install.sh install|uninstall: `make install` and `make uninstall` for
# hosts without packages. The same files as the packages, under PREFIX
# (default /usr/local), and the same steps as their scripts: the hook is
# put in place (a hook found there is kept in qemu.d) and taken back, the
# firewall chain is removed at uninstall, nothing is enabled or started.
#
# Environment: DESTDIR (staging root: files only, no hook, no firewall, no
# systemctl), PREFIX, SYSCONFDIR (default /etc). The configuration
# SYSCONFDIR/virtbridge/virtbridge.yaml is installed only when missing and
# kept by uninstall. BIN is where the binaries are (default bin, from
# `make build`).
set -euo pipefail
cd "$(dirname "$0")/.."
export LC_ALL=C

PREFIX=${PREFIX:-/usr/local}
SYSCONFDIR=${SYSCONFDIR:-/etc}
DESTDIR=${DESTDIR:-}
BIN=${BIN:-bin}
BINDIR=$PREFIX/bin
UNITDIR=$PREFIX/lib/systemd/system
TMPFILESDIR=$PREFIX/lib/tmpfiles.d
CATALOGDIR=$PREFIX/lib/systemd/catalog
MANDIR=$PREFIX/share/man
DOCDIR=$PREFIX/share/doc/virtbridge
CONF=$SYSCONFDIR/virtbridge/virtbridge.yaml

# files lists "SOURCE DESTINATION MODE" for everything but the config.
files() {
	cat <<LIST
$BIN/virtbridge-hook $BINDIR/virtbridge-hook 0755
$BIN/virtbridge $BINDIR/virtbridge 0755
$BIN/virtbridged $BINDIR/virtbridged 0755
unit $UNITDIR/virtbridged.service 0644
packaging/virtbridge.tmpfiles $TMPFILESDIR/virtbridge.conf 0644
packaging/virtbridge.catalog $CATALOGDIR/virtbridge.catalog 0644
man/virtbridge.1.gz $MANDIR/man1/virtbridge.1.gz 0644
man/virtbridged.8.gz $MANDIR/man8/virtbridged.8.gz 0644
man/virtbridge-hook.8.gz $MANDIR/man8/virtbridge-hook.8.gz 0644
packaging/README.md $DOCDIR/README.md 0644
LIST
}

# CREATED lists the directories install made, for uninstall to take back.
CREATED=$DOCDIR/created-dirs

# mkparents FILE creates FILE's missing parent directories, remembering
# each in the list created.
created=()
mkparents() {
	local d=${1%/*} missing=()
	while [ -n "$d" ] && [ ! -d "$d" ]; do
		missing=("$d" "${missing[@]}")
		d=${d%/*}
	done
	for d in "${missing[@]}"; do
		mkdir -m 0755 "$d"
		created+=("${d#"$DESTDIR"}")
	done
}

live() { [ -z "$DESTDIR" ]; }
systemd_runs() { live && [ -d /run/systemd/system ]; }

do_install() {
	for b in virtbridge-hook virtbridge virtbridged; do
		[ -x "$BIN/$b" ] || { echo "install: $BIN/$b is missing: run make build first" >&2; exit 1; }
	done
	stage=$(mktemp -d)
	trap 'rm -rf "$stage"' EXIT
	packaging/man.sh "$BIN" "$stage/man" "$(git describe --tags --always 2>/dev/null || echo local)"
	# The unit names the binaries where this install puts them.
	sed "s#/usr/bin/#$BINDIR/#g" packaging/virtbridged.service >"$stage/unit"
	while read -r src dst mode; do
		case $src in unit | man/*) src=$stage/$src ;; esac
		mkparents "$DESTDIR$dst"
		install -m "$mode" "$src" "$DESTDIR$dst"
		echo "installed $DESTDIR$dst"
	done < <(files)
	if [ -e "$DESTDIR$CONF" ]; then
		echo "kept $DESTDIR$CONF"
	else
		mkparents "$DESTDIR$CONF"
		install -m 0644 packaging/virtbridge.yaml "$DESTDIR$CONF"
		echo "installed $DESTDIR$CONF"
	fi
	# Appended: a second install keeps what the first one created.
	printf '%s\n' "${created[@]}" >>"$DESTDIR$CREATED"
	if ! live; then
		echo "DESTDIR set: run $BINDIR/virtbridge install-hook on the target host"
		return
	fi
	"$BINDIR/virtbridge" install-hook
	if command -v journalctl >/dev/null 2>&1; then journalctl --update-catalog || true; fi
	if systemd_runs; then
		systemctl daemon-reload || true
		echo "start the event daemon with: systemctl enable --now virtbridged"
	fi
}

do_uninstall() {
	if live; then
		if systemd_runs; then systemctl stop virtbridged.service || true; fi
		if command -v systemctl >/dev/null 2>&1; then
			systemctl --no-reload disable virtbridged.service >/dev/null 2>&1 || true
		fi
		if [ -x "$BINDIR/virtbridge" ]; then
			"$BINDIR/virtbridge" uninstall-hook
			"$BINDIR/virtbridge" firewall-remove ||
				echo "could not remove all of virtbridge's firewall rules (see above)" >&2
		fi
	fi
	local dirs=()
	if [ -f "$DESTDIR$CREATED" ]; then mapfile -t dirs <"$DESTDIR$CREATED"; fi
	while read -r _ dst _; do
		if [ -e "$DESTDIR$dst" ] || [ -L "$DESTDIR$dst" ]; then
			rm -f "$DESTDIR$dst"
			echo "removed $DESTDIR$dst"
		fi
	done < <(files)
	rm -f "$DESTDIR$CREATED"
	# The directories install created, children first, when empty (the
	# configuration's stays while it holds the configuration).
	local i
	for ((i = ${#dirs[@]} - 1; i >= 0; i--)); do
		[ -n "${dirs[i]}" ] && rmdir "$DESTDIR${dirs[i]}" 2>/dev/null || true
	done
	if live; then
		if [ -d /run/virtbridge ]; then find /run/virtbridge -mindepth 1 -delete; rmdir /run/virtbridge 2>/dev/null || true; fi
		rmdir /var/lib/virtbridge /var/log/virtbridge 2>/dev/null || true
		if command -v journalctl >/dev/null 2>&1; then journalctl --update-catalog || true; fi
		if systemd_runs; then systemctl daemon-reload || true; fi
	fi
	[ -e "$DESTDIR$CONF" ] && echo "kept $DESTDIR$CONF (delete it by hand if you no longer want it)"
	return 0
}

case "${1:-}" in
install) do_install ;;
uninstall) do_uninstall ;;
*) echo "usage: $0 install|uninstall" >&2; exit 2 ;;
esac
