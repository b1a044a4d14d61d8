"""scripts/demo.sh shows the product: after its cnitool chain it asks the trail with ``cni-logger events``,
``who-had`` on the address it just used and ``report --html``, each printed as a reader would type it.

Runs the demo itself (without its set-up: ``SKIP_SETUP=1``) with its log and report in a temporary directory;
needs root, cnitool and the reference plugins, as the cnitool integration tests do.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from tests.harness.cnitool import environment_problem
from tests.harness.plugin import REPO

VENV = Path(sys.prefix)
CLI = VENV / "bin" / "cni-logger"


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    problem = environment_problem()
    if problem:
        pytest.skip(problem)
    if not CLI.is_file():
        pytest.skip(f"{CLI} is not installed (scripts/setup-demo.sh)")
    tmp = tmp_path_factory.mktemp("demo")
    env = {**os.environ, "SKIP_SETUP": "1", "CNI_LOGGER_VENV": str(VENV), "LOG_FILE": str(tmp / "demo.log"),
           "REPORT_FILE": str(tmp / "report.html")}
    env.pop("CNI_LOGGER_BIN", None)
    proc = subprocess.run(["bash", str(REPO / "scripts" / "demo.sh")], capture_output=True, text=True, check=False,
                          timeout=120, env=env)
    assert proc.returncode == 0, f"{proc.stdout}\n{proc.stderr}"
    return proc.stdout, tmp


def commands(out: str) -> dict[str, list[str]]:
    """The commands the demo printed, by subcommand, as argument lists after ``cni-logger``."""
    found = {}
    for line in out.splitlines():
        if line.startswith("$ cni-logger "):
            argv = shlex.split(line[2:])[1:]
            found[argv[0]] = argv
    return found


def test_the_demo_prints_events_who_had_and_report_as_typed(demo: tuple[str, Path]) -> None:
    out, tmp = demo
    printed = commands(out)
    assert set(printed) == {"events", "who-had", "report"}, out
    assert printed["report"][-2:] == ["--html", str(tmp / "report.html")]
    assert f"the report page: {tmp / 'report.html'}" in out
    assert (tmp / "report.html").read_text().lstrip().lower().startswith("<!doctype html")
    address = re.search(r"inside the container: eth0 ([0-9.]+)/\d+", out)
    assert address, out
    assert printed["who-had"][1] == address[1]
    assert "jq" not in out


def test_each_printed_command_gives_what_the_demo_showed(demo: tuple[str, Path]) -> None:
    out, _ = demo
    for name in ("events", "who-had"):
        argv = commands(out)[name]
        proc = subprocess.run([str(CLI), *argv], capture_output=True, text=True, check=False, timeout=60)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout in out, f"$ cni-logger {shlex.join(argv)}\n{proc.stdout}"
    rows = commands_output(out, "events")
    assert [row.split()[1] for row in rows] == ["ADD", "CHECK", "DEL"], rows


def commands_output(out: str, name: str) -> list[str]:
    """The data rows the demo printed under ``$ cni-logger NAME``."""
    block = out.split(f"$ cni-logger {name} ", 1)[1].split("\n\n", 1)[0]
    return block.splitlines()[2:]
