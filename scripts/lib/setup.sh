# shellcheck shell=bash
# Sourced by scripts/setup-demo.sh and scripts/setup-system.sh: what each of them installs on a Debian
# (bookworm) machine, and how. The demo's set-up installs only what scripts/demo.sh runs; the test set-up
# installs that and the test suite's packages. Both say what they will install before doing it, and neither
# installs a container runtime on a machine that already has one from another package (Docker's
# containerd.io, a static download in /usr/local/bin, k3s's bundled containerd, ...): apt would replace or
# shadow it, and a node's runtime is not ours to change.
#
# Callers set ROOT (the repository) before sourcing, and call setup_main demo|test [--plan].

. "$ROOT/scripts/lib/apt-mirror.sh"

CNI_LIB_VERSION=1.1.2          # golang-github-appc-cni in bookworm: cnitool and the `debug` plugin come from it
SRC_PKG=golang-github-appc-cni
TOOLS=${CNI_LOGGER_TOOLS:-/opt/cni-logger-tools}   # cnitool, debug (built), kept across runs
VENV=${CNI_LOGGER_VENV:-$ROOT/.venv}

# What scripts/demo.sh runs, and nothing else.
DEMO_PKGS=(
  ca-certificates python3 python3-venv    # the virtualenv with the project (pip fetches over HTTPS)
  iproute2                                # ip netns: the throw-away namespaces
  containernetworking-plugins             # the reference plugins: bridge, host-local (/usr/lib/cni)
  golang-go golang-github-appc-cni-dev    # cnitool, built from Debian's source package of the CNI library,
  debian-archive-keyring xz-utils         #   fetched with a private deb-src list and unpacked
)
# What the test suite adds (scripts/test.sh).
TEST_PKGS=(
  python3-pip iptables jq util-linux procps
  golang-github-vishvananda-netns-dev golang-golang-x-sys-dev
  golang-github-containernetworking-plugins-dev   # the Go `debug` plugin (its namespace helpers)
  hyperfine time                          # benchmarks
  containerd                              # a private containerd with its CRI plugin (tests/system/cri)
  gcc libc6-dev                           # the thick-mode shim, static (libc.a): scripts/build-shim.sh
  logrotate
  debootstrap binutils                    # scripts/build-bundle.sh, the node roots
  chromium                                # the audit report's page, rendered in the tests
  faketime                                # clock steps under the file sink (libfaketime)
  shellcheck                              # the node script is checked as POSIX sh
  prometheus                              # scrapes install --watch's metrics; promtool checks the alerting rules
  qemu-user-static                        # runs the arm64 bundle and an arm64 node root (tests/system/test_bundle_arm64.py)
)
# Podman's tests, and scripts/build-image.sh (unless WITH_PODMAN=0).
PODMAN_PKGS=(podman runc crun busybox-static catatonit conmon)

# Container runtimes: the Debian packages that install one, the commands each puts on PATH, and the runtimes
# each pulls in (Depends). A package is left out when one of those commands on PATH, or a running process of
# that name, is not a file of the Debian package of that name.
RUNTIME_PKGS=(containerd podman runc crun conmon)
runtime_commands() {
  case $1 in
    containerd) echo containerd ctr containerd-shim-runc-v2 ;;
    *) echo "$1" ;;
  esac
}
runtime_needs() {
  case $1 in
    containerd) echo runc ;;
    podman) echo conmon crun runc ;;   # Depends: conmon, crun | runc
  esac
}

setup_log() { printf '[setup] %s\n' "$*" >&2; }
setup_die() { printf '[setup] ERROR: %s\n' "$*" >&2; exit 1; }

# deb_owner FILE: the installed Debian packages that own FILE (space separated); status 1 when none does.
# Tries the path as found, its target, and the /usr twin of /bin, /sbin, /lib (merged /usr: dpkg records one).
deb_owner() {
  local c out="" line names=""
  for c in "$1" "$(readlink -f -- "$1" 2>/dev/null)"; do
    [ -n "$c" ] || continue
    out=$(dpkg-query -S -- "$c" 2>/dev/null) && break
    case $c in /bin/*|/sbin/*|/lib/*) out=$(dpkg-query -S -- "/usr$c" 2>/dev/null) && break ;; esac
    out=""
  done
  while IFS= read -r line; do
    case $line in ""|"diversion by "*) continue ;; esac
    line=${line%%: /*}                            # "pkg1, pkg2:amd64: /usr/bin/x" -> "pkg1, pkg2:amd64"
    line=${line//,/ }
    for c in $line; do names+="${names:+ }${c%%:*}"; done
  done <<<"$out"
  [ -n "$names" ] || return 1
  printf '%s\n' "$names"
}

# running_exe NAME: the executables of running processes called NAME (when /proc lets us read them).
running_exe() {
  local d comm exe
  for d in /proc/[0-9]*; do
    comm=""; read -r comm 2>/dev/null <"$d/comm" || true
    [ "$comm" = "$1" ] || continue
    exe=$(readlink "$d/exe" 2>/dev/null) || continue
    printf '%s\n' "${exe% (deleted)}"
  done
}

# runtime_conflict PKG: print why PKG's commands belong to something else (and succeed), or fail when they do
# not: a command of that name on PATH or running that no package owns, or another package owns.
runtime_conflict() {
  local pkg=$1 name path real owners seen=" "
  for name in $(runtime_commands "$pkg"); do
    while IFS= read -r path; do
      [ -n "$path" ] || continue
      real=$(readlink -f -- "$path" 2>/dev/null) || real=$path
      case $seen in *" $real "*) continue ;; esac   # /bin/x and /usr/bin/x on a merged /usr: one file
      seen+="$real "
      owners=$(deb_owner "$path") || owners=""
      case " $owners " in *" $pkg "*) continue ;; esac
      if [ -n "$owners" ]; then
        printf "%s belongs to %s, not to Debian's %s package\n" "$path" "$owners" "$pkg"
      else
        printf "%s is not from Debian's %s package (no package owns it)\n" "$path" "$pkg"
      fi
      return 0
    done < <(type -aP "$name"; running_exe "$name")
  done
  return 1
}

# runtime_scan: RUNTIME_CONFLICT[PKG] = runtime_conflict's answer for each runtime package ("" when none).
declare -gA RUNTIME_CONFLICT=()
runtime_scan() {
  local pkg reason
  for pkg in "${RUNTIME_PKGS[@]}"; do
    reason=$(runtime_conflict "$pkg") || reason=""
    RUNTIME_CONFLICT[$pkg]=$reason
  done
}

# runtime_blocked PKG: print why installing PKG would put a container runtime beside one from another
# package (PKG itself, or a runtime it depends on), and succeed; fail when PKG is not a runtime or is safe.
# Reads RUNTIME_CONFLICT (runtime_scan).
runtime_blocked() {
  local pkg=$1 dep reason
  case " ${RUNTIME_PKGS[*]} " in *" $pkg "*) ;; *) return 1 ;; esac
  for dep in "$pkg" $(runtime_needs "$pkg"); do
    reason=${RUNTIME_CONFLICT[$dep]:-}
    if [ -n "$reason" ]; then
      if [ "$dep" = "$pkg" ]; then echo "$reason"; else echo "it needs $dep, and $reason"; fi
      return 0
    fi
  done
  return 1
}

deb_installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'ok installed'; }

# setup_packages MODE: the Debian packages of MODE (demo or test), one per line.
setup_packages() {
  printf '%s\n' "${DEMO_PKGS[@]}"
  if [ "$1" = test ]; then
    printf '%s\n' "${TEST_PKGS[@]}"
    if [ "${WITH_PODMAN:-1}" = 1 ]; then printf '%s\n' "${PODMAN_PKGS[@]}"; fi
  fi
}

# setup_plan MODE: one line per package: "install P", "present P" or "skip P: why". Changes nothing.
setup_plan() {
  local p reason
  runtime_scan
  while IFS= read -r p; do
    if reason=$(runtime_blocked "$p"); then
      printf 'skip %s: %s\n' "$p" "$reason"
    elif deb_installed "$p"; then
      printf 'present %s\n' "$p"
    else
      printf 'install %s\n' "$p"
    fi
  done < <(setup_packages "$1")
}

# --- 1. Debian packages ------------------------------------------------------------------------------------
setup_apt() {
  local mode=$1 plan line p missing=() skipped=0 total=0
  plan=$(setup_plan "$mode")
  while IFS= read -r line; do
    total=$((total + 1))
    case $line in
      "install "*) missing+=("${line#install }") ;;
      "skip "*)
        skipped=$((skipped + 1))
        setup_log "not installing ${line#skip }; the tests that need it skip, saying why" ;;
    esac
  done <<<"$plan"
  if [ ${#missing[@]} -gt 0 ]; then
    setup_log "will install ${#missing[@]} Debian packages (and their dependencies): ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # --no-remove: never let a dependency push out a package already there (a runtime's, above all).
    apt-get install -y -qq --no-install-recommends --no-remove "${missing[@]}" >/dev/null
  else
    line="Debian packages: all $((total - skipped)) present"
    if [ "$skipped" -gt 0 ]; then line+=" ($skipped left out, above)"; fi
    setup_log "$line"
  fi
  for p in bridge host-local portmap; do
    [ -x "/usr/lib/cni/$p" ] || setup_die "containernetworking-plugins did not install /usr/lib/cni/$p"
  done
}

# --- 2. cnitool (+ the Go `debug` plugin), built offline ----------------------------------------------------
# They are not in any binary package (debian/rules excludes cnitool and plugins/debug), so fetch Debian's
# source package with a private deb-src list (nothing under /etc/apt changes) and build in GOPATH mode
# against the packaged libraries (module mode would need proxy.golang.org).
tools_ok() {
  local b
  [ "$(cat "$TOOLS/VERSION" 2>/dev/null)" = "$CNI_LIB_VERSION" ] || return 1
  for b in "$@"; do [ -x "$TOOLS/bin/$b" ] || return 1; done
  case " $* " in
    *" debug "*) CNI_COMMAND=VERSION "$TOOLS/bin/debug" </dev/null 2>/dev/null | grep -q '"supportedVersions"' ;;
  esac
}

# setup_tools TOOL...: cnitool and/or debug in $TOOLS/bin, built unless already there (FORCE_BUILD=1: rebuild).
setup_tools() {
  if [ "${FORCE_BUILD:-0}" != 1 ] && tools_ok "$@"; then
    setup_log "reusing $(printf "$TOOLS/bin/%s " "$@")($CNI_LIB_VERSION)"
    return 0
  fi
  setup_log "building $* $CNI_LIB_VERSION from Debian's source package $SRC_PKG"
  local W mirror orig SRC b dir
  W=$(mktemp -d /tmp/cni-logger-setup.XXXXXX); SETUP_WORKDIRS+=("$W")
  mirror=$(debian_mirror) || setup_die "no Debian archive in this machine's apt configuration (set DEBIAN_MIRROR)"
  mkdir -p "$W/aptsrc/lists/partial" "$W/aptsrc/etc" "$W/src" "$W/out"
  cat > "$W/aptsrc/etc/src.sources" <<SRC
Types: deb-src
URIs: $mirror
Suites: bookworm
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
  # APT::Sandbox::User=root: the private lists live in a 0700 temp dir the _apt user cannot enter.
  local APTOPTS=(-o Dir::Etc::SourceList=/dev/null -o "Dir::Etc::SourceParts=$W/aptsrc/etc"
                 -o "Dir::State::Lists=$W/aptsrc/lists" -o APT::Sandbox::User=root)
  apt-get "${APTOPTS[@]}" update -qq
  # Any Debian revision of the upstream version will do (e.g. 1.1.2-1 or a later point-release upload).
  (cd "$W/src" && apt-get "${APTOPTS[@]}" source --download-only -qq "$SRC_PKG" >/dev/null)
  orig="$W/src/${SRC_PKG}_${CNI_LIB_VERSION}.orig.tar.xz"
  [ -f "$orig" ] || setup_die "expected $orig; apt fetched: $(ls "$W/src")"
  tar -C "$W/src" -xf "$orig"
  SRC="$W/src/$SRC_PKG-$CNI_LIB_VERSION"
  for b in "$@"; do
    dir=$b; [ "$b" = debug ] && dir=plugins/debug
    [ -d "$SRC/$dir" ] || setup_die "no $dir/ in $orig"
    # GOPATH mode cannot build an absolute directory path ("cannot import absolute path"): cd into it.
    (cd "$SRC/$dir" && GO111MODULE=off GOPATH=/usr/share/gocode GOPROXY=off GOFLAGS="" GOCACHE="$W/gocache" \
       CGO_ENABLED=0 go build -trimpath -o "$W/out/$b" .)
  done
  # Install only complete builds, atomically, then stamp the version.
  mkdir -p "$TOOLS/bin"
  for b in "$@"; do
    install -m 0755 "$W/out/$b" "$TOOLS/bin/.$b.new" && mv -f "$TOOLS/bin/.$b.new" "$TOOLS/bin/$b"
  done
  echo "$CNI_LIB_VERSION" > "$TOOLS/VERSION"
  tools_ok "$@" || setup_die "built tools in $TOOLS/bin do not work"
}

# --- 3. The project, in a virtualenv on Debian's interpreter -------------------------------------------------
# The plugin's console script gets an absolute shebang to $VENV/bin/python (Debian's 3.11, ~8 ms start-up;
# never the pyenv shim on PATH). The install is editable, so later source edits need no re-run; a re-run
# re-installs only when pyproject.toml changed or the console script is missing/broken. The test set-up
# installs the `test` extras (stamp .cni-logger-installed); the demo's needs only the project
# (.cni-logger-installed-base) and reuses either.
venv_ok() {
  local want stamp
  want=$(sha256sum "$ROOT/pyproject.toml" | cut -d' ' -f1)
  [ -x "$VENV/bin/cni-logger" ] && "$VENV/bin/python" -c 'import cni_logger.cli' 2>/dev/null || return 1
  for stamp in "$@"; do [ "$(cat "$VENV/$stamp" 2>/dev/null)" = "$want" ] && return 0; done
  return 1
}

# setup_venv EXTRAS: EXTRAS is "test" or "" (the project alone).
setup_venv() {
  local extras=$1 spec=$ROOT stamp=.cni-logger-installed-base piplog
  if [ -n "$extras" ]; then spec="${ROOT}[$extras]"; stamp=.cni-logger-installed; fi
  if [ "${SKIP_VENV:-0}" = 1 ]; then
    setup_log "SKIP_VENV=1: not touching $VENV"
    return 0
  fi
  piplog=$(mktemp /tmp/cni-logger-pip.XXXXXX); SETUP_WORKDIRS+=("$piplog")
  if [ ! -x "$VENV/bin/python" ]; then
    setup_log "creating $VENV on /usr/bin/python3"
    /usr/bin/python3 -m venv "$VENV"
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip >"$piplog" 2>&1 \
      || { cat "$piplog" >&2; setup_die "pip install --upgrade pip failed (output above)"; }
  fi
  if { [ -n "$extras" ] && venv_ok .cni-logger-installed; } \
     || { [ -z "$extras" ] && venv_ok .cni-logger-installed .cni-logger-installed-base; }; then
    setup_log "reusing $VENV (project already installed, editable)"
  else
    setup_log "pip install -e $spec into $VENV"
    rm -f "$VENV/$stamp"
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check -e "$spec" >"$piplog" 2>&1 \
      || { cat "$piplog" >&2; setup_die "pip install -e $spec failed (output above)"; }
    sha256sum "$ROOT/pyproject.toml" | cut -d' ' -f1 > "$VENV/$stamp"
  fi
  if "$VENV/bin/python" -c 'import cni_logger.cli' 2>/dev/null; then
    setup_log "ready: $VENV/bin/cni-logger, $(printf "$TOOLS/bin/%s " "${SETUP_TOOLS[@]}")"
  else
    setup_log "WARNING: $VENV/bin/cni-logger is installed but 'import cni_logger.cli' fails (package unfinished?)"
  fi
}

# --- 4. The thick-mode shim, beside the virtualenv's interpreter --------------------------------------------------
# <venv>/libexec/cni-logger-shim, where `cni-logger install --agent` looks for it (cni_logger.install.shim.shim_path),
# built with this machine's cc by scripts/build-shim.sh whenever it is missing or its source (or the build script)
# changed since: the project is installed editable, so a source edit reaches Python at once, and this keeps the
# C side as current. The stamp beside it holds the hash it was built from.
shim_key() { cat "$ROOT/shim/cni-logger-shim.c" "$ROOT/scripts/build-shim.sh" | sha256sum | cut -d' ' -f1; }

setup_shim() {
  local shim=$VENV/libexec/cni-logger-shim stamp=$VENV/libexec/.cni-logger-shim.sha256
  if [ "${SKIP_VENV:-0}" = 1 ]; then return 0; fi
  if [ -x "$shim" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$(shim_key)" ]; then
    setup_log "reusing $shim"
    return 0
  fi
  rm -f "$stamp"
  bash "$ROOT/scripts/build-shim.sh" --out "$shim" || setup_die "scripts/build-shim.sh --out $shim failed (output above)"
  shim_key > "$stamp"
}

# setup_main demo|test [--plan]: --plan prints, for every package, whether it would be installed, is present
# or is left out (and why), then the tools and the virtualenv steps; it needs no root and changes nothing.
setup_main() {
  local mode=$1 plan=0 extras=""
  shift
  case ${1:-} in
    --plan) plan=1 ;;
    "") ;;
    *) setup_die "usage: $0 [--plan]" ;;
  esac
  SETUP_TOOLS=(cnitool)
  if [ "$mode" = test ]; then SETUP_TOOLS+=(debug); extras="test"; fi
  if ! command -v apt-get >/dev/null || ! command -v dpkg-query >/dev/null; then
    setup_die "needs a Debian-based system (apt)"
  fi
  if [ "$plan" = 1 ]; then
    setup_plan "$mode"
    if [ "${FORCE_BUILD:-0}" != 1 ] && tools_ok "${SETUP_TOOLS[@]}"; then
      printf 'tools reuse %s\n' "${SETUP_TOOLS[*]}"
    else
      printf 'tools build %s\n' "${SETUP_TOOLS[*]}"
    fi
    if [ "${SKIP_VENV:-0}" = 1 ]; then printf 'venv skip\n'
    else printf 'venv %s -e %s\n' "$VENV" "${ROOT}${extras:+[$extras]}"; fi
    if [ "$mode" = test ] && [ "${SKIP_VENV:-0}" != 1 ]; then printf 'shim %s/libexec/cni-logger-shim\n' "$VENV"; fi
    return 0
  fi
  [ "$(id -u)" = 0 ] || setup_die "$(basename "$0") must run as root (network namespaces, apt)"
  SETUP_WORKDIRS=()
  trap 'for d in "${SETUP_WORKDIRS[@]}"; do rm -rf -- "$d"; done' EXIT
  setup_apt "$mode"
  setup_tools "${SETUP_TOOLS[@]}"
  setup_venv "$extras"
  if [ "$mode" = test ]; then setup_shim; fi
}
