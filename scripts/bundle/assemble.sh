#!/usr/bin/env bash
# The project layer of the bundle (seconds): copies the interpreter that build-python.sh made, adds the
# project and its dependencies, byte-compiles them with the bundle's own interpreter, writes the
# `bin/cni-logger` wrapper, builds the thick-mode shim into `libexec/cni-logger-shim`, writes MANIFEST.sha256
# and BUILD_ID, and packs DIST/cni-logger-<version>-linux-<arch>.tar.gz, whose path it prints as its last line.
# As root (the shim is built in the Debian 11 root, chrooted).
#
#   assemble.sh PYTHON_DIR SITE_DIR DIST [ARCH [RUN_PYTHON]]
#
# ARCH names the tarball (default: this machine's `uname -m`, x86_64). RUN_PYTHON, for an interpreter that
# cannot run here (the cross-compiled arm64 one), is a python3.11 of the same version that does: it
# byte-compiles the project layer (.pyc files do not depend on the architecture), and the check that the
# bundle's cni-logger runs is left to the arm64 system test (under qemu).
#
# SITE_DIR holds cni-logger, structlog, python-json-logger and prometheus-client as `pip install --target` left them (pure
# Python, so any pip for Python 3.11 can make it: the project's virtualenv in scripts/build-bundle.sh).
set -euo pipefail

PYTHON_DIR=$1
SITE_DIR=$2
DIST=$3
ARCH=${4:-$(uname -m)}
RUN_PYTHON=${5:-}

die() { printf '[assemble] ERROR: %s\n' "$*" >&2; exit 1; }
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

[ -x "$PYTHON_DIR/bin/python3.11" ] || die "no interpreter in $PYTHON_DIR"
case $ARCH in
  x86_64 | amd64) SHIM_ARCH=amd64 ;;
  aarch64 | arm64) SHIM_ARCH=arm64 ;;
  *) die "no shim for the architecture '$ARCH' (amd64 or arm64)" ;;
esac
set -- "$SITE_DIR"/cni_logger-*.dist-info
[ -d "$1" ] || die "cni-logger is not installed in $SITE_DIR"
version=$(sed -n 's/^Version: //p' "$1/METADATA")
[ -n "$version" ] || die "no version in $1/METADATA"

name="cni-logger-$version"
W=$(mktemp -d /tmp/cni-logger-assemble.XXXXXX)
trap 'rm -rf -- "$W"' EXIT
folder="$W/$name"
cp -a "$PYTHON_DIR" "$folder"
rm -f "$folder/.complete" "$folder/.build-seconds"
site="$folder/lib/python3.11/site-packages"
cp -a "$SITE_DIR"/. "$site/"
rm -rf "$site/bin"                    # pip's console script names the build host's interpreter
find "$site" -depth -type d -name __pycache__ -exec rm -rf {} +
# Byte-compiled by the bundle's own interpreter. Unchecked-hash .pyc files are used without comparing
# the source's mtime, so they stay valid whatever unpacking does to timestamps (the folder is immutable).
# -s/-p: the file names inside them do not name this temporary directory, so BUILD_ID is reproducible
# (at import, CPython replaces them with the real path anyway).
"${RUN_PYTHON:-$folder/bin/python3.11}" -I -m compileall -q -j0 --invalidation-mode unchecked-hash -s "$W" -p / "$site" >/dev/null
cat > "$folder/bin/cni-logger" <<'WRAPPER'
#!/bin/sh
# The operator CLI of this bundle, from wherever the folder is: the interpreter beside this file, isolated
# from PYTHON* variables. (The CNI plugin itself is the launcher `cni-logger launcher PATH` writes: it
# names this folder's interpreter by absolute path and needs no shell.)
here=$(dirname "$(readlink -f "$0")")
exec "$here/python3.11" -I -c 'from cni_logger.cli import main; main()' "$@"
WRAPPER
chmod 0755 "$folder/bin/cni-logger"
# The thick-mode shim (shim/cni-logger-shim.c) for this bundle's architecture, where `cni-logger install --agent`
# takes it from (cni_logger.install.shim.shim_path: <sys.prefix>/libexec). Built in the Debian 11 root the
# interpreter was built in, with the same toolchain (the cross one for arm64): glibc 2.31 linked in statically,
# so it needs nothing from the node, not even its libc.
mkdir -p "$folder/libexec"
bash "$HERE/../build-shim.sh" --arch "$SHIM_ARCH" --out "$folder/libexec/cni-logger-shim" >&2 \
  || die "the shim's build failed (above)"
if [ -z "$RUN_PYTHON" ]; then
  "$folder/bin/cni-logger" --version >/dev/null || die "the bundle's cni-logger does not run"
  # Unconfigured, it answers with a CNI error naming the installer (and so it runs here).
  shim_says=$("$folder/libexec/cni-logger-shim" </dev/null) && die "the unconfigured shim exited 0"
  case $shim_says in *'"cni-logger shim not configured"'*) ;; *) die "the bundle's shim does not run: $shim_says" ;; esac
else
  "$RUN_PYTHON" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' \
    || die "$RUN_PYTHON is not a python3.11: its .pyc files would not be the bundle's"
fi
# The manifest, written last: every file of the folder (but itself and BUILD_ID) with its sha256,
# in sha256sum's format, sorted by name. The DaemonSet's entry point (deploy/kubernetes/cni-logger-node.sh)
# checks an unpacked folder against it with `sha256sum -c --strict` and its list of names, and unpacks anew on
# any difference: a file missing, added, truncated or zero-filled (power loss after an unsynced unpack).
# A symlink to a file is listed with the hash of what it points to (a dangling one then fails the check).
bad=$(cd "$folder" && find . -name '*[[:space:]\\]*' -print -quit)
[ -z "$bad" ] || die "a file name with a blank or backslash ($bad) would not round-trip through the manifest"
(cd "$folder" && find . -xtype f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum) > "$W/manifest"
mv "$W/manifest" "$folder/MANIFEST.sha256"
# BUILD_ID names this build's content, as the start of the manifest's own hash: the DaemonSet installs it as
# /opt/cni-logger/<BUILD_ID>/, and a folder of that name must hold exactly what the manifest lists.
build_id=$(sha256sum < "$folder/MANIFEST.sha256" | cut -c1-16)
echo "$build_id" > "$folder/BUILD_ID"

mkdir -p "$DIST"
out="$DIST/$name-linux-$ARCH.tar.gz"
tar -C "$W" --sort=name --owner=0 --group=0 --numeric-owner -cf - "$name" | gzip -6n > "$out.tmp"
mv "$out.tmp" "$out"
printf '[assemble] %s MB unpacked (%s files), %s MB tar.gz, build id %s\n' \
  "$(du -sm --apparent-size "$folder" | cut -f1)" "$(find "$folder" -type f | wc -l)" \
  "$(du -m --apparent-size "$out" | cut -f1)" "$build_id" >&2
echo "$out"
