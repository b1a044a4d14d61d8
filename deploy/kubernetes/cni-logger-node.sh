#!/bin/sh
# Entry point of the cni-logger DaemonSet container (image: deploy/Containerfile, built by scripts/build-image.sh;
# see deploy/kubernetes/README.md).
#
# The plugin runs on the HOST: the container runtime execs <bin dir>/logger in the host's mount
# namespace, so the interpreter the launcher names must exist on the host, not only in this image.
# The image carries the relocatable bundle (scripts/build-bundle.sh: our own CPython + the project,
# needing only glibc >= 2.31 on the host). The pod mounts only the host directories this script and the
# watcher read or write, each at its own host path (HOST_ROOT is then /: a path means the same inside and
# out, so the launcher and the install journal name host paths), never the host's root:
#
#   1. checks the folder $INSTALL_DIR/<build id> against the bundle's manifest (MANIFEST.sha256, written by
#      scripts/bundle/assemble.sh: every file with its sha256; BUILD_ID is the start of the manifest's own
#      hash) and reuses it only when every file is there with its exact content and nothing else is. Otherwise
#      (first start, or a folder damaged by power loss after an unsynced unpack, a deleted module, a zeroed
#      block) it unpacks the bundle beside it, syncs it to disk, checks the copy against the manifest and
#      renames it into place: the damaged folder is renamed aside first and removed after (the launcher may
#      name it; the swap leaves no moment with a half-copied folder under the build id);
#   2. checks that the interpreter is an ELF executable and that, run as the runtime will run it, the plugin
#      answers VERSION: chrooted into $CHECK_ROOT, which holds the host's loader and libraries (its /usr, /lib
#      and /lib64, read-only) and the install dir (at $CHECK_INSTALL_DIR: the bundle is relocatable), so the
#      host's glibc runs it, not the image's. (chroot execs through execvp, which runs a file the kernel refuses with ENOEXEC, an empty one
#      included, with /bin/sh: that "succeeds" without Python.)
#   3. removes the folders of older builds that the current launcher no longer names;
#   4. execs `cni-logger install --watch` with the bundle's own interpreter (in this container, on the image's
#      glibc; chrooted into HOST_ROOT when that is not /): the launcher it writes starts
#      $INSTALL_DIR/<build id>/bin/python3.11 -IS (no host Python, no shell). Python is then PID 1 and gets the
#      SIGTERM the kubelet sends (it uninstalls the entry on exit); its exit status is the container's.
#
# Every failure before the watcher runs (no bundle, a bundle without a valid manifest, an unpack that does not
# match it, an interpreter that does not run on this host, a failed chroot) exits non-zero with a message:
# never 0, which would leave a CrashLoop-free pod with the entry it wrote earlier still in the chain.
#
# Settings (environment): HOST_ROOT (/: where the host's paths are in this container; a test playing a node in a
# directory sets it), CHECK_ROOT (HOST_ROOT; the image sets /host), CHECK_INSTALL_DIR (INSTALL_DIR; where the
# check root shows the install dir: the image sets /cni-logger), INSTALL_DIR (/opt/cni-logger, a host path),
# CNI_BIN_DIR (/opt/cni/bin, a host path), BUNDLE (the bundle tarball in the image; default: the one in /bundle).
# Arguments are passed on to `cni-logger install --watch`.
set -eu

HOST_ROOT=${HOST_ROOT:-/}
CHECK_ROOT=${CHECK_ROOT:-$HOST_ROOT}
INSTALL_DIR=${INSTALL_DIR:-/opt/cni-logger}
CNI_BIN_DIR=${CNI_BIN_DIR:-/opt/cni/bin}
if [ -z "${BUNDLE:-}" ]; then
    for BUNDLE in /bundle/cni-logger-*.tar.gz; do break; done
fi
prefix=${HOST_ROOT%/}            # host path P is "$prefix$P" from here ("" when HOST_ROOT is /)
PY=python3.11

MANIFEST=MANIFEST.sha256

# The pod's log is JSON lines, as the watcher's (cni_logger/install/watchlog.py): kubectl logs and the shippers
# read a time, a level and the message on each. json_text: $1 as the inside of a JSON string (control characters
# dropped, tabs and newlines as blanks, backslashes and quotes escaped).
json_text() { printf '%s' "$1" | tr -d '\000-\010\013-\037' | tr '\n\t' '  ' | sed 's/\\/\\\\/g; s/"/\\"/g'; }
log() {
    printf '{"@timestamp":"%s","log.level":"%s","message":"%s","log":{"logger":"cni-logger-node"},"process":{"pid":%s}}\n' \
        "$(date -u +%Y-%m-%dT%H:%M:%S.%3NZ)" "$1" "$(json_text "$2")" "$$" >&2
}
say() { log info "$*"; }
warn() { log warning "$*"; }
die() { log error "$*"; exit 1; }
oneline() { head -n 3 | tr '\n' ' ' | sed 's/ *$//' | grep .; }     # up to 3 lines of stdin, or fails if none

[ -f "$BUNDLE" ] || die "no bundle at '$BUNDLE'"
[ -d "$HOST_ROOT" ] || die "no host root at '$HOST_ROOT'"
[ -d "$CHECK_ROOT" ] || die "no check root at '$CHECK_ROOT' (the host's /usr, /lib, /lib64 and install dir, mounted there)"
build_id=$(tar -xzOf "$BUNDLE" --wildcards '*/BUILD_ID') || die "cannot read BUILD_ID from $BUNDLE"
case $build_id in
    *[!0-9a-f]* | "") die "the bundle $BUNDLE has no valid BUILD_ID" ;;
esac
manifest_id=$(tar -xzOf "$BUNDLE" --wildcards "*/$MANIFEST" 2>/dev/null | sha256sum | cut -c1-16)
[ "$manifest_id" = "$build_id" ] || die "the bundle $BUNDLE has no $MANIFEST that matches its BUILD_ID"
dir="$INSTALL_DIR/$build_id"
check_dir="${CHECK_INSTALL_DIR:-$INSTALL_DIR}/$build_id"     # the same folder, as the check root shows it

# intact FOLDER (a path here): FOLDER holds exactly this build (its BUILD_ID; the bundle's manifest, known by
# its hash; every file the manifest lists, with its sha256, and no other; an executable interpreter).
# Otherwise sets $why.
intact() {
    if [ ! -d "$1" ] || [ -L "$1" ]; then why="it does not exist"; return 1; fi
    if [ "$(cat "$1/BUILD_ID" 2>/dev/null)" != "$build_id" ]; then why="its BUILD_ID is missing or wrong"; return 1; fi
    if [ "$(sha256sum <"$1/$MANIFEST" 2>/dev/null | cut -c1-16)" != "$build_id" ]; then
        why="its $MANIFEST is missing or damaged"; return 1
    fi
    listed=$(sed 's/^[0-9a-f]\{64\}  //' "$1/$MANIFEST")
    found=$(cd "$1" && find . -xtype f ! -path "./$MANIFEST" ! -path ./BUILD_ID | LC_ALL=C sort)
    if [ "$listed" != "$found" ]; then
        why="its files are not the manifest's:"
        missing=$(printf '%s\n' "$listed" | grep -vxF -e "$found" | oneline) && why="$why missing $missing;"
        added=$(printf '%s\n' "$found" | grep -vxF -e "$listed" | oneline) && why="$why added $added;"
        why=${why%;}
        return 1
    fi
    if ! failed=$(cd "$1" && sha256sum -c --quiet --strict "$MANIFEST" 2>&1); then
        why="files differ from the build: $(printf '%s\n' "$failed" | oneline)"
        return 1
    fi
    if [ ! -x "$1/bin/$PY" ]; then why="bin/$PY is not executable"; return 1; fi
}

# unpack: the bundle, unpacked beside $dir, synced to disk and checked against the manifest, takes $dir's place.
unpack() {
    tmp="$prefix$INSTALL_DIR/.unpack-$build_id"
    old="$prefix$INSTALL_DIR/.old-$build_id"
    rm -rf "$tmp" "$old"
    mkdir "$tmp"
    tar -C "$tmp" -xzf "$BUNDLE" --no-same-owner || die "cannot unpack $BUNDLE into ${tmp#"$prefix"} (disk full?)"
    for new in "$tmp"/cni-logger-*/; do break; done
    new=${new%/}
    [ -d "$new" ] || die "the bundle $BUNDLE holds no cni-logger-* folder"
    sync -f "$new" || die "cannot sync ${new#"$prefix"} to disk"
    intact "$new" || die "the bundle unpacked into ${new#"$prefix"} does not match its manifest ($why)"
    if [ -e "$prefix$dir" ] || [ -L "$prefix$dir" ]; then
        mv -T "$prefix$dir" "$old"                       # renames only: a pod mid-ADD keeps its open files
    fi
    mv -T "$new" "$prefix$dir"
    sync -f "$prefix$dir" || die "cannot sync $dir to disk"
    rm -rf "$old" "$tmp"
}

# in_root ROOT COMMAND...: COMMAND chrooted into ROOT (run as it is when ROOT is /: no CAP_SYS_CHROOT needed).
in_root() {
    if [ "$1" = / ]; then shift; "$@"; else chroot "$@"; fi
}

# runs: the interpreter is an ELF executable and the plugin, run by it as the runtime will run it, answers
# VERSION. (The magic first: an exec that fails with ENOEXEC falls back to /bin/sh, which runs an empty file
# and exits 0; the plugin's own answer then rules out any other stand-in.) Otherwise sets $why.
runs() {
    magic=$(od -An -N4 -tx1 "$prefix$dir/bin/$PY" 2>/dev/null | tr -d ' \n')
    if [ "$magic" != 7f454c46 ]; then why="$dir/bin/$PY is not an ELF executable"; return 1; fi
    if [ "$(cat "${CHECK_ROOT%/}$check_dir/BUILD_ID" 2>/dev/null)" != "$build_id" ]; then
        why="the check root $CHECK_ROOT does not show $dir at $check_dir (mount the install dir's hostPath there)"
        return 1
    fi
    if answer=$(printf '{"cniVersion":"1.0.0"}' | CNI_COMMAND=VERSION \
            in_root "$CHECK_ROOT" "$check_dir/bin/$PY" -I -c 'from cni_logger.cli import main; main()' 2>&1); then
        case $answer in *'"supportedVersions":['*) return 0 ;; esac
    fi
    why="the plugin's VERSION answered: $(printf '%s\n' "$answer" | tail -n 3 | oneline)"
    return 1
}

mkdir -p "$prefix$INSTALL_DIR"
if ! intact "$prefix$dir"; then
    if [ "$why" = "it does not exist" ]; then
        say "installing the bundle into $dir"
    else
        warn "$dir is damaged ($why): unpacking the bundle anew"
    fi
    unpack
fi
if ! runs; then
    die "the bundle's interpreter does not run on this host (it needs glibc >= 2.31; musl is not supported): $why"
fi

# A folder is in use while the current launcher names it (a pod may be mid-ADD on it) until install rewrites
# the launcher. The launcher names it on its "#!" line or, for a path the kernel cannot take there (blanks,
# quotes, length), in a /bin/sh exec preamble, quoted: either way its name (a build id or venv-<id>: no blanks,
# no quotes) is in the text as ".../<name>/bin/python". Older layouts (venv-<id> on the host's Python) alike.
launcher="$prefix$CNI_BIN_DIR/logger"
for old in "$prefix$INSTALL_DIR"/* "$prefix$INSTALL_DIR"/.unpack-* "$prefix$INSTALL_DIR"/.old-*; do
    [ -d "$old" ] || continue
    path=${old#"$prefix"}
    name=${path##*/}
    case $name in
        venv-* | .unpack-* | .old-* | [0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f]*) ;;
        *) continue ;;                                      # not ours: leave it
    esac
    [ "$path" != "$dir" ] || continue
    if [ -f "$launcher" ] && grep -qF "/$name/bin/python" "$launcher"; then
        continue
    fi
    say "removing $path (an older build, not in use)"
    rm -rf "$old"
done

if [ "$HOST_ROOT" = / ]; then
    exec "$dir/bin/$PY" -I -c 'from cni_logger.cli import main; main()' install --watch --bin-dir "$CNI_BIN_DIR" "$@"
fi
exec chroot "$HOST_ROOT" "$dir/bin/$PY" -I -c 'from cni_logger.cli import main; main()' \
    install --watch --bin-dir "$CNI_BIN_DIR" "$@"
