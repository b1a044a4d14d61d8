#!/bin/sh
# Entry point of the cni-logger DaemonSet container (image: deploy/Dockerfile; see deploy/kubernetes/README.md).
#
# The plugin runs on the HOST: the container runtime execs <bin dir>/logger in the host's mount
# namespace, so the interpreter the launcher names must exist on the host, not only in this image.
# The image carries the relocatable bundle (scripts/build-bundle.sh: our own CPython + the project,
# needing only glibc >= 2.31 on the host), and this script works inside the host's root filesystem
# (mounted read-only at $HOST_ROOT, with the few directories it writes mounted read-write on top):
#
#   1. unpacks the bundle beside $INSTALL_DIR/<build id> and renames it into place (atomic: a launcher
#      never names a half-copied folder; an existing complete folder of the same build is reused);
#   2. removes the folders of older builds that the current launcher no longer names;
#   3. execs `cni-logger install --watch` with the bundle's own interpreter, chrooted into the host root:
#      the launcher it writes starts $INSTALL_DIR/<build id>/bin/python3.11 -IS (no host Python, no shell),
#      and every path it reads, writes and journals is a host path. Python is then PID 1 and gets the
#      SIGTERM the kubelet sends (it uninstalls the entry on exit).
#
# Settings (environment): HOST_ROOT (/host), INSTALL_DIR (/opt/cni-logger, a host path), CNI_BIN_DIR
# (/opt/cni/bin, a host path), BUNDLE (the bundle tarball in the image; default: the one in /bundle).
# Arguments are passed on to `cni-logger install --watch`.
set -eu

HOST_ROOT=${HOST_ROOT:-/host}
INSTALL_DIR=${INSTALL_DIR:-/opt/cni-logger}
CNI_BIN_DIR=${CNI_BIN_DIR:-/opt/cni/bin}
if [ -z "${BUNDLE:-}" ]; then
    for BUNDLE in /bundle/cni-logger-*.tar.gz; do break; done
fi
prefix=${HOST_ROOT%/}            # host path P is "$prefix$P" from here ("" when HOST_ROOT is /)
PY=python3.11

say() { printf 'cni-logger-node: %s\n' "$*" >&2; }

[ -f "$BUNDLE" ] || { say "no bundle at '$BUNDLE'"; exit 1; }
build_id=$(tar -xzOf "$BUNDLE" --wildcards '*/BUILD_ID')
case $build_id in
    *[!0-9a-f]* | "") say "the bundle $BUNDLE has no valid BUILD_ID"; exit 1 ;;
esac
dir="$INSTALL_DIR/$build_id"

mkdir -p "$prefix$INSTALL_DIR"
if [ ! -x "$prefix$dir/bin/$PY" ]; then
    say "installing the bundle into $dir"
    tmp="$prefix$INSTALL_DIR/.unpack-$build_id"
    rm -rf "$tmp"
    mkdir "$tmp"
    tar -C "$tmp" -xzf "$BUNDLE" --no-same-owner
    rm -rf "$prefix$dir"                                   # a folder left without its interpreter
    mv "$tmp"/cni-logger-*/ "$prefix$dir"                  # same filesystem: an atomic rename
    rmdir "$tmp"
fi
if ! chroot "$HOST_ROOT" "$dir/bin/$PY" -I -c pass; then
    say "the bundle's interpreter does not run on this host (it needs glibc >= 2.31; musl is not supported)"
    exit 1
fi

# The launcher's first line is "#!<folder>/bin/python3.11 -IS": that folder is in use until install rewrites
# it (a pod may be mid-ADD on it). Older layouts (venv-<id> on the host's Python) are cleaned up alike.
in_use=$(sed -n "1s|^#!\(.*\)/bin/python[0-9.]* -IS\$|\1|p" "$prefix$CNI_BIN_DIR/logger" 2>/dev/null || true)
for old in "$prefix$INSTALL_DIR"/* "$prefix$INSTALL_DIR"/.unpack-*; do
    [ -d "$old" ] || continue
    path=${old#"$prefix"}
    case ${path##*/} in
        venv-* | .unpack-* | [0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f]*) ;;
        *) continue ;;                                      # not ours: leave it
    esac
    if [ "$path" != "$dir" ] && [ "$path" != "$in_use" ]; then
        say "removing $path (an older build, not in use)"
        rm -rf "$old"
    fi
done

exec chroot "$HOST_ROOT" "$dir/bin/$PY" -I -c 'from cni_logger.cli import main; main()' \
    install --watch --bin-dir "$CNI_BIN_DIR" "$@"
