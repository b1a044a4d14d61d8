#!/usr/bin/env bash
# Prepares a test node without Python, as root, and prints its cache folder as the last line:
#
#   <folder>/rootfs.tar   a pristine Debian 11 (bullseye, glibc 2.31) root, `debootstrap --variant=minbase`
#                         (no python3 in it), packed with numeric owners; tests unpack a private copy
#   <folder>/cni/         bridge and host-local from bullseye's containernetworking-plugins package, to copy
#                         into such a copy (not installed there: the root stays minbase)
#
# tests/system/test_node_without_python.py uses it to install the bundle with the DaemonSet's entry point
# (deploy/kubernetes/cni-logger-node.sh) into that root and run a real chain there. Debian's own plugins
# of the node's release are used because this machine's (bookworm's) are linked against glibc 2.34,
# which a bullseye root does not have; they need nothing from the root but libc.
#
# The folder is $CNI_LOGGER_CACHE/node-root-<suite>-<arch>-<key>, the key a hash of the mirror, the
# suite, the architecture and this script, so a re-run takes no time and a change of any of them
# makes a new one (~1.5 min: the debootstrap).
#
# Environment:
#   CNI_LOGGER_CACHE  cache directory (default /var/cache/cni-logger)
#   DEBIAN_MIRROR     override the Debian archive taken from this machine's apt configuration
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
. "$ROOT/scripts/lib/apt-mirror.sh"
CACHE=${CNI_LOGGER_CACHE:-/var/cache/cni-logger}
SUITE=bullseye
PLUGINS=(bridge host-local)

log() { printf '[node-root] %s\n' "$*" >&2; }
die() { printf '[node-root] ERROR: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "build-node-root.sh must run as root (debootstrap)"
command -v debootstrap >/dev/null || die "debootstrap is missing (scripts/setup-system.sh installs it)"
mirror=$(debian_mirror) || die "no Debian archive in this machine's apt configuration (set DEBIAN_MIRROR)"
arch=$(dpkg --print-architecture)
key=$( { echo "$mirror $SUITE $arch"; sha256sum "${BASH_SOURCE[0]}" | cut -d' ' -f1; } | sha256sum | cut -c1-16)
out="$CACHE/node-root-$SUITE-$arch-$key"
mkdir -p "$CACHE"

make_node_root() {
  [ ! -f "$out/.complete" ] || return 0
  local W t0=$SECONDS
  W=$(mktemp -d "$CACHE/.node-root.XXXXXX")
  # shellcheck disable=SC2064  # expand $W now: the trap runs after this function's locals are gone
  trap "rm -rf -- '$W'" EXIT
  log "debootstrap --variant=minbase $SUITE ($mirror), ~1.5 min"
  debootstrap --variant=minbase --arch="$arch" "$SUITE" "$W/root" "$mirror" >"$W/debootstrap.log" 2>&1 \
    || { tail -30 "$W/debootstrap.log" >&2; die "debootstrap failed"; }
  rm -rf "$W/root/var/cache/apt/archives/"*.deb "$W/root/var/lib/apt/lists/"*_Packages
  mkdir -p "$W/out/cni"
  tar -C "$W/root" --numeric-owner -cf "$W/out/rootfs.tar" .

  # bullseye's CNI plugins, fetched with a private apt configuration (nothing under /etc/apt changes) and
  # an empty dpkg status (so the candidate is the bullseye package, not the newer one installed here).
  mkdir -p "$W/apt/etc" "$W/apt/lists/partial" "$W/apt/cache/archives/partial" "$W/deb"
  : > "$W/apt/status"
  cat > "$W/apt/etc/node.sources" <<SRC
Types: deb
URIs: $mirror
Suites: $SUITE
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
  local -a opts=(-o Dir::Etc::SourceList=/dev/null -o "Dir::Etc::SourceParts=$W/apt/etc"
                 -o "Dir::State::Lists=$W/apt/lists" -o "Dir::State::Status=$W/apt/status"
                 -o "Dir::Cache=$W/apt/cache" -o "APT::Architecture=$arch" -o APT::Sandbox::User=root)
  apt-get "${opts[@]}" update -qq >/dev/null
  (cd "$W/deb" && apt-get "${opts[@]}" download -qq containernetworking-plugins >/dev/null)
  dpkg-deb -x "$W"/deb/containernetworking-plugins_*.deb "$W/pkg"
  local p
  for p in "${PLUGINS[@]}"; do
    [ -x "$W/pkg/usr/lib/cni/$p" ] || die "no /usr/lib/cni/$p in $SUITE's containernetworking-plugins"
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
