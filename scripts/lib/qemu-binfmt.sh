# shellcheck shell=bash
# Sourced by scripts/build-node-root-arm64.sh (and run by tests/system/test_bundle_arm64.py): lets this
# x86_64 machine execute arm64 programs, also inside a chroot, with Debian's qemu-user-static.
#
# binfmt_aarch64: make sure the kernel hands aarch64 ELF executables to qemu-aarch64-static. An enabled
# handler that is already there (qemu-user-static's own, registered at boot by systemd-binfmt on a normal
# Debian system) is used as it is; otherwise binfmt_misc is mounted if needed and the same handler Debian
# registers is registered, with the F flag (the kernel opens qemu now, so it works in any chroot). It stays
# registered, as the package's would. Prints the handler's name; returns 1, saying why on stderr, when this
# machine cannot (no qemu-user-static, or no binfmt_misc in this container).
BINFMT_MISC=${BINFMT_MISC:-/proc/sys/fs/binfmt_misc}
QEMU_AARCH64_MAGIC='\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\xb7\x00'
QEMU_AARCH64_MASK='\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff'

binfmt_aarch64_handler() {
  local f
  for f in "$BINFMT_MISC"/*; do
    case ${f##*/} in register | status) continue ;; esac
    [ -f "$f" ] && grep -qx enabled "$f" && grep -qx 'magic 7f454c460201010000000000000000000200b700' "$f" \
      && grep -q '^flags: .*F' "$f" && { printf '%s\n' "${f##*/}"; return 0; }
  done
  return 1
}

binfmt_aarch64() {
  local qemu
  qemu=$(command -v qemu-aarch64-static) \
    || { echo "qemu-aarch64-static is not installed (apt-get install qemu-user-static)" >&2; return 1; }
  if [ ! -w "$BINFMT_MISC/register" ]; then
    mount -t binfmt_misc binfmt_misc "$BINFMT_MISC" 2>/dev/null \
      || { echo "binfmt_misc is not available here (cannot mount $BINFMT_MISC)" >&2; return 1; }
  fi
  binfmt_aarch64_handler && return 0
  printf ':qemu-aarch64:M::%s:%s:%s:F\n' "$QEMU_AARCH64_MAGIC" "$QEMU_AARCH64_MASK" "$qemu" \
    > "$BINFMT_MISC/register" 2>/dev/null \
    || { echo "cannot register qemu-aarch64 with binfmt_misc" >&2; return 1; }
  binfmt_aarch64_handler || { echo "qemu-aarch64 registered but not enabled" >&2; return 1; }
}
