#!/usr/bin/env bash
# Installs everything cni-logger's test suite (and the demo) need on a Debian (bookworm) machine, as root:
# the demo's set-up (scripts/setup-demo.sh: the reference CNI plugins, cnitool, the virtualenv) plus the test
# suite's Debian packages (containerd, Podman and its runtimes, chromium, debootstrap, prometheus,
# qemu-user-static, ...; scripts/lib/setup.sh, TEST_PKGS and PODMAN_PKGS), the Go `debug` plugin built with
# cnitool from Debian's source package of the CNI library, the project's `test` extras in the
# virtualenv, and the thick-mode shim beside it (<venv>/libexec/cni-logger-shim, scripts/build-shim.sh). It
# says what it will install before doing it, and leaves out a container runtime package when the machine
# already has that runtime from another package (the tests that need it then skip).
# Re-running it reuses what is already there (packages, tools, venv, shim).
#
#   bash scripts/setup-system.sh --plan   # what it would install, is present or leaves out; changes nothing
#
# Environment:
#   CNI_LOGGER_TOOLS  where cnitool + debug go (default /opt/cni-logger-tools; kept across runs)
#   CNI_LOGGER_VENV   the virtualenv (default <repo>/.venv)
#   WITH_PODMAN=0     skip podman/runc/busybox (the Podman integration tests then skip)
#   FORCE_BUILD=1     rebuild cnitool/debug even if they are present
#   SKIP_VENV=1       do not create/update the virtualenv
#   DEBIAN_MIRROR     the Debian archive for source packages (default: the one in this machine's apt config)
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
. "$ROOT/scripts/lib/setup.sh"
setup_main test "$@"
