#!/usr/bin/env bash
# Builds the thick-mode shim (shim/cni-logger-shim.c): a static, stripped executable that `cni-logger install
# --agent` copies into the CNI bin dir as `logger`, with its config area patched (cni_logger/install/shim.py).
#
#   build-shim.sh --out PATH                        with this machine's cc (a virtualenv's libexec; the tests)
#   build-shim.sh --arch amd64|arm64 --out PATH     in the Debian 11 (bullseye, glibc 2.31) root the bundle's
#                                                   CPython is built in (as root; the bundle's libexec)
#
# Static: no dynamic loader, no shared library look-ups at each pod's start, and nothing asked of the node
# (it runs whatever the node's libc). Built in the bullseye root all the same, with its gcc (amd64) or its
# cross toolchain gcc-aarch64-linux-gnu + libc6-dev-arm64-cross (arm64 on an amd64 machine), so the libc
# linked in is the one the bundle's interpreter was built against: glibc 2.31, as old as the bundle supports.
# The root (scripts/lib/build-root.sh) is made with debootstrap if missing; a missing compiler is installed
# into it with apt. The result is checked (ELF, the machine asked for, no program interpreter, the config
# marker exactly once) and moved to PATH atomically.
#
# Environment:
#   CC                  the compiler without --arch (default cc)
#   CNI_LOGGER_CACHE    where the build root lives (default /var/cache/cni-logger)
#   DEBIAN_MIRROR       override the Debian archive taken from this machine's apt configuration
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
. "$ROOT/scripts/lib/build-root.sh"
SRC=$ROOT/shim/cni-logger-shim.c
CACHE=${CNI_LOGGER_CACHE:-/var/cache/cni-logger}
CFLAGS=(-std=c11 -Wall -Wextra -O2 -static -s)
MARKER='CNI-LOGGER-SHIM-CONFIG/1'

log() { printf '[build-shim] %s\n' "$*" >&2; }
die() { printf '[build-shim] ERROR: %s\n' "$*" >&2; exit 1; }

ARCH='' OUT=''
while [ $# -gt 0 ]; do
  case $1 in
    --arch) [ $# -ge 2 ] || die "--arch needs a value (amd64 or arm64)"; ARCH=$2; shift 2 ;;
    --arch=*) ARCH=${1#--arch=}; shift ;;
    --out) [ $# -ge 2 ] || die "--out needs a path"; OUT=$2; shift 2 ;;
    --out=*) OUT=${1#--out=}; shift ;;
    *) die "unknown argument '$1' (usage: build-shim.sh [--arch amd64|arm64] --out PATH)" ;;
  esac
done
[ -n "$OUT" ] || die "usage: build-shim.sh [--arch amd64|arm64] --out PATH"
[ -f "$SRC" ] || die "no $SRC"
mkdir -p "$(dirname "$OUT")"
tmp="$(dirname "$OUT")/.$(basename "$OUT").build-shim-tmp.$$"
WORKDIRS=("$tmp")
trap 'for d in "${WORKDIRS[@]}"; do rm -rf -- "$d"; done' EXIT

# check FILE MACHINE: the readelf "Machine:" text FILE must have; fails saying why.
check() {
  local f=$1 machine=$2 header count
  header=$(readelf -h -l -W "$f" 2>&1) || die "$f is not an ELF file: $header"
  grep -q "^ *Machine: *$machine\$" <<<"$header" || die "$f is not built for $machine: $(grep Machine: <<<"$header")"
  ! grep -q 'Requesting program interpreter' <<<"$header" || die "$f is dynamically linked (no -static?)"
  count=$(grep -a -o -F "$MARKER" "$f" | wc -l)
  [ "$count" = 1 ] || die "$f holds the config marker $count times (the installer needs it exactly once)"
}

if [ -z "$ARCH" ]; then
  cc=${CC:-cc}
  command -v "$cc" >/dev/null || die "no C compiler '$cc' (apt-get install gcc libc6-dev)"
  "$cc" "${CFLAGS[@]}" -o "$tmp" "$SRC" || die "$cc failed (a static build needs libc's static library: libc6-dev)"
  case $(uname -m) in
    x86_64) check "$tmp" 'Advanced Micro Devices X86-64' ;;
    aarch64) check "$tmp" AArch64 ;;
    *) check "$tmp" '.*' ;;
  esac
  mv -f "$tmp" "$OUT"
  log "built $OUT with $cc ($(stat -c %s "$OUT") bytes)"
  exit 0
fi

# --- in the bullseye root ------------------------------------------------------------------------------------------
[ "$(id -u)" = 0 ] || die "--arch builds in a chroot: run as root"
DEB_ARCH=$(dpkg --print-architecture)
case $ARCH in
  "$DEB_ARCH") CROSS=gcc; PKGS=(gcc libc6-dev) ;;
  arm64) [ "$DEB_ARCH" = amd64 ] || die "--arch arm64 is cross-compiled on amd64 only (this machine: $DEB_ARCH)"
         CROSS=aarch64-linux-gnu-gcc; PKGS=(gcc-aarch64-linux-gnu libc6-dev-arm64-cross) ;;
  *) die "--arch must be amd64 or arm64, not '$ARCH'" ;;
esac
case $ARCH in amd64) MACHINE='Advanced Micro Devices X86-64' ;; arm64) MACHINE=AArch64 ;; esac
mkdir -p "$CACHE"
( flock 9; build_root_make "$CACHE" "$DEB_ARCH" ) 9>"$CACHE/.lock-rootfs" || die "no $BUILD_SUITE root to build in (above)"
rootfs=$(build_root_path "$CACHE" "$DEB_ARCH")
build=$(mktemp -d "$rootfs/build-shim.XXXXXX"); WORKDIRS+=("$build")
cp "$SRC" "$build/cni-logger-shim.c"
cp /etc/resolv.conf "$rootfs/etc/resolv.conf" 2>/dev/null || true   # for apt-get, when a compiler is missing
# In the root: install what is missing (the root is shared: wait for another build's apt), then compile.
cat > "$build/build.sh" <<'BUILD'
set -eu
dir=$1 cc=$2; shift 2
cflags=$1; shift
missing=
for p in "$@"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing="$missing $p"
done
if [ -n "$missing" ]; then
  echo "[build-shim] apt-get install$missing (in the build root)" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get -o DPkg::Lock::Timeout=600 update -qq
  apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends $missing >/dev/null
fi
# shellcheck disable=SC2086
"$cc" $cflags -o "$dir/cni-logger-shim" "$dir/cni-logger-shim.c"
echo "[build-shim] $("$cc" --version | head -1), $(ldd --version | head -1 | sed 's/.* //') in the root" >&2
BUILD
rel=/${build#"$rootfs"/}
# A private mount namespace, as for the CPython build: /proc and /dev exist for this build only.
unshare --mount --propagation private /bin/sh -ec '
    mount -t proc proc "$1/proc"; mount --bind /dev "$1/dev"
    root=$1; shift
    exec chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 /bin/sh "$@"' \
  sh "$rootfs" "$rel/build.sh" "$rel" "$CROSS" "${CFLAGS[*]}" "${PKGS[@]}" \
  || die "the shim's build in the $BUILD_SUITE root failed (output above)"
check "$build/cni-logger-shim" "$MACHINE"
mv -f "$build/cni-logger-shim" "$tmp" && mv -f "$tmp" "$OUT"
log "built $OUT for $ARCH in the $BUILD_SUITE root ($(stat -c %s "$OUT") bytes)"
