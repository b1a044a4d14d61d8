"""Running ``cni-logger`` subcommands as real processes, as an operator would."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cni_logger.audit.timeparse import from_datetime
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


_MEASURE = r"""
import resource, subprocess, sys
with open(sys.argv[1], "wb") as out, open(sys.argv[2], "wb") as err:
    status = subprocess.call(sys.argv[3:], stdin=subprocess.DEVNULL, stdout=out, stderr=err)
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, status)
"""


@dataclass
class Measured:
    rc: int
    stdout: bytes
    stderr: bytes
    peak_kib: int
    """The command's own peak RSS."""


def measured(argv: list[str], work: Path, timeout: float = 120) -> Measured:
    """Run ``argv`` from a small fresh Python process that reports the command's peak RSS.

    Not ``wait4`` from pytest: the kernel carries the forking process's resident size into the child's
    ``ru_maxrss`` across exec, so a child of a large pytest process would report pytest's size (the same
    reason as ``scripts/audit-benchmark.py``'s ``MEASURE``).
    """
    out, err = work / "measured.out", work / "measured.err"
    report = subprocess.run([sys.executable, "-I", "-S", "-c", _MEASURE, str(out), str(err), *argv],
                            capture_output=True, text=True, check=True, timeout=timeout).stdout.split()
    try:
        return Measured(int(report[1]), out.read_bytes(), err.read_bytes(), int(report[0]))
    finally:
        out.unlink()
        err.unlink()


def now() -> str:
    """The current time as the audit prints it, a few milliseconds clear of the events either side of it
    (a test's own clock around its runtime calls: the moments it asks ``who-had --at`` about)."""
    time.sleep(0.002)
    moment = from_datetime(datetime.now(UTC))
    time.sleep(0.002)
    return moment
