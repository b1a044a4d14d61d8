#!/usr/bin/env bash
# Builds the relocatable bundle dist/cni-logger-<version>-linux-<arch>.tar.gz, as root, and prints its
# path as the last line. It unpacks to one folder cni-logger-<version>/ holding a CPython built here (not
# this machine's), the project and its dependencies installed and byte-compiled, and nothing that needs
# more from the node than glibc >= 2.31 and /proc (docs/bundle.md).
#
#   build-bundle.sh [--arch amd64|arm64]     (default: this machine's; <arch> in the name: x86_64 or arm64)
#
# Two layers:
#   1. the interpreter (slow, cached): CPython from Debian's source package python3.11 (bookworm),
#      built by scripts/bundle/build-python.sh inside a Debian 11 (bullseye, glibc 2.31) root made with
#      debootstrap, so it runs on every glibc >= 2.31. Cached as $CNI_LOGGER_CACHE/cpython-<key>, the key
#      being a hash of its inputs (source tarball, build script, profile task, optimisation, architecture).
#      --arch arm64 on an x86_64 machine: cross-compiled in the same root with Debian 11's own cross
#      toolchain (gcc-aarch64-linux-gnu, libc6-dev-arm64-cross: glibc 2.31) by scripts/bundle/build-python-cross.sh,
#      the x86_64 interpreter (built first, cached) serving as the build Python. -O3 only, no PGO/LTO (the
#      profile would have to run on arm64): ~6-7 min cold on 2 busy cores (405 s with the cross
#      toolchain's installation into the root, 332 s without). Cached apart from the x86_64 one (the
#      architecture is in its key and name), so neither invalidates the other.
#   2. the project (seconds, every run): cni-logger + structlog + python-json-logger + prometheus-client
#      (install --watch's metrics only; the plugin never imports it) installed with the
#      virtualenv's pip (--target), then scripts/bundle/assemble.sh. The image (scripts/build-image.sh)
#      takes this bundle as it is: the interpreter is built one way only.
#
# Environment:
#   CNI_LOGGER_CACHE        cache directory outside the clone (default /var/cache/cni-logger)
#   CNI_LOGGER_PYTHON_OPT   pgo-lto (default; ~25 min cold on 2 cores) or o3 (~3 min; slower start-up)
#   CNI_LOGGER_VENV         the project's virtualenv, whose pip installs the project layer (<repo>/.venv)
#   DEBIAN_MIRROR           override the Debian archive taken from this machine's apt configuration
#   DIST                    output directory (default <repo>/dist)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
. "$ROOT/scripts/lib/build-root.sh"      # BUILD_SUITE, build_root_path, build_root_make
CACHE=${CNI_LOGGER_CACHE:-/var/cache/cni-logger}
OPT=${CNI_LOGGER_PYTHON_OPT:-pgo-lto}
VENV=${CNI_LOGGER_VENV:-$ROOT/.venv}
DIST=${DIST:-$ROOT/dist}
PY_PKG=python3.11            # Debian's source package, from bookworm
PY_VERSION=3.11.2            # its upstream version
PY_SUITE=bookworm
BUNDLE_SCRIPTS=$ROOT/scripts/bundle

log() { printf '[build-bundle] %s\n' "$*" >&2; }
die() { printf '[build-bundle] ERROR: %s\n' "$*" >&2; exit 1; }

TARGET_ARCH=
while [ $# -gt 0 ]; do
  case $1 in
    --arch) [ $# -ge 2 ] || die "--arch needs a value (amd64 or arm64)"; TARGET_ARCH=$2; shift 2 ;;
    --arch=*) TARGET_ARCH=${1#--arch=}; shift ;;
    *) die "unknown argument '$1' (usage: build-bundle.sh [--arch amd64|arm64])" ;;
  esac
done
[ "$(id -u)" = 0 ] || die "build-bundle.sh must run as root (debootstrap, chroot)"
case $OPT in o3 | pgo-lto) ;; *) die "CNI_LOGGER_PYTHON_OPT must be o3 or pgo-lto, not '$OPT'" ;; esac
[ -x "$VENV/bin/python" ] || die "no virtualenv at $VENV (run scripts/setup-system.sh)"
DEB_ARCH=$(dpkg --print-architecture)                 # the build machine's, and its root's
case ${TARGET_ARCH:=$DEB_ARCH} in
  x86_64) TARGET_ARCH=amd64 ;;
  aarch64) TARGET_ARCH=arm64 ;;
esac
case $TARGET_ARCH in
  "$DEB_ARCH") ;;
  arm64) [ "$DEB_ARCH" = amd64 ] || die "--arch arm64 is cross-compiled on amd64 only (this machine: $DEB_ARCH)" ;;
  *) die "--arch must be amd64 or arm64, not '$TARGET_ARCH'" ;;
esac
mkdir -p "$CACHE"
started=$SECONDS
WORKDIRS=()
trap 'for d in "${WORKDIRS[@]}"; do rm -rf -- "$d"; done' EXIT

# Concurrent runs (several test sessions) share the cache: each step holds its own lock, so a second run
# waits for the first and then reuses what it made.
locked() { local lock=$1; shift; ( flock 9; "$@" ) 9>"$lock"; }

# --- 1a. CPython's source, from Debian's source package ------------------------------------------------------
fetch_source() {
  ls "$CACHE/src/${PY_PKG}_${PY_VERSION}".orig.tar.* >/dev/null 2>&1 \
    || bash "$BUNDLE_SCRIPTS/fetch-python-source.sh" "$CACHE/src" "$PY_PKG" "$PY_VERSION" "$PY_SUITE" >/dev/null
}
locked "$CACHE/.lock-src" fetch_source
src_tarball=$(ls "$CACHE/src/${PY_PKG}_${PY_VERSION}".orig.tar.* | head -1)

# --- 1b. A Debian 11 root to build in --------------------------------------------------------------------------
# (scripts/lib/build-root.sh: shared with scripts/build-shim.sh, which builds the bundle's shim in it too)
rootfs=$(build_root_path "$CACHE" "$DEB_ARCH")
make_rootfs() { build_root_make "$CACHE" "$DEB_ARCH" || die "no $BUILD_SUITE root to build in (above)"; }

# --- 1c. The interpreter, built in that root, cached by a hash of its inputs -----------------------------------
key=$( { sha256sum "$src_tarball" "$BUNDLE_SCRIPTS/build-python.sh" "$BUNDLE_SCRIPTS/profile-task.py" | cut -d' ' -f1
         echo "$OPT $BUILD_SUITE $DEB_ARCH"; } | sha256sum | cut -c1-16)
python_dir="$CACHE/cpython-$PY_VERSION-$OPT-$key"
build_python() {
  if [ -f "$python_dir/.complete" ]; then
    log "reusing $python_dir (built in $(cat "$python_dir/.build-seconds") s)"
    return 0
  fi
  locked "$CACHE/.lock-rootfs" make_rootfs
  local build="/build-$key" t0=$SECONDS
  rm -rf "${rootfs:?}$build" "$python_dir.tmp"
  mkdir -p "$rootfs$build"
  cp "$BUNDLE_SCRIPTS/build-python.sh" "$BUNDLE_SCRIPTS/profile-task.py" "$rootfs$build/"
  cp "$src_tarball" "$rootfs$build/src.tar"
  cp /etc/resolv.conf "$rootfs/etc/resolv.conf" 2>/dev/null || true   # for build-python.sh's apt-get
  log "building CPython $PY_VERSION ($OPT) in the $BUILD_SUITE root: o3 ~3 min, pgo-lto ~25 min on 2 cores"
  # A private mount namespace: /proc and /dev exist for the build only and vanish with it, however it ends.
  unshare --mount --propagation private /bin/sh -ec '
      mount -t proc proc "$1/proc"; mount --bind /dev "$1/dev"
      exec chroot "$1" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 \
        /bin/bash "$2/build-python.sh" "$2/src.tar" "$2/out" "$3"' sh "$rootfs" "$build" "$OPT" \
    || { rm -rf "${rootfs:?}$build"; die "the CPython build failed (output above)"; }
  mv "$rootfs$build/out" "$python_dir.tmp"
  rm -rf "${rootfs:?}$build"
  echo $((SECONDS - t0)) > "$python_dir.tmp/.build-seconds"
  touch "$python_dir.tmp/.complete"
  rm -rf "$python_dir" && mv "$python_dir.tmp" "$python_dir"
  log "built $python_dir in $((SECONDS - t0)) s"
}
locked "$python_dir.lock" build_python

# --- 1d. arm64: cross-compiled in the same root, the interpreter above as the build Python ------------------
tarball_arch=$(uname -m)
site_python=
if [ "$TARGET_ARCH" != "$DEB_ARCH" ]; then
  build_python_dir=$python_dir
  cross_key=$( { sha256sum "$src_tarball" "$BUNDLE_SCRIPTS/build-python.sh" "$BUNDLE_SCRIPTS/build-python-cross.sh" \
                   | cut -d' ' -f1
                 echo "o3 $BUILD_SUITE $DEB_ARCH->$TARGET_ARCH"; } | sha256sum | cut -c1-16)
  python_dir="$CACHE/cpython-$PY_VERSION-o3-$TARGET_ARCH-$cross_key"
  build_python_cross() {
    if [ -f "$python_dir/.complete" ]; then
      log "reusing $python_dir (built in $(cat "$python_dir/.build-seconds") s)"
      return 0
    fi
    locked "$CACHE/.lock-rootfs" make_rootfs
    local build="/build-$cross_key" t0=$SECONDS
    rm -rf "${rootfs:?}$build" "$python_dir.tmp"
    mkdir -p "$rootfs$build"
    cp "$BUNDLE_SCRIPTS/build-python.sh" "$BUNDLE_SCRIPTS/build-python-cross.sh" "$rootfs$build/"
    cp "$src_tarball" "$rootfs$build/src.tar"
    cp -a "$build_python_dir" "$rootfs$build/build-python"
    cp /etc/resolv.conf "$rootfs/etc/resolv.conf" 2>/dev/null || true
    log "cross-compiling CPython $PY_VERSION for $TARGET_ARCH (o3, no PGO) in the $BUILD_SUITE root: ~7 min on 2 cores"
    unshare --mount --propagation private /bin/sh -ec '
        mount -t proc proc "$1/proc"; mount --bind /dev "$1/dev"
        exec chroot "$1" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 \
          /bin/bash "$2/build-python-cross.sh" "$2/src.tar" "$2/out" "$2/build-python/bin/python3.11"' \
        sh "$rootfs" "$build" \
      || { rm -rf "${rootfs:?}$build"; die "the CPython cross build failed (output above)"; }
    mv "$rootfs$build/out" "$python_dir.tmp"
    rm -rf "${rootfs:?}$build"
    echo $((SECONDS - t0)) > "$python_dir.tmp/.build-seconds"
    touch "$python_dir.tmp/.complete"
    rm -rf "$python_dir" && mv "$python_dir.tmp" "$python_dir"
    log "built $python_dir in $((SECONDS - t0)) s"
  }
  locked "$python_dir.lock" build_python_cross
  tarball_arch=$TARGET_ARCH
  site_python="$build_python_dir/bin/python3.11"   # byte-compiles the project layer: same version, runs here
fi

# --- 2. The project layer, every run ---------------------------------------------------------------------------
W=$(mktemp -d /tmp/cni-logger-bundle.XXXXXX); WORKDIRS+=("$W")
# The dependencies at the versions the project is developed and tested with (those of its virtualenv).
read -r -a pins < <("$VENV/bin/python" -c 'from importlib.metadata import version as v
print(" ".join(f"{p}=={v(p)}" for p in ("structlog", "python-json-logger", "prometheus-client")))')
log "pip install --target: $ROOT ${pins[*]}"
"$VENV/bin/python" -m pip install -q --disable-pip-version-check --no-warn-script-location --no-compile \
  --target "$W/site" "$ROOT" "${pins[@]}" >"$W/pip.log" 2>&1 || { cat "$W/pip.log" >&2; die "pip install failed"; }
out=$(bash "$BUNDLE_SCRIPTS/assemble.sh" "$python_dir" "$W/site" "$DIST" "$tarball_arch" "$site_python" | tail -1)
log "done in $((SECONDS - started)) s"
echo "$out"
