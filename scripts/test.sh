#!/usr/bin/env bash
# The whole test suite, from a fresh Debian machine, as root: installs what it needs
# (scripts/setup-system.sh), then lint, type checks, and pytest — unit, protocol, property-based,
# concurrency, and the real-runtime integration tests (cnitool, Podman) in throw-away namespaces, and
# the relocatable bundle's system tests (tests/system: glibc floor, relocation, contents, a Debian 11
# node without Python that installs it through the DaemonSet's entry point and runs a chain; the arm64
# bundle, cross-compiled, under qemu-user-static in an arm64 Debian 11 root).
# Extra arguments go to pytest, e.g. `scripts/test.sh --run-slow` or `scripts/test.sh tests/plugin`.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
# Some tests run the plugin as nobody (permission denied, thick mode's refused peer), through the checkout's
# virtualenv and a launcher that imports from the checkout without site processing: nobody must pass and list
# the checkout. A clone into `mktemp -d` is itself 0700: that directory is the project's own, so it is opened
# (o+rx, said on stderr); a closed directory above the checkout is the machine's, so the run stops there, naming
# it. (As another user, setpriv cannot switch, and setup-system.sh says that root is needed.)
as_nobody=(setpriv --reuid=nobody --regid=nogroup --clear-groups)
reaches() {
  "${as_nobody[@]}" test -r "$ROOT" 2>/dev/null && "${as_nobody[@]}" test -x "$ROOT" 2>/dev/null &&
    "${as_nobody[@]}" test -r "$ROOT/scripts/test.sh" 2>/dev/null
}
if [ "$(id -u)" = 0 ] && ! reaches; then
  if "${as_nobody[@]}" test -x "$(dirname "$ROOT")" 2>/dev/null; then
    echo "[test] the tests run the plugin as user nobody, who may not read the checkout $ROOT (mode" \
         "$(stat -c %a "$ROOT"), as \`mktemp -d\` makes): adding o+rx to it" >&2
    chmod o+rx "$ROOT"
  fi
  if ! reaches; then
    blocked=""
    IFS=/ read -ra parts <<<"${ROOT#/}"
    for part in "${parts[@]}"; do  # the first directory from the top that nobody may not pass
      blocked=$blocked/$part
      "${as_nobody[@]}" test -x "$blocked" 2>/dev/null || break
    done
    echo "[test] the checkout $ROOT is out of reach of user nobody ($blocked is mode $(stat -c %a "$blocked")):" \
         "the tests run the plugin as nobody. Clone into a directory others may pass (e.g. chmod o+rx $blocked)." >&2
    exit 2
  fi
fi
bash scripts/setup-system.sh
VENV=${CNI_LOGGER_VENV:-$ROOT/.venv}
echo "[test] ruff" >&2
"$VENV/bin/ruff" check cni_logger tests scripts
echo "[test] mypy" >&2
"$VENV/bin/mypy"
if [ $# -eq 0 ]; then
  # The whole suite: build the relocatable bundle first, so its progress shows (~25 min cold, seconds once
  # the interpreter is cached in /var/cache/cni-logger). With arguments, the tests that need it build it.
  echo "[test] bundle" >&2
  CNI_LOGGER_VENV="$VENV" bash scripts/build-bundle.sh >/dev/null
  echo "[test] node root" >&2   # the Debian 11 minbase root of the node test (~1.5 min cold, then cached)
  bash scripts/build-node-root.sh >/dev/null
  if [ "$(uname -m)" = x86_64 ]; then
    # The arm64 bundle, cross-compiled with the interpreter above as the build Python (~7 min cold, no PGO),
    # and the arm64 Debian 11 root it runs in under qemu-user-static (~5 min cold: the second stage emulated).
    echo "[test] arm64 bundle" >&2
    CNI_LOGGER_VENV="$VENV" bash scripts/build-bundle.sh --arch arm64 >/dev/null
    echo "[test] arm64 node root" >&2   # needs binfmt_misc; without it the arm64 root's tests skip, saying why
    bash scripts/build-node-root-arm64.sh >/dev/null || echo "[test] no arm64 node root (above)" >&2
  fi
fi
if [ $# -eq 0 ]; then
  # The protocol suite once more, the plugin being thick mode's shim with its agent (install --watch --agent):
  # every answer and event as the in-process plugin's.
  echo "[test] pytest: the protocol suite through the shim and the agent" >&2
  "$VENV/bin/python" -m pytest -p no:cacheprovider -q tests/system/protocol --plugin-from=shim
fi
echo "[test] pytest" >&2
exec "$VENV/bin/python" -m pytest -p no:cacheprovider "$@"
