#!/usr/bin/env bash
# Installs what scripts/demo.sh runs, and nothing else, on a Debian (bookworm) machine, as root:
#   Debian packages  ca-certificates python3 python3-venv iproute2 containernetworking-plugins golang-go
#                    golang-github-appc-cni-dev debian-archive-keyring xz-utils (scripts/lib/setup.sh, DEMO_PKGS)
#   cnitool          built offline from Debian's source package of the CNI library, into $CNI_LOGGER_TOOLS/bin
#   a virtualenv     on Debian's /usr/bin/python3, with the project installed (pip install -e <repo>)
# No container runtime, browser or build tool: scripts/setup-system.sh adds the test suite's packages.
# It says what it will install before doing it; re-running it reuses what is already there.
#
#   bash scripts/setup-demo.sh --plan   # what it would install, is present or leaves out; changes nothing
#
# Environment:
#   CNI_LOGGER_TOOLS  where cnitool goes (default /opt/cni-logger-tools; kept across runs)
#   CNI_LOGGER_VENV   the virtualenv (default <repo>/.venv)
#   FORCE_BUILD=1     rebuild cnitool even if it is present
#   SKIP_VENV=1       do not create/update the virtualenv
#   DEBIAN_MIRROR     the Debian archive for source packages (default: the one in this machine's apt config)
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
. "$ROOT/scripts/lib/setup.sh"
setup_main demo "$@"
