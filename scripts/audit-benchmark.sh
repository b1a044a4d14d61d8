#!/usr/bin/env bash
# The audit benchmark: scripts/audit-benchmark.py with the project's virtualenv, setting the machine up first
# (scripts/setup-system.sh) when that virtualenv is missing. Arguments go to audit-benchmark.py, e.g.
# `scripts/audit-benchmark.sh --size 2G --runs 5`. Needs ~1.3x --size of free space in $TMPDIR (or --dir).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
VENV=${CNI_LOGGER_VENV:-$ROOT/.venv}
[ -x "$VENV/bin/cni-logger" ] || bash "$ROOT/scripts/setup-system.sh"
exec "$VENV/bin/python" "$ROOT/scripts/audit-benchmark.py" --cli "$VENV/bin/cni-logger" "$@"
