# shellcheck shell=bash
# Sourced by scripts/build-bundle.sh and scripts/build-shim.sh: the Debian 11 (bullseye, glibc 2.31) root that
# the bundle's CPython and the thick-mode shim are built in, so that both have the oldest glibc the bundle
# supports as their floor. One root per build machine architecture, $CACHE/rootfs-bullseye-<arch>, shared by
# every build (any checkout): made once with debootstrap, under the lock $CACHE/.lock-rootfs.
#
# Callers set ROOT (the repository) before sourcing.

. "$ROOT/scripts/lib/apt-mirror.sh"

BUILD_SUITE=bullseye         # glibc 2.31: the oldest glibc the bundle supports

# build_root_path CACHE ARCH: where the root for build machine architecture ARCH (dpkg's name) lives.
build_root_path() { printf '%s/rootfs-%s-%s\n' "$1" "$BUILD_SUITE" "$2"; }

# build_root_make CACHE ARCH: debootstrap the root unless it is complete (its .complete stamp); prints why
# on stderr and fails when it cannot. Callers hold $CACHE/.lock-rootfs around it.
build_root_make() {
  local cache=$1 arch=$2 rootfs mirror
  rootfs=$(build_root_path "$cache" "$arch")
  [ ! -f "$rootfs/.complete" ] || return 0
  command -v debootstrap >/dev/null || { echo "debootstrap is missing (scripts/setup-system.sh installs it)" >&2; return 1; }
  mirror=$(debian_mirror) || { echo "no Debian archive in this machine's apt configuration (set DEBIAN_MIRROR)" >&2; return 1; }
  printf '[build-root] debootstrap --variant=minbase %s %s %s\n' "$BUILD_SUITE" "$rootfs" "$mirror" >&2
  rm -rf "$rootfs"
  debootstrap --variant=minbase --arch="$arch" "$BUILD_SUITE" "$rootfs" "$mirror" >"$cache/debootstrap.log" 2>&1 \
    || { tail -30 "$cache/debootstrap.log" >&2; echo "debootstrap failed (log: $cache/debootstrap.log)" >&2; return 1; }
  touch "$rootfs/.complete"
}
