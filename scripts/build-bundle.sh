#!/usr/bin/env bash
# Builds the relocatable bundle dist/cni-logger-<version>-linux-<arch>.tar.gz, as root, and prints its
# path as the last line. It unpacks to one folder cni-logger-<version>/ holding a CPython built here (not
# this machine's), the project and its dependencies installed and byte-compiled, and nothing that needs
# more from the node than glibc >= 2.31 and /proc (README.md, "The bundle").
#
# Two layers:
#   1. the interpreter (slow, cached): CPython from Debian's source package python3.11 (bookworm),
#      built by scripts/bundle/build-python.sh inside a Debian 11 (bullseye, glibc 2.31) root made with
#      debootstrap, so it runs on every glibc >= 2.31. Cached in $CNI_LOGGER_CACHE/cpython-<key>, the key
#      being a hash of its inputs (source tarball, build script, profile task, optimisation, architecture).
#      deploy/Dockerfile runs the same build-python.sh in a debian:bullseye stage.
#   2. the project (seconds, every run): cni-logger + structlog + python-json-logger installed with pip
#      into the interpreter's site-packages, byte-compiled by the bundle's own interpreter, the
#      `bin/cni-logger` wrapper, a BUILD_ID, then the tarball.
#
# Environment:
#   CNI_LOGGER_CACHE        cache directory outside the clone (default /var/cache/cni-logger)
#   CNI_LOGGER_PYTHON_OPT   pgo-lto (default; ~20 min cold on 2 cores) or o3 (~3 min, ~10 % slower start-up)
#   CNI_LOGGER_VENV         the project's virtualenv, whose pip installs the project layer (<repo>/.venv)
#   DEBIAN_MIRROR           override the Debian archive taken from this machine's apt configuration
#   DIST                    output directory (default <repo>/dist)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
. "$ROOT/scripts/lib/apt-mirror.sh"
CACHE=${CNI_LOGGER_CACHE:-/var/cache/cni-logger}
OPT=${CNI_LOGGER_PYTHON_OPT:-pgo-lto}
VENV=${CNI_LOGGER_VENV:-$ROOT/.venv}
DIST=${DIST:-$ROOT/dist}
PY_PKG=python3.11            # Debian's source package, from bookworm
PY_VERSION=3.11.2            # its upstream version (bookworm's); any Debian revision of it will do
PY_SUITE=bookworm
BUILD_SUITE=bullseye         # glibc 2.31: the oldest glibc the bundle supports
INNER=$ROOT/scripts/bundle/build-python.sh
PROFILE_TASK=$ROOT/scripts/bundle/profile-task.py

log() { printf '[build-bundle] %s\n' "$*" >&2; }
die() { printf '[build-bundle] ERROR: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "build-bundle.sh must run as root (debootstrap, chroot)"
case $OPT in o3 | pgo-lto) ;; *) die "CNI_LOGGER_PYTHON_OPT must be o3 or pgo-lto, not '$OPT'" ;; esac
[ -x "$VENV/bin/python" ] || die "no virtualenv at $VENV (run scripts/setup-system.sh)"
ARCH=$(uname -m)
DEB_ARCH=$(dpkg --print-architecture)
VERSION=$("$VENV/bin/python" -c 'import tomllib,sys; print(tomllib.load(open(sys.argv[1],"rb"))["project"]["version"])' \
  "$ROOT/pyproject.toml")
mkdir -p "$CACHE"
started=$SECONDS

MOUNTS=()
WORKDIRS=()
cleanup() {
  local i d
  for ((i = ${#MOUNTS[@]} - 1; i >= 0; i--)); do umount -l "${MOUNTS[i]}" 2>/dev/null || true; done
  for d in "${WORKDIRS[@]}"; do rm -rf -- "$d"; done
}
trap cleanup EXIT

# Serialise builds sharing the cache (concurrent test runs): the second waits and then reuses.
exec 9>"$CACHE/.lock"
flock 9

# --- 1a. CPython's source, from Debian's source package (private deb-src list; /etc/apt untouched) ------
src_tarball=$(ls "$CACHE/src/${PY_PKG}_${PY_VERSION}".orig.tar.* 2>/dev/null | head -1 || true)
if [ -z "$src_tarball" ]; then
  mirror=$(debian_mirror) || die "no Debian archive in this machine's apt configuration (set DEBIAN_MIRROR)"
  log "fetching Debian's source package $PY_PKG ($PY_SUITE) from $mirror"
  W=$(mktemp -d /tmp/cni-logger-pysrc.XXXXXX); WORKDIRS+=("$W")
  mkdir -p "$W/lists/partial" "$W/etc" "$W/src"
  printf 'Types: deb-src\nURIs: %s\nSuites: %s\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
    "$mirror" "$PY_SUITE" > "$W/etc/src.sources"
  APTOPTS=(-o Dir::Etc::SourceList=/dev/null -o "Dir::Etc::SourceParts=$W/etc" -o "Dir::State::Lists=$W/lists"
           -o APT::Sandbox::User=root)
  apt-get "${APTOPTS[@]}" update -qq
  (cd "$W/src" && apt-get "${APTOPTS[@]}" source --download-only -qq "$PY_PKG" >/dev/null)
  orig=$(ls "$W/src/${PY_PKG}_${PY_VERSION}".orig.tar.* 2>/dev/null | head -1 || true)
  [ -n "$orig" ] || die "expected ${PY_PKG}_${PY_VERSION}.orig.tar.*; apt fetched: $(ls "$W/src")"
  mkdir -p "$CACHE/src"
  src_tarball="$CACHE/src/$(basename "$orig")"
  mv "$orig" "$src_tarball.tmp" && mv "$src_tarball.tmp" "$src_tarball"
fi

# --- 1b. The interpreter, built in a bullseye root, cached by a hash of its inputs ------------------------
key=$( { sha256sum "$src_tarball" "$INNER" "$PROFILE_TASK" | cut -d' ' -f1
         echo "$OPT $BUILD_SUITE $DEB_ARCH"; } | sha256sum | cut -c1-16)
python_dir="$CACHE/cpython-$PY_VERSION-$OPT-$key"
if [ -f "$python_dir/.complete" ]; then
  log "reusing $python_dir (built in $(cat "$python_dir/.build-seconds" 2>/dev/null || echo '?') s)"
else
  rootfs="$CACHE/rootfs-$BUILD_SUITE-$DEB_ARCH"
  if [ ! -f "$rootfs/.complete" ]; then
    command -v debootstrap >/dev/null || die "debootstrap is missing (scripts/setup-system.sh installs it)"
    mirror=$(debian_mirror) || die "no Debian archive in this machine's apt configuration (set DEBIAN_MIRROR)"
    log "debootstrap --variant=minbase $BUILD_SUITE $rootfs $mirror"
    rm -rf "$rootfs"
    debootstrap --variant=minbase --arch="$DEB_ARCH" "$BUILD_SUITE" "$rootfs" "$mirror" >"$CACHE/debootstrap.log" 2>&1 \
      || { tail -30 "$CACHE/debootstrap.log" >&2; die "debootstrap failed (log: $CACHE/debootstrap.log)"; }
    touch "$rootfs/.complete"
  fi
  cp /etc/resolv.conf "$rootfs/etc/resolv.conf" 2>/dev/null || true   # the inner script's apt-get
  mount -t proc proc "$rootfs/proc" && MOUNTS+=("$rootfs/proc")
  mount --bind /dev "$rootfs/dev" && MOUNTS+=("$rootfs/dev")
  rm -rf "$rootfs/build" && mkdir -p "$rootfs/build"
  cp "$INNER" "$PROFILE_TASK" "$rootfs/build/"
  cp "$src_tarball" "$rootfs/build/src.tar"
  log "building CPython $PY_VERSION ($OPT) in the $BUILD_SUITE root; o3 takes minutes, pgo-lto ~20 min on 2 cores"
  t0=$SECONDS
  chroot "$rootfs" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 \
    /bin/bash /build/build-python.sh /build/src.tar /build/out "$OPT"
  seconds=$((SECONDS - t0))
  rm -rf "$python_dir.tmp"
  mv "$rootfs/build/out" "$python_dir.tmp"
  echo "$seconds" > "$python_dir.tmp/.build-seconds"
  touch "$python_dir.tmp/.complete"
  rm -rf "$python_dir" && mv "$python_dir.tmp" "$python_dir"
  rm -rf "$rootfs/build"
  for m in "${MOUNTS[@]}"; do umount "$m"; done
  MOUNTS=()
  log "built $python_dir in $seconds s"
fi

# --- 2. The project layer, every run -----------------------------------------------------------------------
name="cni-logger-$VERSION"
W=$(mktemp -d /tmp/cni-logger-bundle.XXXXXX); WORKDIRS+=("$W")
folder="$W/$name"
cp -a "$python_dir" "$folder"
rm -f "$folder/.complete" "$folder/.build-seconds"
site="$folder/lib/python3.11/site-packages"
# The dependencies at the versions the project is developed and tested with (those of its virtualenv).
pins=$("$VENV/bin/python" -c 'from importlib.metadata import version as v
print(f"structlog=={v(\"structlog\")} python-json-logger=={v(\"python-json-logger\")}")')
log "pip install --target site-packages: $ROOT $pins"
# shellcheck disable=SC2086  # $pins is two words
"$VENV/bin/python" -m pip install -q --disable-pip-version-check --no-warn-script-location --no-compile \
  --target "$site" "$ROOT" $pins >"$W/pip.log" 2>&1 || { cat "$W/pip.log" >&2; die "pip install failed"; }
rm -rf "$site/bin"                    # pip's console script names the build host's interpreter
find "$site" -depth -type d -name __pycache__ -exec rm -rf {} +
# Byte-compiled by the bundle's own interpreter; unchecked-hash .pyc files are used without looking at the
# source's mtime, so they stay valid whatever an unpacking tool does to timestamps (the folder is immutable).
"$folder/bin/python3.11" -I -m compileall -q -j0 --invalidation-mode unchecked-hash "$site" >/dev/null
cat > "$folder/bin/cni-logger" <<'WRAPPER'
#!/bin/sh
# The operator CLI of this bundle, from wherever the folder is: the interpreter beside this file, isolated
# from PYTHON* variables. (The CNI plugin itself is the launcher `cni-logger launcher PATH` writes: it
# names this folder's interpreter by absolute path and needs no shell.)
here=$(dirname "$(readlink -f "$0")")
exec "$here/python3.11" -I -c 'from cni_logger.cli import main; main()' "$@"
WRAPPER
chmod 0755 "$folder/bin/cni-logger"
# BUILD_ID names this build's content (the DaemonSet installs it as /opt/cni-logger/<BUILD_ID>/).
build_id=$(cd "$folder" && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum | cut -c1-16)
echo "$build_id" > "$folder/BUILD_ID"
"$folder/bin/cni-logger" --version >/dev/null || die "the bundle's cni-logger does not run"

mkdir -p "$DIST"
out="$DIST/$name-linux-$ARCH.tar.gz"
tar -C "$W" --sort=name --owner=0 --group=0 --numeric-owner -cf - "$name" | gzip -6n > "$out.tmp"
mv "$out.tmp" "$out"
log "$(du -sm --apparent-size "$folder" | cut -f1) MB unpacked ($(find "$folder" -type f | wc -l) files), \
$(du -m --apparent-size "$out" | cut -f1) MB tar.gz, build id $build_id, $((SECONDS - started)) s"
echo "$out"
