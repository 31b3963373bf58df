#!/usr/bin/env bash
# man.sh BINDIR OUTDIR VERSION: writes OUTDIR/virtbridge.1.gz,
# virtbridged.8.gz and virtbridge-hook.8.gz, each the --help output of the
# binaries in BINDIR (for virtbridge, of every subcommand too) set as a man
# page. The packages (build.sh) and make install (install.sh) ship them.
set -euo pipefail
bindir=$1 out=$2 version=$3
export LC_ALL=C
mkdir -p "$out"
date=$(git -C "$(dirname "$0")" log -1 --format=%cs 2>/dev/null || date -u +%F)

# roff turns help text into man page lines: verbatim, with roff's escape
# and control characters made harmless.
roff() { sed -e 's/\\/\\e/g' -e "s/^\\([.']\\)/\\\\\\&\\1/"; }

# manpage NAME SECTION SUMMARY: a page from stdin (the help text).
manpage() {
	{
		printf '.TH %s %s "%s" "virtbridge %s" "virtbridge"\n' "${1^^}" "$2" "$date" "$version"
		printf '.SH NAME\n%s \\- %s\n' "$1" "$3"
		printf '.SH DESCRIPTION\nWhat\n.B %s --help\nprints:\n.PP\n.nf\n' "$1"
		roff
		printf '.fi\n.SH SEE ALSO\n'
		printf '.BR virtbridge (1),\n.BR virtbridged (8),\n.BR virtbridge-hook (8),\n/usr/share/doc/virtbridge/README.md\n'
	} | gzip -9n >"$out/$1.$2.gz"
}

# The CLI's page holds every subcommand's --help (printed on stderr).
cli_help() {
	"$bindir/virtbridge" --help
	"$bindir/virtbridge" --help | awk '/^commands:/ {on=1; next} on && NF == 0 {exit} on {print $1}' |
		while read -r cmd; do
			printf '\nvirtbridge %s\n' "$cmd"
			"$bindir/virtbridge" "$cmd" --help 2>&1 || true
		done
}
cli_help | manpage virtbridge 1 "operator CLI of virtbridge: plan, check, apply, status, who, hook install"
"$bindir/virtbridged" --help 2>&1 | manpage virtbridged 8 "virtbridge event daemon"
"$bindir/virtbridge-hook" --help 2>&1 | manpage virtbridge-hook 8 "virtbridge's libvirt qemu hook"
