#!/usr/bin/env bash
# The benchmark, from a fresh Debian machine, as root. Sets the machine up (scripts/setup-system.sh),
# installs the current tree the way operators do — a normal (not editable) pip install, bytecode
# compiled, into its own virtualenv on /usr/bin/python3 — writes the plugin launcher from it, and runs
# scripts/benchmark.py against that launcher, in the same interleaved rounds as the relocatable bundle
# (scripts/build-bundle.sh, cached; unpacked to a temporary folder). Arguments go to benchmark.py
# (--runs N, --json FILE, --throughput-adds 0, --log-sizes ''). NO_BUNDLE=1 leaves the bundle out.
# BASELINE=<another checkout> (e.g. a `git worktree` of the commit before a change) installs that tree the
# same way into its own virtualenv ($CNI_LOGGER_BENCH_BASELINE_VENV, default /opt/cni-logger-bench-baseline),
# writes its launcher with its own `cni-logger launcher`, and measures it in the same rounds
# (--baseline-plugin; BASELINE_LABEL names its cases, default "before"). Thick mode is measured through the shim
# `install --watch --agent` writes, from this virtualenv and from the bundle, with the agent up and down.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
bash "$ROOT/scripts/setup-system.sh"
BENCH_VENV=${CNI_LOGGER_BENCH_VENV:-/opt/cni-logger-bench}
[ -x "$BENCH_VENV/bin/python" ] || /usr/bin/python3 -m venv "$BENCH_VENV"
"$BENCH_VENV/bin/python" -m pip install -q --disable-pip-version-check "$ROOT" >/dev/null
"$BENCH_VENV/bin/python" -m pip install -q --disable-pip-version-check --force-reinstall --no-deps "$ROOT" >/dev/null
# thick mode's shim beside the installation, where `cni-logger install --agent` takes it from
bash "$ROOT/scripts/build-shim.sh" --out "$BENCH_VENV/libexec/cni-logger-shim" >/dev/null
BIN=$(mktemp -d /tmp/cni-logger-bench-bin.XXXXXX)
trap 'rm -rf "$BIN"' EXIT
"$BENCH_VENV/bin/cni-logger" launcher "$BIN/logger" 2>/dev/null
baseline=()
if [ -n "${BASELINE:-}" ]; then
  BASE_VENV=${CNI_LOGGER_BENCH_BASELINE_VENV:-/opt/cni-logger-bench-baseline}
  [ -x "$BASE_VENV/bin/python" ] || /usr/bin/python3 -m venv "$BASE_VENV"
  "$BASE_VENV/bin/python" -m pip install -q --disable-pip-version-check "$BASELINE" >/dev/null
  "$BASE_VENV/bin/python" -m pip install -q --disable-pip-version-check --force-reinstall --no-deps "$BASELINE" >/dev/null
  "$BASE_VENV/bin/cni-logger" launcher "$BIN/baseline-logger" 2>/dev/null
  baseline=(--baseline-plugin "$BIN/baseline-logger" --baseline-label "${BASELINE_LABEL:-before}")
fi
bundle=()
if [ "${NO_BUNDLE:-0}" != 1 ]; then
  tarball=$(bash "$ROOT/scripts/build-bundle.sh" | tail -1)
  tar -C "$BIN" -xzf "$tarball"
  bundle=(--bundle "$(echo "$BIN"/cni-logger-*/)")
fi
"$ROOT/.venv/bin/python" "$ROOT/scripts/benchmark.py" --plugin "$BIN/logger" --thick-cli "$BENCH_VENV/bin/cni-logger" \
  "${bundle[@]}" "${baseline[@]}" "$@"
