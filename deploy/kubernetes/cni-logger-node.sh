#!/bin/sh
# Entry point of the cni-logger DaemonSet container (image: deploy/Dockerfile; see deploy/kubernetes/README.md).
#
# The plugin runs on the HOST: the container runtime execs <bin dir>/logger in the host's mount
# namespace, so the interpreter the launcher names must exist on the host, not only in this image.
# This script therefore works inside the host's root filesystem (mounted read-only at $HOST_ROOT, with
# the few directories it writes mounted read-write on top) through chroot:
#
#   1. checks that the host has Python >= 3.11 ($HOST_PYTHON);
#   2. creates $INSTALL_DIR/venv-<build id> with that interpreter (venv --without-pip: Debian's python3
#      lacks ensurepip unless python3-venv is installed) and installs the pure-Python wheels shipped in
#      this image into it, running pip from its own wheel with the HOST's interpreter, so the files are
#      byte-compiled for that interpreter and the console script names the venv's python;
#   3. removes venvs of older builds that the current launcher no longer names;
#   4. execs `cni-logger install --watch` inside the host root: the launcher it writes names
#      /opt/cni-logger/venv-<id>/bin/python, and every path it reads, writes and journals is a host path.
#      Python is then PID 1 and gets the SIGTERM the kubelet sends (it uninstalls the entry on exit).
#
# Settings (environment): HOST_ROOT (/host), HOST_PYTHON (/usr/bin/python3), INSTALL_DIR
# (/opt/cni-logger, a host path), CNI_BIN_DIR (/opt/cni/bin, a host path), WHEELS (/wheels, in the image).
# Arguments are passed on to `cni-logger install --watch`.
set -eu

HOST_ROOT=${HOST_ROOT:-/host}
HOST_PYTHON=${HOST_PYTHON:-/usr/bin/python3}
INSTALL_DIR=${INSTALL_DIR:-/opt/cni-logger}
CNI_BIN_DIR=${CNI_BIN_DIR:-/opt/cni/bin}
WHEELS=${WHEELS:-/wheels}
prefix=${HOST_ROOT%/}            # host path P is "$prefix$P" from here ("" when HOST_ROOT is /)

say() { printf 'cni-logger-node: %s\n' "$*" >&2; }
on_host() { chroot "$HOST_ROOT" "$@"; }

build_id=$(cat "$WHEELS/BUILD_ID")
venv="$INSTALL_DIR/venv-$build_id"

if ! on_host "$HOST_PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    say "no Python >= 3.11 at $HOST_PYTHON on the host. The plugin runs on the host and needs one there:"
    say "install python3 (3.11 or later) on the node, or set HOST_PYTHON to one (see deploy/kubernetes/README.md)."
    exit 1
fi

if [ ! -e "$prefix$venv/.complete" ]; then
    say "creating $venv with the host's $HOST_PYTHON"
    rm -rf "$prefix$venv"
    on_host "$HOST_PYTHON" -m venv --without-pip "$venv"
    mkdir -p "$prefix$venv/.wheels" "$prefix$venv/.tmp"
    cp "$WHEELS"/*.whl "$prefix$venv/.wheels/"
    pip_wheel=$(cd "$prefix$venv/.wheels" && ls pip-*.whl)
    on_host env TMPDIR="$venv/.tmp" PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
        "$venv/bin/python" "$venv/.wheels/$pip_wheel/pip" install --quiet --no-index \
        --find-links "$venv/.wheels" cni-logger
    rm -rf "$prefix$venv/.wheels" "$prefix$venv/.tmp"
    touch "$prefix$venv/.complete"      # last: a venv without it is rebuilt
fi

# The launcher's first line is "#!<venv>/bin/python -IS": that venv is in use until install rewrites it.
in_use=$(sed -n '1s|^#!\(.*\)/bin/python[0-9.]* -IS$|\1|p' "$prefix$CNI_BIN_DIR/logger" 2>/dev/null || true)
for dir in "$prefix$INSTALL_DIR"/venv-*; do
    [ -d "$dir" ] || continue
    path=${dir#"$prefix"}
    if [ "$path" != "$venv" ] && [ "$path" != "$in_use" ]; then
        say "removing $path (an older build, not in use)"
        rm -rf "$dir"
    fi
done

exec chroot "$HOST_ROOT" "$venv/bin/cni-logger" install --watch --bin-dir "$CNI_BIN_DIR" "$@"
