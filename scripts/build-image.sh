#!/usr/bin/env bash
# Builds the cni-logger DaemonSet image with Debian's podman (no Docker daemon), as root, and writes it as an OCI
# archive, whose path it prints as its last line:
#
#   dist/cni-logger-image-<version>-<arch>.oci.tar    the image (name cni-logger:<version>), for
#                                                     `skopeo copy oci-archive:<file> docker://REGISTRY/cni-logger:<version>`
#                                                     or `podman load -i <file>` then `podman push`
#   dist/cni-logger-image-<version>.oci.tar           with --arch amd64,arm64: one image index holding both
#                                                     (`skopeo copy --all oci-archive:<file> docker://...`)
#   dist/cni-logger-image-<version>-<arch>.spdx.json  each image's SBOM (SPDX 2.3): the bundle's CPython and Python
#                                                     packages, the base image's Debian packages (also in the image,
#                                                     under /usr/share/doc/cni-logger/sbom.spdx.json)
#
# The image takes the bundle scripts/build-bundle.sh makes (dist/cni-logger-<version>-linux-<x86_64|arm64>.tar.gz,
# run when it is missing: seconds with its cache under /var/cache/cni-logger), so the interpreter is built one way
# only. deploy/Containerfile has no RUN step: nothing runs in a container during the build, and the arm64 image
# builds on an amd64 machine without emulation.
#
#   build-image.sh [--arch LIST] [--base IMAGE | --base-rootfs [ARCH=]TARBALL ...] [--bundle [ARCH=]TARBALL ...]
#
#   --arch LIST              amd64, arm64 or amd64,arm64 (default: this machine's architecture)
#   --base IMAGE             the base image, pulled for each architecture unless already in the store
#                            (default docker.io/library/debian:bookworm-slim; pin it: ...@sha256:<digest>)
#   --base-rootfs [ARCH=]TARBALL
#                            a root filesystem tarball imported with `podman import` as the base instead, per
#                            architecture (without ARCH=: the first of --arch). The test suite does this with
#                            debootstrap roots: no registry is reachable there.
#   --bundle [ARCH=]TARBALL  the bundle (default dist/cni-logger-<version>-linux-<x86_64|arm64>.tar.gz; $BUNDLE
#                            stands for the first architecture's)
#
# Environment:
#   IMAGE         the image's name (default cni-logger:<version>)
#   PODMAN_ROOT   a containers storage directory to build in (default: a private one, removed afterwards)
#   DIST          output directory (default <repo>/dist)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DIST=${DIST:-$ROOT/dist}

log() { printf '[build-image] %s\n' "$*" >&2; }
die() { printf '[build-image] ERROR: %s\n' "$*" >&2; exit 1; }

base="docker.io/library/debian:bookworm-slim"
declare -A base_rootfs=() bundles=()
archs=""
host_arch=$(dpkg --print-architecture)
# per_arch ARRAY [ARCH=]VALUE: VALUE for ARCH, or for the first architecture without ARCH=.
# shellcheck disable=SC2034  # `into` is a name reference: assigning it fills the caller's array
per_arch() {
  local -n into=$1
  case $2 in
    amd64=* | arm64=*) into[${2%%=*}]=${2#*=} ;;
    *) into["default"]=$2 ;;
  esac
}
while [ $# -gt 0 ]; do
  case $1 in
    --base) base=$2; shift 2 ;;
    --base=*) base=${1#*=}; shift ;;
    --base-rootfs) per_arch base_rootfs "$2"; shift 2 ;;
    --base-rootfs=*) per_arch base_rootfs "${1#*=}"; shift ;;
    --bundle) per_arch bundles "$2"; shift 2 ;;
    --bundle=*) per_arch bundles "${1#*=}"; shift ;;
    --arch) archs=$2; shift 2 ;;
    --arch=*) archs=${1#*=}; shift ;;
    -h | --help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument '$1' (see --help)" ;;
  esac
done

[ "$(id -u)" = 0 ] || die "build-image.sh must run as root (podman's storage)"
command -v podman >/dev/null || die "podman is missing (scripts/setup-system.sh installs it)"
IFS=, read -r -a arch_list <<<"${archs:-$host_arch}"
[ ${#arch_list[@]} -gt 0 ] || die "--arch needs amd64 and/or arm64"
for arch in "${arch_list[@]}"; do
  case $arch in amd64 | arm64) ;; *) die "--arch takes amd64 and/or arm64, not '$arch'" ;; esac
done
first=${arch_list[0]}
[ -z "${base_rootfs[default]:-}" ] || base_rootfs[$first]=${base_rootfs[$first]:-${base_rootfs[default]}}
[ -z "${BUNDLE:-}" ] || bundles[default]=${bundles[default]:-$BUNDLE}
[ -z "${bundles[default]:-}" ] || bundles[$first]=${bundles[$first]:-${bundles[default]}}
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' "$ROOT/pyproject.toml" | head -1)
[ -n "$version" ] || die "no version in pyproject.toml"
IMAGE=${IMAGE:-cni-logger:$version}

# bundle_for ARCH: the bundle's path, made by scripts/build-bundle.sh when it is missing and was not given.
bundle_for() {
  local arch=$1 name bundle
  case $arch in amd64) name=x86_64 ;; *) name=$arch ;; esac
  bundle=${bundles[$arch]:-$DIST/cni-logger-$version-linux-$name.tar.gz}
  if [ ! -f "$bundle" ]; then
    [ -z "${bundles[$arch]:-}" ] || die "no bundle at $bundle"
    if [ "$arch" = "$host_arch" ]; then
      log "no bundle at $bundle: scripts/build-bundle.sh"
      bundle=$(bash "$ROOT/scripts/build-bundle.sh" | tail -1)
    else
      log "no bundle at $bundle: scripts/build-bundle.sh --arch $arch"
      bundle=$(bash "$ROOT/scripts/build-bundle.sh" --arch "$arch" | tail -1)
    fi
  fi
  [ -f "$bundle" ] || die "no bundle at $bundle"
  tar -tzf "$bundle" >/dev/null 2>&1 || die "$bundle is not a gzip'd tarball"
  printf '%s\n' "$bundle"
}

W=$(mktemp -d /tmp/cni-logger-image.XXXXXX)
trap 'rm -rf -- "$W"' EXIT

# A private containers configuration: nothing under /etc/containers or /var/lib/containers is used or changed.
# (vfs: works on any filesystem, overlay-on-overlay included.)
store=${PODMAN_ROOT:-$W/store}
mkdir -p "$store/root" "$store/runroot" "$W/tmp"
printf '[storage]\ndriver = "vfs"\ngraphroot = "%s"\nrunroot = "%s"\n' "$store/root" "$store/runroot" \
  > "$W/storage.conf"
printf '[engine]\ncgroup_manager = "cgroupfs"\nevents_logger = "none"\ntmp_dir = "%s"\n' "$W/tmp" \
  > "$W/containers.conf"
export CONTAINERS_STORAGE_CONF=$W/storage.conf CONTAINERS_CONF=$W/containers.conf TMPDIR=$W/tmp
pm() { podman "$@"; }
mkdir -p "$DIST"

# build ARCH TAG: the image for ARCH, tagged TAG, and its SBOM in $DIST.
build() {
  local arch=$1 tag=$2 bundle from rootfs ctr ctx size base_size
  bundle=$(bundle_for "$arch")
  from=$base
  rootfs=${base_rootfs[$arch]:-}
  if [ -n "$rootfs" ]; then
    [ -f "$rootfs" ] || die "no root filesystem tarball at $rootfs"
    from="localhost/cni-logger-base:$arch-$(sha256sum "$rootfs" | cut -c1-16)"
    if ! pm image exists "$from"; then
      log "podman import $rootfs as $from"
      pm import --quiet --arch "$arch" --os linux "$rootfs" "$from" >/dev/null
    fi
  else
    log "podman pull --arch $arch $from"
    pm pull --quiet --arch "$arch" --os linux "$from" >/dev/null || die "cannot pull $from (give --base or --base-rootfs)"
  fi
  # The base's package list, for the SBOM (a created container is only mounted, never run).
  ctr=$(pm create --arch "$arch" --entrypoint /bin/true "$from")
  pm cp "$ctr:/var/lib/dpkg/status" "$W/dpkg-status-$arch" 2>/dev/null || : > "$W/dpkg-status-$arch"
  pm rm "$ctr" >/dev/null
  [ -s "$W/dpkg-status-$arch" ] || log "warning: $from has no /var/lib/dpkg/status: the SBOM lists no base packages"

  ctx=$W/context-$arch
  mkdir -p "$ctx/bundle"
  cp "$bundle" "$ctx/bundle/"
  cp "$ROOT/deploy/kubernetes/cni-logger-node.sh" "$ctx/cni-logger-node.sh"
  /usr/bin/python3 "$ROOT/scripts/image/sbom.py" --bundle "$bundle" --dpkg-status "$W/dpkg-status-$arch" \
    --entrypoint "$ctx/cni-logger-node.sh" --base "$from" --image "${IMAGE%:*}" --version "$version" --arch "$arch" \
    --output "$ctx/sbom.spdx.json"
  log "podman build $tag ($arch) FROM $from with $(basename "$bundle")"
  pm build --quiet --pull=never --platform "linux/$arch" --build-arg "BASE_IMAGE=$from" \
    --build-arg "VERSION=$version" -f "$ROOT/deploy/Containerfile" -t "$tag" "$ctx" >/dev/null
  cp "$ctx/sbom.spdx.json" "$DIST/cni-logger-image-$version-$arch.spdx.json"
  size=$(pm image inspect --format '{{.Size}}' "$tag")
  base_size=$(pm image inspect --format '{{.Size}}' "$from")
  log "$tag ($arch): $((size / 1000000)) MB unpacked ($((base_size / 1000000)) MB of it the base $from);" \
      "SBOM $DIST/cni-logger-image-$version-$arch.spdx.json"
}

started=$SECONDS
if [ ${#arch_list[@]} -eq 1 ]; then
  build "$first" "$IMAGE"
  out=$DIST/cni-logger-image-$version-$first.oci.tar
  rm -f "$out.tmp"
  pm save --quiet --format oci-archive -o "$out.tmp" "$IMAGE" >/dev/null
else
  pm manifest create "$IMAGE" >/dev/null
  for arch in "${arch_list[@]}"; do
    build "$arch" "$IMAGE-$arch"
    pm manifest add --arch "$arch" --os linux "$IMAGE" "containers-storage:localhost/$IMAGE-$arch" >/dev/null
  done
  out=$DIST/cni-logger-image-$version.oci.tar
  rm -f "$out.tmp"
  pm manifest push --quiet --all "$IMAGE" "oci-archive:$out.tmp:$IMAGE" >/dev/null
fi
mv "$out.tmp" "$out"
log "$out: $(($(stat -c %s "$out") / 1000000)) MB; done in $((SECONDS - started)) s"
echo "$out"
