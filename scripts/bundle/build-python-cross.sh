#!/usr/bin/env bash
# Cross-compiles the CPython of the arm64 (aarch64) bundle on an x86_64 Debian 11 (bullseye) system: the
# same chroot scripts/build-bundle.sh builds the x86_64 interpreter in, with Debian 11's own cross
# toolchain (gcc-aarch64-linux-gnu, libc6-dev-arm64-cross: glibc 2.31), so the arm64 bundle has the same
# glibc floor as the x86_64 one.
#
#   build-python-cross.sh SOURCE_TARBALL PREFIX BUILD_PYTHON
#
# SOURCE_TARBALL and PREFIX as for build-python.sh. BUILD_PYTHON is a python3.11 that runs here (the
# x86_64 bundle's interpreter: same source, same version, which a cross build of CPython requires for
# freezing modules, setup.py and byte-compiling the standard library).
#
# The configuration is build-python.sh's: the same modules built into the interpreter (its
# Modules/Setup.local, read from that script so the two cannot drift apart), the same ones disabled, the
# same trimming. Only -O3: no PGO (the profile would have to run on arm64) and no LTO (without a profile it
# costs build time for little; see README.md, "The bundle").
set -euo pipefail

SRC_TARBALL=$1
PREFIX=$2
BUILD_PYTHON=$3
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
JOBS=${JOBS:-$(nproc)}
HOST=aarch64-linux-gnu
DEB_HOST_ARCH=arm64

log() { printf '[build-python-cross] %s\n' "$*" >&2; }
die() { printf '[build-python-cross] ERROR: %s\n' "$*" >&2; exit 1; }

[ -f "$SRC_TARBALL" ] || die "no source tarball $SRC_TARBALL"
[ ! -e "$PREFIX" ] || die "$PREFIX exists; give a fresh directory"
[ -f "$HERE/build-python.sh" ] || die "build-python.sh must sit beside this script (its Setup.local is shared)"
"$BUILD_PYTHON" -c 'import sys; assert sys.version_info[:2] == (3, 11)' \
  || die "the build Python $BUILD_PYTHON is not a working python3.11"
. /etc/os-release
[ "${VERSION_CODENAME:-}" = bullseye ] || log "WARNING: not Debian 11 (${PRETTY_NAME:-?}): the glibc floor follows this system's cross libc"

# The cross compiler and glibc 2.31 for arm64 (Debian's -cross packages live under /usr/aarch64-linux-gnu and
# need no foreign architecture), and native make/xz for the build itself.
BUILD_DEPS=(build-essential xz-utils gcc-aarch64-linux-gnu libc6-dev-arm64-cross binutils-aarch64-linux-gnu)
missing=()
for p in "${BUILD_DEPS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p")
done
export DEBIAN_FRONTEND=noninteractive
# zlib as the x86_64 build has it: Debian 11's zlib1g-dev (with Debian's security fixes), here the arm64 one.
# It is only unpacked into a private directory (apt-get download + dpkg-deb -x), not installed: installing
# it would pull a second, multiarch arm64 libc6-dev into the root beside the cross one.
update=0
if ! grep -qx "$DEB_HOST_ARCH" /var/lib/dpkg/arch 2>/dev/null; then
  log "dpkg --add-architecture $DEB_HOST_ARCH"
  dpkg --add-architecture "$DEB_HOST_ARCH"
  update=1
fi
# The root is shared by every build (x86_64 and arm64, any checkout): wait for another one's apt, not fail.
APT=(apt-get -o DPkg::Lock::Timeout=600)
if [ ${#missing[@]} -gt 0 ] || [ $update = 1 ]; then
  log "apt-get install ${missing[*]}"
  "${APT[@]}" update -qq
  [ ${#missing[@]} -eq 0 ] || "${APT[@]}" install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

W=$(mktemp -d /tmp/build-python-cross.XXXXXX)
trap 'rm -rf -- "$W"' EXIT
mkdir -p "$W/debs" "$W/sysroot"
(cd "$W/debs" && { "${APT[@]}" download -qq "zlib1g-dev:$DEB_HOST_ARCH" 2>/dev/null \
                   || { "${APT[@]}" update -qq && "${APT[@]}" download -qq "zlib1g-dev:$DEB_HOST_ARCH"; }; }) \
  || die "apt-get download zlib1g-dev:$DEB_HOST_ARCH failed"
dpkg-deb -x "$W"/debs/zlib1g-dev_*_"$DEB_HOST_ARCH".deb "$W/sysroot"
ZLIB_INC="$W/sysroot/usr/include"
ZLIB_LIB="$W/sysroot/usr/lib/$HOST"
{ [ -f "$ZLIB_LIB/libz.a" ] && [ -f "$ZLIB_INC/zlib.h" ]; } || die "no libz.a / zlib.h in zlib1g-dev:$DEB_HOST_ARCH"
log "zlib: $(basename "$W"/debs/zlib1g-dev_*.deb)"

tar -C "$W" -xf "$SRC_TARBALL"
set -- "$W"/Python-*/
[ -d "$1" ] || die "no Python-*/ directory in $SRC_TARBALL"
cd "$1"

# build-python.sh's Modules/Setup.local, verbatim (the text between its `<<'SETUP'` and `SETUP` lines).
sed -n "/^cat > Modules\/Setup.local <<'SETUP'\$/,/^SETUP\$/p" "$HERE/build-python.sh" | sed '1d;$d' > Modules/Setup.local
grep -q '^zlib zlibmodule.c' Modules/Setup.local || die "could not read Modules/Setup.local from build-python.sh"

# What configure cannot find out without running arm64 code: Linux has /dev/ptmx and no /dev/ptc, and
# glibc's getaddrinfo is not the buggy one configure assumes when it cannot test it.
cat > "$W/config.site" <<'SITE'
ac_cv_file__dev_ptmx=yes
ac_cv_file__dev_ptc=no
ac_cv_buggy_getaddrinfo=no
SITE

conf=(--host="$HOST" --build=x86_64-linux-gnu --with-build-python="$BUILD_PYTHON"
      --prefix=/opt/cni-logger-python --without-ensurepip --disable-test-modules --disable-shared
      --with-system-expat=no --with-system-libmpdec=no)
log "configure ${conf[*]}"
CONFIG_SITE="$W/config.site" CPPFLAGS="-I$ZLIB_INC" LDFLAGS="-L$ZLIB_LIB" \
  ./configure -q "${conf[@]}" >"$W/configure.log" 2>&1 || { tail -50 "$W/configure.log" >&2; die configure; }
log "make -j$JOBS (o3, cross)"
make -j"$JOBS" >"$W/make.log" 2>&1 || { tail -80 "$W/make.log" >&2; die make; }
grep -A3 -E 'Python build finished|Failed to build these modules|Following modules built successfully' \
  "$W/make.log" | grep -vE '^\s*$' | sed 's/^/[build-python-cross]   /' >&2 || true
stage="$W/stage"
make install DESTDIR="$stage" >"$W/install.log" 2>&1 || { tail -50 "$W/install.log" >&2; die "make install"; }
inst="$stage/opt/cni-logger-python"
lib="$inst/lib/python3.11"
[ -f "$lib/os.py" ] || die "no $lib/os.py after make install"

# The same trimming as build-python.sh, with the cross binutils' strip.
rm -rf "$lib"/{test,idlelib,tkinter,turtledemo,ensurepip,lib2to3,distutils,pydoc_data,unittest/test} \
       "$lib"/config-3.11-* "$lib/turtle.py" "$inst"/lib/libpython3.11.a "$inst"/lib/pkgconfig \
       "$inst"/include "$inst"/share "$inst"/bin/{idle3*,pydoc3*,2to3*,python3*-config}
find "$lib" -name '*.opt-[12].pyc' -delete
find "$lib" -depth -type d -name __pycache__ -empty -delete
find "$inst" -type f \( -name '*.so' -o -path '*/bin/*' \) -exec sh -c \
  'for f; do head -c4 "$f" | grep -q ELF && "$0" --strip-unneeded "$f"; done' "$HOST-strip" {} +
# It cannot run here; check it is what it must be: an aarch64 executable, its standard library in place.
"$HOST-readelf" -h "$inst/bin/python3.11" | grep -q 'Machine:.*AArch64' || die "bin/python3.11 is not an AArch64 executable"
[ -f "$lib/lib-dynload/_sysconfigdata__linux_$HOST.py" ] || [ -f "$lib/_sysconfigdata__linux_$HOST.py" ] \
  || die "no _sysconfigdata__linux_$HOST.py in the installation"
mkdir -p "$(dirname "$PREFIX")"
mv "$inst" "$PREFIX"
log "installed into $PREFIX ($(du -sh "$PREFIX" | cut -f1))"
