#!/usr/bin/env bash
# Builds the virtbridge packages from packaging/nfpm.yaml: OUT/virtbridge_*.deb
# and OUT/virtbridge-*.rpm (OUT defaults to dist), with man pages made from
# the binaries' --help output in OUT/man. `make package` runs it after
# `make build`; it needs bin/virtbridge-hook, bin/virtbridge and
# bin/virtbridged.
#
# nfpm is run from the Go module proxy at a fixed version (no install, no
# change to go.mod). Environment: OUT, BIN (where the binaries are; default
# bin), VERSION (default: from git), ARCH (default: go env GOARCH), GO
# (default: go).
set -euo pipefail
cd "$(dirname "$0")/.."

NFPM=github.com/goreleaser/nfpm/v2/cmd/nfpm@v2.45.2
GO=${GO:-go}
OUT=${OUT:-dist}
BIN=${BIN:-bin}
export LC_ALL=C

for b in virtbridge-hook virtbridge virtbridged; do
	[ -x "$BIN/$b" ] || { echo "package: $BIN/$b is missing: run make build first" >&2; exit 1; }
done
BIN=$(cd "$BIN" && pwd)

# version: the last v* tag without its v, else 0.0.<commit count>+g<hash>.
version() {
	local tag
	if tag=$(git describe --tags --match 'v[0-9]*' 2>/dev/null); then
		tag=${tag#v}       # 1.2.3, or 1.2.3-4-gabc after the tag
		tag=${tag/-/+}     # deb and rpm both take + and . in a version
		echo "${tag//-/.}"
	elif git rev-parse HEAD >/dev/null 2>&1; then
		echo "0.0.$(git rev-list --count HEAD)+g$(git rev-parse --short HEAD)"
	else
		echo "0.0.0"
	fi
}
export VERSION=${VERSION:-$(version)}
export ARCH=${ARCH:-$($GO env GOARCH)}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
# nfpm takes contents from paths relative to where it runs: a staging
# directory with the tree's bin/ and packaging/ and the generated man/.
STAGE=$(mktemp -d)
trap 'rm -rf "$STAGE"' EXIT
ln -s "$BIN" "$STAGE/bin"
ln -s "$PWD/packaging" "$STAGE/packaging"
MAN_DIR=$STAGE/man
packaging/man.sh "$BIN" "$MAN_DIR" "$VERSION"
rm -rf "$OUT/man" && cp -r "$MAN_DIR" "$OUT/man"

for fmt in deb rpm; do
	(cd "$STAGE" && "$GO" run "$NFPM" package --config packaging/nfpm.yaml --packager "$fmt" --target "$OUT/")
done
