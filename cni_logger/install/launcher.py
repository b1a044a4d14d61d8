"""The plugin executable a runtime runs: a launcher that execs the interpreter by absolute path.

A CNI runtime executes ``<bin dir>/logger`` for every operation, so the launcher is on the pod
start path. It names the interpreter by absolute path (never a ``python3`` found on ``PATH``, which
may be a slow shim) and runs it with ``-I -S``: the runtime's ``PYTHON*`` variables are ignored (a
runtime passes its whole environment to plugins), and ``site`` processing is skipped, because the
directories the plugin imports from are written into the launcher at install time.

The file is replaced atomically (``atomicfile``), so a runtime never executes a half-written launcher.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Callable, Iterable

from cni_logger.install import atomicfile

REQUIRED_PACKAGES = ("cni_logger", "structlog", "pythonjsonlogger")
MARKER = b"# cni-logger CNI plugin launcher"
"""The start of the header comment ``render`` writes: uninstall removes a bin-dir file only if it has it."""


class LauncherError(Exception):
    """The launcher cannot be written for this interpreter; the message says what to run instead."""


def import_paths(packages: Iterable[str] = REQUIRED_PACKAGES) -> list[str]:
    """The ``sys.path`` entries the plugin's packages are installed in, in this interpreter."""
    paths: list[str] = []
    for name in packages:
        spec = importlib.util.find_spec(name)
        if spec is None or not spec.submodule_search_locations:
            raise LauncherError(f"package {name!r} is not installed for {sys.executable}: run the cni-logger "
                                "of the environment the plugin is installed in (e.g. <venv>/bin/cni-logger)")
        entry = os.path.dirname(os.path.abspath(next(iter(spec.submodule_search_locations))))
        if entry not in paths:
            paths.append(entry)
    return paths


def render(python: str, paths: list[str]) -> str:
    if not os.path.isabs(python):
        raise ValueError(f"interpreter path must be absolute: {python!r}")
    return (
        f"#!{python} -IS\n"
        f"{MARKER.decode()}, written by `cni-logger launcher` / `cni-logger install`.\n"
        "# -I ignores the runtime's PYTHON* variables; -S skips site processing: the plugin's import\n"
        "# paths are listed here instead (after the standard library, so nothing can shadow it).\n"
        "import sys\n"
        f"sys.path.extend({paths!r})\n"
        "from cni_logger.cli import main\n"
        "main()\n"
    )


def write(target: str, python: str | None = None, paths: list[str] | None = None,
          before_replace: Callable[[], None] | None = None) -> str:
    """Atomically write the launcher to ``target`` (mode 0755), creating its directory; returns its text.

    ``before_replace`` (see ``atomicfile.write_atomic``) may execute the complete new file under its
    temporary name and veto the rename: install's self-check.
    """
    text = render(python or sys.executable, paths if paths is not None else import_paths())
    os.makedirs(os.path.dirname(os.path.abspath(target)), exist_ok=True)  # e.g. a fresh node's /opt/cni/bin
    atomicfile.write_atomic(os.path.abspath(target), text.encode("utf-8"), 0o755, before_replace=before_replace)
    return text


def is_launcher(data: bytes) -> bool:
    """Whether a file's content is a launcher this module wrote (any version, for any interpreter)."""
    return data.startswith(b"#!") and MARKER in data[:1024]
