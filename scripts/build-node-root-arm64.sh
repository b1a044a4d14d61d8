#!/usr/bin/env bash
# Prepares an arm64 test node without Python on this x86_64 machine, as root, and prints its cache folder
# as the last line:
#
#   <folder>/rootfs.tar   a pristine arm64 Debian 11 (bullseye, glibc 2.31) root, `debootstrap --arch=arm64
#                         --variant=minbase` (no python3 in it), packed with numeric owners; tests unpack a
#                         private copy
#   <folder>/cni/         bridge and host-local (arm64) from bullseye's containernetworking-plugins package, to
#                         copy into such a copy (not installed there: the root stays minbase)
#
# debootstrap's first stage (--foreign) unpacks the packages here; its second stage (configuring them) runs
# arm64 programs, so it runs chrooted under qemu-user-static, through binfmt_misc (scripts/lib/qemu-binfmt.sh).
# tests/system/test_bundle_arm64.py runs the arm64 bundle in such a copy the same way.
#
# The folder is $CNI_LOGGER_CACHE/node-root-<suite>-arm64-<key>, the key a hash of the mirror, the suite
# and this script, so a re-run takes no time and a change of any of them makes a new one (the second
# stage under emulation: a few minutes).
#
# Environment:
#   CNI_LOGGER_CACHE  cache directory (default /var/cache/cni-logger)
#   DEBIAN_MIRROR     override the Debian archive taken from this machine's apt configuration
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
. "$ROOT/scripts/lib/apt-mirror.sh"
. "$ROOT/scripts/lib/qemu-binfmt.sh"
CACHE=${CNI_LOGGER_CACHE:-/var/cache/cni-logger}
SUITE=bullseye
ARCH=arm64
PLUGINS=(bridge host-local)

log() { printf '[node-root-arm64] %s\n' "$*" >&2; }
die() { printf '[node-root-arm64] ERROR: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "build-node-root-arm64.sh must run as root (debootstrap, chroot)"
command -v debootstrap >/dev/null || die "debootstrap is missing (scripts/setup-system.sh installs it)"
mirror=$(debian_mirror) || die "no Debian archive in this machine's apt configuration (set DEBIAN_MIRROR)"
key=$( { echo "$mirror $SUITE $ARCH"; sha256sum "${BASH_SOURCE[0]}" | cut -d' ' -f1; } | sha256sum | cut -c1-16)
out="$CACHE/node-root-$SUITE-$ARCH-$key"
mkdir -p "$CACHE"

make_node_root() {
  [ ! -f "$out/.complete" ] || return 0
  binfmt_aarch64 >/dev/null || die "this machine cannot run arm64 programs (above): the second stage needs them"
  local W t0=$SECONDS
  W=$(mktemp -d "$CACHE/.node-root-arm64.XXXXXX")
  # shellcheck disable=SC2064  # expand $W now: the trap runs after this function's locals are gone
  trap "rm -rf -- '$W'" EXIT
  log "debootstrap --foreign --arch=$ARCH --variant=minbase $SUITE"
  debootstrap --foreign --arch="$ARCH" --variant=minbase "$SUITE" "$W/root" "$mirror" >"$W/debootstrap.log" 2>&1 \
    || { tail -30 "$W/debootstrap.log" >&2; die "debootstrap (first stage) failed"; }
  log "debootstrap --second-stage, chrooted, under qemu-aarch64-static (a few minutes)"
  # A private mount namespace: whatever the second stage mounts in the root vanishes with it.
  unshare --mount --propagation private chroot "$W/root" /debootstrap/debootstrap --second-stage \
    >"$W/second-stage.log" 2>&1 \
    || { tail -30 "$W/second-stage.log" >&2; tail -30 "$W/root/debootstrap/debootstrap.log" >&2 2>/dev/null
         die "debootstrap (second stage) failed"; }
  rm -rf "$W/root/var/cache/apt/archives/"*.deb "$W/root/var/lib/apt/lists/"*_Packages
  mkdir -p "$W/out/cni"
  tar -C "$W/root" --numeric-owner -cf "$W/out/rootfs.tar" .

  # bullseye's arm64 CNI plugins, fetched as scripts/build-node-root.sh fetches the amd64 ones: a private apt
  # configuration (nothing under /etc/apt changes), an empty dpkg status, the architecture set to arm64.
  mkdir -p "$W/apt/etc" "$W/apt/lists/partial" "$W/apt/cache/archives/partial" "$W/deb"
  : > "$W/apt/status"
  printf 'Types: deb\nURIs: %s\nSuites: %s\nComponents: main\nSigned-By: %s\n' \
    "$mirror" "$SUITE" /usr/share/keyrings/debian-archive-keyring.gpg > "$W/apt/etc/node.sources"
  local -a opts=(-o Dir::Etc::SourceList=/dev/null -o "Dir::Etc::SourceParts=$W/apt/etc"
                 -o "Dir::State::Lists=$W/apt/lists" -o "Dir::State::Status=$W/apt/status"
                 -o "Dir::Cache=$W/apt/cache" -o "APT::Architecture=$ARCH" -o "APT::Architectures::=$ARCH"
                 -o APT::Sandbox::User=root)
  apt-get "${opts[@]}" update -qq >/dev/null
  (cd "$W/deb" && apt-get "${opts[@]}" download -qq "containernetworking-plugins:$ARCH" >/dev/null)
  dpkg-deb -x "$W"/deb/containernetworking-plugins_*_"$ARCH".deb "$W/pkg"
  local p
  for p in "${PLUGINS[@]}"; do
    [ -x "$W/pkg/usr/lib/cni/$p" ] || die "no /usr/lib/cni/$p in $SUITE's containernetworking-plugins ($ARCH)"
    cp -a "$W/pkg/usr/lib/cni/$p" "$W/out/cni/$p"
  done
  basename "$W"/deb/containernetworking-plugins_*.deb > "$W/out/cni/PACKAGE"
  touch "$W/out/.complete"
  rm -rf "$out" && mv "$W/out" "$out"
  log "made $out in $((SECONDS - t0)) s"
}
# Concurrent test sessions share the cache: the second waits for the first and reuses its result.
( flock 9; make_node_root ) 9>"$out.lock"
echo "$out"
