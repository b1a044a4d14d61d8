#!/usr/bin/env bash
# Downloads the upstream tarball of Debian's source package of CPython into DEST and prints its path:
#
#   fetch-python-source.sh DEST [PACKAGE VERSION SUITE]     (default: python3.11 3.11.2 bookworm)
#
# With a private deb-src list (nothing under /etc/apt changes) on the Debian archive this machine's apt
# already uses (scripts/lib/apt-mirror.sh); apt checks the files against the archive's signed Release.
# Used by scripts/build-bundle.sh on the build host and by deploy/Dockerfile's debian:bullseye stage.
set -euo pipefail

DEST=$1
PKG=${2:-python3.11}
VERSION=${3:-3.11.2}      # upstream version; any Debian revision of it will do
SUITE=${4:-bookworm}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$HERE/../lib/apt-mirror.sh"

die() { printf '[fetch-python-source] ERROR: %s\n' "$*" >&2; exit 1; }

mirror=$(debian_mirror) || die "no Debian archive in this machine's apt configuration (set DEBIAN_MIRROR)"
printf '[fetch-python-source] %s %s (%s) from %s\n' "$PKG" "$VERSION" "$SUITE" "$mirror" >&2
W=$(mktemp -d /tmp/fetch-python-source.XXXXXX)
trap 'rm -rf -- "$W"' EXIT
mkdir -p "$W/lists/partial" "$W/etc" "$W/src"
printf 'Types: deb-src\nURIs: %s\nSuites: %s\nComponents: main\nSigned-By: %s\n' \
  "$mirror" "$SUITE" /usr/share/keyrings/debian-archive-keyring.gpg > "$W/etc/src.sources"
# APT::Sandbox::User=root: the private lists live in a 0700 temp dir the _apt user cannot enter.
APTOPTS=(-o Dir::Etc::SourceList=/dev/null -o "Dir::Etc::SourceParts=$W/etc" -o "Dir::State::Lists=$W/lists"
         -o APT::Sandbox::User=root)
apt-get "${APTOPTS[@]}" update -qq
(cd "$W/src" && apt-get "${APTOPTS[@]}" source --download-only -qq "$PKG" >/dev/null)
set -- "$W/src/${PKG}_${VERSION}".orig.tar.*
[ -f "$1" ] || die "expected ${PKG}_${VERSION}.orig.tar.*; apt fetched: $(ls "$W/src")"
mkdir -p "$DEST"
out="$DEST/$(basename "$1")"
mv "$1" "$out.tmp" && mv "$out.tmp" "$out"
echo "$out"
