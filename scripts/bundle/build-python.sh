#!/usr/bin/env bash
# Builds the CPython of the relocatable bundle, inside a Debian 11 (bullseye, glibc 2.31) environment:
# the chroot that scripts/build-bundle.sh makes, or the `debian:bullseye` stage of deploy/Dockerfile.
# Whatever it links against sets the bundle's glibc floor, so it must run on the oldest glibc supported.
#
#   build-python.sh SOURCE_TARBALL PREFIX [o3|pgo-lto]
#
# SOURCE_TARBALL is the upstream tarball of Debian's source package (python3.11_3.11.2.orig.tar.gz);
# PREFIX (created, must not exist) receives the trimmed, stripped installation. The folder is relocatable:
# CPython finds its prefix from the executable's location (landmark lib/python3.11/os.py), and the
# executable holds libpython and zlib statically, so every ELF in it needs only glibc's own libraries.
#
#   o3       -O3 (configure's default), ~3 min on 2 cores
#   pgo-lto  --enable-optimizations --with-lto, profiled on a plugin-shaped task (profile-task.py beside
#            this script: interpreter start-up and the stdlib imports of the plugin and operator commands)
set -euo pipefail

SRC_TARBALL=$1
PREFIX=$2
OPT=${3:-pgo-lto}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
JOBS=${JOBS:-$(nproc)}

log() { printf '[build-python] %s\n' "$*" >&2; }
die() { printf '[build-python] ERROR: %s\n' "$*" >&2; exit 1; }

case $OPT in o3 | pgo-lto) ;; *) die "unknown optimisation '$OPT' (o3 or pgo-lto)" ;; esac
[ -f "$SRC_TARBALL" ] || die "no source tarball $SRC_TARBALL"
[ ! -e "$PREFIX" ] || die "$PREFIX exists; give a fresh directory"
. /etc/os-release
[ "${VERSION_CODENAME:-}" = bullseye ] || log "WARNING: not Debian 11 (${PRETTY_NAME:-?}): the glibc floor follows this system's"

# Only a compiler and zlib: every optional module whose library is absent (ssl, ctypes/libffi, bz2, lzma,
# sqlite, readline, curses, dbm, tkinter, uuid) is simply not built, and so needs nothing on the node.
BUILD_DEPS=(build-essential zlib1g-dev xz-utils)
missing=()
for p in "${BUILD_DEPS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  log "apt-get install ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

W=$(mktemp -d /tmp/build-python.XXXXXX)
trap 'rm -rf -- "$W"' EXIT
tar -C "$W" -xf "$SRC_TARBALL"
set -- "$W"/Python-*/
[ -d "$1" ] || die "no Python-*/ directory in $SRC_TARBALL"
cd "$1"

# zlib (gzip of rotated audit files; imported by zipfile/shutil users) and binascii (its crc32) are linked
# into the interpreter itself with zlib's static library: bullseye's libz.a is built for executables
# (-fPIE, not -fPIC), so it cannot go into a shared extension module, and the node need not have libz.
# Disabled: _crypt and nis would need libcrypt.so.1 / libnsl.so.2, which are not glibc's on every
# distribution (libc6-dev pulls their headers in, so they would otherwise be built); _ctypes would need
# libffi.so.7 (Debian 12 has .so.8); the rest is unused here (example modules, sound, shadow passwords).
# The extension modules the plugin's ADD path loads (and a few other small, common ones) are built into
# the interpreter too: each shared one costs a dlopen (~0.1 ms) on every invocation.
cat > Modules/Setup.local <<'SETUP'
*static*
zlib zlibmodule.c -l:libz.a
binascii binascii.c -DUSE_ZLIB_CRC32 -l:libz.a
_json _json.c
_socket socketmodule.c
_typing _typingmodule.c
fcntl fcntlmodule.c
select selectmodule.c
math mathmodule.c
_struct _struct.c
_datetime _datetimemodule.c
_heapq _heapqmodule.c
_bisect _bisectmodule.c
_random _randommodule.c
_opcode _opcode.c
_contextvars _contextvarsmodule.c
_posixsubprocess _posixsubprocess.c

*disabled*
_crypt
nis
_ctypes
xxlimited
xxlimited_35
_xxsubinterpreters
audioop
ossaudiodev
spwd
SETUP

conf=(--prefix=/opt/cni-logger-python --without-ensurepip --disable-test-modules --disable-shared
      --with-system-expat=no --with-system-libmpdec=no)
make_args=()
if [ "$OPT" = pgo-lto ]; then
  conf+=(--enable-optimizations --with-lto)
  # The default PROFILE_TASK runs most of the regression suite (~15 min here); the plugin's hot path is
  # interpreter start-up plus the imports and JSON/logging work of one invocation, which this covers.
  cp "$HERE/profile-task.py" "$W/profile-task.py"
  make_args+=("PROFILE_TASK=$W/profile-task.py")
fi
log "configure ${conf[*]}"
./configure -q "${conf[@]}" >"$W/configure.log" 2>&1 || { tail -50 "$W/configure.log" >&2; die configure; }
log "make -j$JOBS ($OPT)"
make -j"$JOBS" "${make_args[@]}" >"$W/make.log" 2>&1 || { tail -80 "$W/make.log" >&2; die make; }
grep -A3 -E 'Python build finished|Failed to build these modules|Following modules built successfully' \
  "$W/make.log" | grep -vE '^\s*$' | sed 's/^/[build-python]   /' >&2 || true
stage="$W/stage"
make install DESTDIR="$stage" >"$W/install.log" 2>&1 || { tail -50 "$W/install.log" >&2; die "make install"; }
inst="$stage/opt/cni-logger-python"
lib="$inst/lib/python3.11"
[ -f "$lib/os.py" ] || die "no $lib/os.py after make install"

# Trim what neither the plugin nor the operator commands use: the test suite, IDLE/tkinter, ensurepip's
# bundled wheels, lib2to3/distutils, the static libpython (66 MB with -g) and build configuration, headers,
# man pages, optimised .pyc variants (-O is never used), and the symbols of every ELF file.
rm -rf "$lib"/{test,idlelib,tkinter,turtledemo,ensurepip,lib2to3,distutils,pydoc_data,unittest/test} \
       "$lib"/config-3.11-* "$lib/turtle.py" "$inst"/lib/libpython3.11.a "$inst"/lib/pkgconfig \
       "$inst"/include "$inst"/share "$inst"/bin/{idle3*,pydoc3*,2to3*,python3*-config}
find "$lib" -name '*.opt-[12].pyc' -delete
find "$lib" -depth -type d -name __pycache__ -empty -delete
find "$inst" -type f \( -name '*.so' -o -path '*/bin/*' \) -exec sh -c \
  'for f; do head -c4 "$f" | grep -q ELF && strip --strip-unneeded "$f"; done' sh {} +
"$inst/bin/python3.11" -I -c 'import zlib, binascii, json, socket, fcntl, select, gzip, hashlib; print("ok")' \
  >/dev/null || die "the built interpreter cannot import what the plugin needs"
mkdir -p "$(dirname "$PREFIX")"
mv "$inst" "$PREFIX"
log "installed into $PREFIX ($(du -sh "$PREFIX" | cut -f1))"
