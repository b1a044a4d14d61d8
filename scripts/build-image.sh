#!/usr/bin/env bash
# Builds the cni-logger DaemonSet image with Debian's podman (no Docker daemon), as root, and writes it as an OCI
# archive, whose path it prints as its last line:
#
#   dist/cni-logger-image-<version>-<arch>.oci.tar    the image (name cni-logger:<version>), for
#                                                     `skopeo copy oci-archive:<file> docker://REGISTRY/cni-logger:<version>`
#                                                     or `podman load -i <file>` then `podman push`
#   dist/cni-logger-image-<version>-<arch>.spdx.json  its SBOM (SPDX 2.3): the bundle's CPython and Python packages,
#                                                     the base image's Debian packages (also in the image, under
#                                                     /usr/share/doc/cni-logger/sbom.spdx.json)
#
# The image takes the bundle scripts/build-bundle.sh makes (dist/cni-logger-<version>-linux-<arch>.tar.gz, run
# when it is missing: seconds with its cache under /var/cache/cni-logger), so the interpreter is built one way only.
# deploy/Containerfile has no RUN step: nothing runs in a container during the build.
#
#   build-image.sh [--base IMAGE | --base-rootfs TARBALL] [--arch amd64|arm64]
#
#   --base IMAGE            the base image, pulled unless already in the store
#                           (default docker.io/library/debian:bookworm-slim; pin it: ...@sha256:<digest>)
#   --base-rootfs TARBALL   a root filesystem tarball imported with `podman import` as the base instead (the test
#                           suite does this with a debootstrap root: no registry is reachable there)
#   --arch ARCH             the image's architecture (default this machine's); the bundle for it must exist
#                           (scripts/build-bundle.sh --arch ARCH)
#
# Environment:
#   BUNDLE        the bundle tarball (default dist/cni-logger-<version>-linux-<x86_64|arm64>.tar.gz)
#   IMAGE         the image's name (default cni-logger:<version>)
#   PODMAN_ROOT   the containers storage to build in (default: a private one, removed afterwards); give one to keep
#                 the base and the image there (e.g. for `podman --root PODMAN_ROOT push`)
#   DIST          output directory (default <repo>/dist)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DIST=${DIST:-$ROOT/dist}

log() { printf '[build-image] %s\n' "$*" >&2; }
die() { printf '[build-image] ERROR: %s\n' "$*" >&2; exit 1; }

base="docker.io/library/debian:bookworm-slim"
base_rootfs=""
arch=""
while [ $# -gt 0 ]; do
  case $1 in
    --base) base=$2; shift 2 ;;
    --base=*) base=${1#*=}; shift ;;
    --base-rootfs) base_rootfs=$2; shift 2 ;;
    --base-rootfs=*) base_rootfs=${1#*=}; shift ;;
    --arch) arch=$2; shift 2 ;;
    --arch=*) arch=${1#*=}; shift ;;
    -h | --help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument '$1' (see --help)" ;;
  esac
done

[ "$(id -u)" = 0 ] || die "build-image.sh must run as root (podman's storage)"
command -v podman >/dev/null || die "podman is missing (scripts/setup-system.sh installs it)"
arch=${arch:-$(dpkg --print-architecture)}
case $arch in
  amd64) bundle_arch=x86_64 ;;
  arm64) bundle_arch=arm64 ;;
  *) die "--arch must be amd64 or arm64, not '$arch'" ;;
esac
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' "$ROOT/pyproject.toml" | head -1)
[ -n "$version" ] || die "no version in pyproject.toml"
IMAGE=${IMAGE:-cni-logger:$version}

bundle=${BUNDLE:-$DIST/cni-logger-$version-linux-$bundle_arch.tar.gz}
if [ ! -f "$bundle" ]; then
  [ -z "${BUNDLE:-}" ] || die "no bundle at $bundle"
  if [ "$arch" = "$(dpkg --print-architecture)" ]; then
    log "no bundle at $bundle: scripts/build-bundle.sh"
    bundle=$(bash "$ROOT/scripts/build-bundle.sh" | tail -1)
  else
    log "no bundle at $bundle: scripts/build-bundle.sh --arch $arch"
    bundle=$(bash "$ROOT/scripts/build-bundle.sh" --arch "$arch" | tail -1)
  fi
fi
[ -f "$bundle" ] || die "no bundle at $bundle"
tar -tzf "$bundle" >/dev/null 2>&1 || die "$bundle is not a gzip'd tarball"

W=$(mktemp -d /tmp/cni-logger-image.XXXXXX)
trap 'rm -rf -- "$W"' EXIT

# A private containers configuration: nothing under /etc/containers or /var/lib/containers is used or changed.
# (vfs: works on any filesystem, overlay-on-overlay included.)
store=${PODMAN_ROOT:-$W/store}
mkdir -p "$store/root" "$store/runroot" "$W/tmp"
cat > "$W/storage.conf" <<EOF
[storage]
driver = "vfs"
graphroot = "$store/root"
runroot = "$store/runroot"
EOF
cat > "$W/containers.conf" <<EOF
[engine]
cgroup_manager = "cgroupfs"
events_logger = "none"
tmp_dir = "$W/tmp"
EOF
export CONTAINERS_STORAGE_CONF=$W/storage.conf CONTAINERS_CONF=$W/containers.conf TMPDIR=$W/tmp
pm() { podman "$@"; }

started=$SECONDS
if [ -n "$base_rootfs" ]; then
  [ -f "$base_rootfs" ] || die "no root filesystem tarball at $base_rootfs"
  base="localhost/cni-logger-base:$(sha256sum "$base_rootfs" | cut -c1-16)"
  if ! pm image exists "$base"; then
    log "podman import $base_rootfs as $base"
    pm import --quiet --arch "$arch" --os linux "$base_rootfs" "$base" >/dev/null
  fi
elif ! pm image exists "$base"; then
  log "podman pull $base"
  pm pull --arch "$arch" --os linux "$base" >/dev/null || die "cannot pull $base (give --base or --base-rootfs)"
fi

# The base's package list, for the SBOM (a created container is only mounted, never run).
ctr=$(pm create --arch "$arch" --entrypoint /bin/true "$base")
pm cp "$ctr:/var/lib/dpkg/status" "$W/dpkg-status" 2>/dev/null || : > "$W/dpkg-status"
pm rm "$ctr" >/dev/null
[ -s "$W/dpkg-status" ] || log "warning: $base has no /var/lib/dpkg/status: the SBOM lists no base packages"

ctx=$W/context
mkdir -p "$ctx/bundle"
cp "$bundle" "$ctx/bundle/"
cp "$ROOT/deploy/kubernetes/cni-logger-node.sh" "$ctx/cni-logger-node.sh"
sbom_name=cni-logger-image-$version-$arch.spdx.json
/usr/bin/python3 "$ROOT/scripts/image/sbom.py" --bundle "$bundle" --dpkg-status "$W/dpkg-status" \
  --entrypoint "$ctx/cni-logger-node.sh" --base "$base" --image "${IMAGE%:*}" --version "$version" --arch "$arch" \
  --output "$ctx/sbom.spdx.json"

log "podman build $IMAGE FROM $base with $(basename "$bundle")"
pm build --quiet --pull=never --platform "linux/$arch" --build-arg "BASE_IMAGE=$base" \
  --build-arg "VERSION=$version" -f "$ROOT/deploy/Containerfile" -t "$IMAGE" "$ctx" >/dev/null

mkdir -p "$DIST"
out=$DIST/cni-logger-image-$version-$arch.oci.tar
rm -f "$out.tmp"
pm save --quiet --format oci-archive -o "$out.tmp" "$IMAGE" >/dev/null
mv "$out.tmp" "$out"
cp "$ctx/sbom.spdx.json" "$DIST/$sbom_name"
size=$(pm image inspect --format '{{.Size}}' "$IMAGE")
base_size=$(pm image inspect --format '{{.Size}}' "$base")
log "$IMAGE ($arch): $((size / 1000000)) MB unpacked ($((base_size / 1000000)) MB of it the base $base)," \
    "archive $(($(stat -c %s "$out") / 1000000)) MB; SBOM $DIST/$sbom_name; done in $((SECONDS - started)) s"
echo "$out"
