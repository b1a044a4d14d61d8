"""The plugin executable a runtime runs: a launcher that execs the interpreter by absolute path.

A CNI runtime executes ``<bin dir>/logger`` for every operation, so the launcher is on the pod
start path. It names the interpreter by absolute path (never a ``python3`` found on ``PATH``, which
may be a slow shim) and runs it with ``-I -S``: the runtime's ``PYTHON*`` variables are ignored (a
runtime passes its whole environment to plugins), and ``site`` processing is skipped, because the
directories the plugin imports from are written into the launcher at install time.

An interpreter path the kernel cannot take from a ``#!`` line — one with a blank (the kernel ends the
interpreter at the first space or tab), or one making the line longer than the running kernel reads
(``shebang_limit``: 128 bytes before Linux 5.1, 256 since) — gets the form pip writes for such paths:
``#!/bin/sh``, then a line that is both a shell ``exec`` of the interpreter (quoted for the shell) and a
Python string, so the same file is a valid shell script and a valid Python script (``render``). Paths that
neither form can name (a line break, a backslash with a blank, bytes that are not UTF-8; or no ``/bin/sh``)
are refused. Every other path keeps the one-line ``#!<interpreter> -IS`` form (which the node script reads).

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
BINPRM_BUF_SIZE = 256
"""The bytes of a file the kernel reads to find its ``#!`` line, since Linux 5.1 (``OLD_BINPRM_BUF_SIZE``, 128,
before): a line whose newline is not within them is cut short (before 5.1; the interpreter then gets
mangled arguments or a wrong path) or refused with ENOEXEC (since), either way the plugin never runs."""
OLD_BINPRM_BUF_SIZE = 128


def shebang_limit(release: str | None = None) -> int:
    """The longest ``#!`` line (newline included) the running kernel (or ``release``) reads whole."""
    parts = (release or os.uname().release).split(".")
    try:
        version = (int(parts[0]), int("".join(c for c in parts[1].split("-")[0] if c.isdigit()) or 0))
    except (IndexError, ValueError):
        return OLD_BINPRM_BUF_SIZE
    return BINPRM_BUF_SIZE if version >= (5, 1) else OLD_BINPRM_BUF_SIZE


SHELL = "/bin/sh"


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


def _shell_form(python: str) -> bool:
    """Whether the interpreter needs the ``/bin/sh`` preamble: a blank in it, or a ``#!`` line too long."""
    return any(c in python for c in " \t") or len(f"#!{python} -IS\n".encode()) > shebang_limit()


def _sh_quote(text: str) -> str:
    """``text`` as one shell word, in single quotes (a quote becomes ``'"'"'``: never three in a row, so the
    word cannot end the Python string it also sits in)."""
    return "'" + text.replace("'", "'\"'\"'") + "'"


def render(python: str, paths: list[str]) -> str:
    """The launcher's text for the interpreter ``python`` and the import ``paths`` (see the module docstring)."""
    if not os.path.isabs(python):
        raise ValueError(f"interpreter path must be absolute: {python!r}")
    shell = _shell_form(python)
    if any(c in python for c in ("\\\n\r\0" if shell else "\n\r\0")):
        raise LauncherError(f"{python!r}: a launcher cannot name an interpreter whose path has a line break (or, "
                            "with a blank, a backslash); install the plugin's environment under another path")
    for text in (python, *paths):
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise LauncherError(f"{text!r}: a launcher cannot name a path that is not UTF-8; install the "
                                "plugin's environment under another path") from None
    body = program(paths)
    header = f"{MARKER.decode()}, written by `cni-logger launcher` / `cni-logger install`.\n"
    if not shell:
        return f"#!{python} -IS\n{header}{body}"
    if not os.access(SHELL, os.X_OK):
        raise LauncherError(f"the interpreter {python} cannot be named on a #! line (a blank in its path, or longer "
                            f"than the {shebang_limit()} bytes this kernel reads), and {SHELL}, which would execute "
                            "it instead, is absent: install the plugin's environment under a short path without blanks")
    # The shell runs line 3 (exec: it never reads further); Python reads lines 3-4 as one string expression.
    return (f"#!{SHELL}\n{header}"
            f"'''exec' {_sh_quote(python)} -IS \"$0\" \"$@\"\n"
            "' '''\n"
            "# The #! line names the shell: the kernel cannot take the interpreter's path from it (see above).\n"
            f"{body}")


def program(paths: list[str], module: str = "cni_logger.cli") -> str:
    """The Python the launcher runs: ``paths`` added to ``sys.path``, then ``<module>.main()``. Thick mode's shim
    runs the same text with ``-c`` and ``cni_logger.thick``, its in-process path (``install.shim``)."""
    return ("# -I ignores the runtime's PYTHON* variables; -S skips site processing: the plugin's import\n"
            "# paths are listed here instead (after the standard library, so nothing can shadow it).\n"
            "import sys\n"
            f"sys.path.extend({paths!r})\n"
            f"from {module} import main\n"
            "main()\n")


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
    """Whether a file's content is a plugin executable cni-logger wrote: a launcher (any version, for any
    interpreter) or thick mode's shim."""
    from cni_logger.install.shim import is_shim

    return (data.startswith(b"#!") and MARKER in data[:1024]) or is_shim(data)
