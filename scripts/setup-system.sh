#!/usr/bin/env bash
# Installs everything cni-logger's demo and test suite need on a Debian (bookworm) machine, as root:
# Debian packages, the reference CNI plugins, cnitool and the Go `debug` plugin built offline from
# Debian's source package of the CNI library, and a virtualenv on Debian's /usr/bin/python3 with the
# project installed. Re-running it reuses what is already there (packages, tools, venv).
#
# Environment:
#   CNI_LOGGER_TOOLS  where cnitool + debug go (default /opt/cni-logger-tools; kept across runs)
#   CNI_LOGGER_VENV   the virtualenv (default <repo>/.venv)
#   WITH_PODMAN=0     skip podman/runc/busybox (the Podman integration tests then skip)
#   FORCE_BUILD=1     rebuild cnitool/debug even if they are present
#   SKIP_VENV=1       do not create/update the virtualenv
#   DEBIAN_MIRROR     the Debian archive for source packages (default: the one in this machine's apt config)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
. "$ROOT/scripts/lib/apt-mirror.sh"
TOOLS=${CNI_LOGGER_TOOLS:-/opt/cni-logger-tools}   # cnitool, debug (built), kept across runs
VENV=${CNI_LOGGER_VENV:-$ROOT/.venv}
CNI_LIB_VERSION=1.1.2                               # golang-github-appc-cni in bookworm
SRC_PKG=golang-github-appc-cni

log() { printf '[setup] %s\n' "$*" >&2; }
die() { printf '[setup] ERROR: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "setup-system.sh must run as root (network namespaces, apt)"
if ! command -v apt-get >/dev/null || ! command -v dpkg-query >/dev/null; then
  die "needs a Debian-based system (apt)"
fi

WORKDIRS=()
cleanup() { local d; for d in "${WORKDIRS[@]}"; do rm -rf -- "$d"; done; }
trap cleanup EXIT

# --- 1. Debian packages --------------------------------------------------------------------------------
APT_PKGS=(ca-certificates python3 python3-venv python3-pip iproute2 iptables jq util-linux procps
          containernetworking-plugins golang-go golang-github-appc-cni-dev
          golang-github-vishvananda-netns-dev golang-golang-x-sys-dev
          golang-github-containernetworking-plugins-dev debian-archive-keyring xz-utils hyperfine time
          containerd
          gcc libc6-dev logrotate
          debootstrap binutils      # scripts/build-bundle.sh
          chromium                  # the audit report's page, rendered in the tests
          faketime                  # clock steps under the file sink (libfaketime)
          shellcheck                # the node script is checked as POSIX sh
          prometheus                # scrapes install --watch's metrics; promtool checks the alerting rules
          qemu-user-static          # runs the arm64 bundle and an arm64 node root (tests/system/test_bundle_arm64.py)
          )
if [ "${WITH_PODMAN:-1}" = 1 ]; then
  APT_PKGS+=(podman runc crun busybox-static catatonit conmon)   # podman also builds the image (build-image.sh)
fi
missing=()
for p in "${APT_PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  log "apt-get install ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
  log "Debian packages: all ${#APT_PKGS[@]} present"
fi
for p in bridge host-local portmap; do
  [ -x "/usr/lib/cni/$p" ] || die "containernetworking-plugins did not install /usr/lib/cni/$p"
done

# --- 2. cnitool + Go `debug` plugin, built offline ----------------------------------------------------
# They are not in any binary package (debian/rules excludes cnitool and plugins/debug), so fetch Debian's
# source package with a private deb-src list (nothing under /etc/apt changes) and build in GOPATH mode
# against the packaged libraries (module mode would need proxy.golang.org).
tools_ok() {
  [ -x "$TOOLS/bin/cnitool" ] && [ -x "$TOOLS/bin/debug" ] \
    && [ "$(cat "$TOOLS/VERSION" 2>/dev/null)" = "$CNI_LIB_VERSION" ] \
    && CNI_COMMAND=VERSION "$TOOLS/bin/debug" </dev/null 2>/dev/null | grep -q '"supportedVersions"'
}
if [ "${FORCE_BUILD:-0}" != 1 ] && tools_ok; then
  log "reusing $TOOLS/bin/{cnitool,debug} ($CNI_LIB_VERSION)"
else
  log "building cnitool and debug $CNI_LIB_VERSION from Debian's source package $SRC_PKG"
  W=$(mktemp -d /tmp/cni-logger-setup.XXXXXX); WORKDIRS+=("$W")
  mirror=$(debian_mirror) || die "no Debian archive in this machine's apt configuration (set DEBIAN_MIRROR)"
  mkdir -p "$W/aptsrc/lists/partial" "$W/aptsrc/etc" "$W/src" "$W/out"
  cat > "$W/aptsrc/etc/src.sources" <<SRC
Types: deb-src
URIs: $mirror
Suites: bookworm
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
  # APT::Sandbox::User=root: the private lists live in a 0700 temp dir the _apt user cannot enter.
  APTOPTS=(-o Dir::Etc::SourceList=/dev/null -o "Dir::Etc::SourceParts=$W/aptsrc/etc"
           -o "Dir::State::Lists=$W/aptsrc/lists" -o APT::Sandbox::User=root)
  apt-get "${APTOPTS[@]}" update -qq
  # Any Debian revision of the upstream version will do (e.g. 1.1.2-1 or a later point-release upload).
  (cd "$W/src" && apt-get "${APTOPTS[@]}" source --download-only -qq "$SRC_PKG" >/dev/null)
  orig="$W/src/${SRC_PKG}_${CNI_LIB_VERSION}.orig.tar.xz"
  [ -f "$orig" ] || die "expected $orig; apt fetched: $(ls "$W/src")"
  tar -C "$W/src" -xf "$orig"
  SRC="$W/src/$SRC_PKG-$CNI_LIB_VERSION"
  if [ ! -d "$SRC/cnitool" ] || [ ! -d "$SRC/plugins/debug" ]; then die "no cnitool/ or plugins/debug/ in $orig"; fi
  export GO111MODULE=off GOPATH=/usr/share/gocode GOPROXY=off GOFLAGS="" GOCACHE="$W/gocache" CGO_ENABLED=0
  # GOPATH mode cannot build an absolute directory path ("cannot import absolute path"): cd into it.
  (cd "$SRC/cnitool" && go build -trimpath -o "$W/out/cnitool" .)
  (cd "$SRC/plugins/debug" && go build -trimpath -o "$W/out/debug" .)
  # Install only complete builds, atomically, then stamp the version.
  mkdir -p "$TOOLS/bin"
  for b in cnitool debug; do
    install -m 0755 "$W/out/$b" "$TOOLS/bin/.$b.new" && mv -f "$TOOLS/bin/.$b.new" "$TOOLS/bin/$b"
  done
  echo "$CNI_LIB_VERSION" > "$TOOLS/VERSION"
  tools_ok || die "built tools in $TOOLS/bin do not work"
fi

# --- 3. The project, in a virtualenv on Debian's interpreter ------------------------------------------
# The plugin's console script gets an absolute shebang to $VENV/bin/python (Debian's 3.11, ~8 ms start-up;
# never the pyenv shim on PATH). The install is editable, so later source edits need no re-run; a re-run
# re-installs only when pyproject.toml changed or the console script is missing/broken.
if [ "${SKIP_VENV:-0}" = 1 ]; then
  log "SKIP_VENV=1: not touching $VENV"
else
  if [ ! -x "$VENV/bin/python" ]; then
    log "creating $VENV on /usr/bin/python3"
    /usr/bin/python3 -m venv "$VENV"
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip >/dev/null
  fi
  stamp="$VENV/.cni-logger-installed"
  want=$(sha256sum "$ROOT/pyproject.toml" | cut -d' ' -f1)
  if [ "$(cat "$stamp" 2>/dev/null)" = "$want" ] && [ -x "$VENV/bin/cni-logger" ] \
     && "$VENV/bin/python" -c 'import cni_logger.cli' 2>/dev/null; then
    log "reusing $VENV (project already installed, editable)"
  else
    log "pip install -e ${ROOT}[test] into $VENV"
    rm -f "$stamp"
    piplog=$(mktemp /tmp/cni-logger-pip.XXXXXX); WORKDIRS+=("$piplog")
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check -e "${ROOT}[test]" >"$piplog" 2>&1 \
      || { cat "$piplog" >&2; die "pip install -e ${ROOT}[test] failed (output above)"; }
    echo "$want" > "$stamp"
  fi
  if "$VENV/bin/python" -c 'import cni_logger.cli' 2>/dev/null; then
    log "ready: $VENV/bin/cni-logger, $TOOLS/bin/cnitool, $TOOLS/bin/debug"
  else
    log "WARNING: $VENV/bin/cni-logger is installed but 'import cni_logger.cli' fails (package unfinished?)"
    log "ready (tools only): $TOOLS/bin/cnitool, $TOOLS/bin/debug"
  fi
fi
