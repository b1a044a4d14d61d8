"""Running ``cni-logger`` subcommands as real processes, as an operator would."""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from typing import Any

from tests.harness.plugin import REPO

CLI = str(REPO / ".venv" / "bin" / "cni-logger")


@dataclass
class Result:
    rc: int
    stdout: str
    stderr: str

    @property
    def json(self) -> list[dict[str, Any]]:
        """stdout as JSON lines (every line must be one JSON object)."""
        return [json.loads(line) for line in self.stdout.splitlines()]

    @property
    def rows(self) -> list[list[str]]:
        """Table rows (after the header), split on runs of two or more spaces."""
        import re

        return [re.split(r"\s{2,}", line.strip()) for line in self.stdout.splitlines()[1:] if line.strip()]


def cli(*args: str, timeout: float = 60, executable: str = CLI) -> Result:
    """``cni-logger ARGS``: the virtualenv's, or ``executable`` (another install's, e.g. the bundle's)."""
    proc = subprocess.run([executable, *args], capture_output=True, text=True, timeout=timeout, check=False,
                          stdin=subprocess.DEVNULL)
    assert "Traceback" not in proc.stderr, proc.stderr
    return Result(proc.returncode, proc.stdout, proc.stderr)
