"""``deferred``: structlog's package ``__init__`` is deferred on the plugin's path, yet works once used."""

from __future__ import annotations

import os
import subprocess

from tests.harness.plugin import REPO

PYTHON = str(REPO / ".venv" / "bin" / "python")


def test_a_deferred_package_still_works_when_its_namespace_is_used() -> None:
    code = ("import sys; from cni_logger import deferred; deferred.install(); import structlog._generic; "
            "assert isinstance(sys.modules['structlog'], deferred.DeferredPackage); "
            "assert 'structlog.stdlib' not in sys.modules; "
            "log = structlog.get_logger(); "  # the real __init__ runs here
            "print(type(sys.modules['structlog']).__name__, 'structlog.stdlib' in sys.modules, callable(log.info))")
    proc = subprocess.run([PYTHON, "-c", code], capture_output=True, text=True, timeout=60, check=True,
                          cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.stdout.strip() == "module True True"
