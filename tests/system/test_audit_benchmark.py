"""``scripts/audit-benchmark.py`` itself, on a small trail: it measures every command, checks their answers, and
with ``--baseline`` asks a git revision's code the same questions in the same run (the issue's "before vs after")."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "audit-benchmark.py"
CLI = Path(sys.executable).parent / "cni-logger"

pytestmark = pytest.mark.integration


def _run(tmp_path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(SCRIPT), "--size", "3M", "--file-size", "1M", "--runs", "1",
                           "--dir", str(tmp_path), "--cli", str(CLI), "--json", str(tmp_path / "figures.json"),
                           *extra], capture_output=True, text=True, timeout=600, check=False)


def test_baseline_is_measured_in_the_same_run(tmp_path: Path) -> None:
    done = _run(tmp_path, "--baseline", "HEAD")
    assert done.returncode == 0, done.stderr
    figures = json.loads((tmp_path / "figures.json").read_text())
    now, before = figures["results"], figures["baseline"]["results"]
    assert figures["baseline"]["ref"] == "HEAD"
    assert [r["command"] for r in now] == [r["command"] for r in before]
    assert {r["command"].split()[0] for r in now} >= {"who-had", "leaks", "stats", "events", "report"}
    for old, new in zip(before, now, strict=True):
        assert old["ratio_this_to_baseline"] == round(new["wall_s"] / old["wall_s"], 3)
        assert old["output_lines"] > 0 or old["command"].startswith("report --html")
    assert any(line.startswith("ratio: ") for line in done.stdout.splitlines())
    assert not list(tmp_path.glob("cni-audit-bench-*")), "the trail and the baseline export are removed"


def test_an_unknown_baseline_is_one_line(tmp_path: Path) -> None:
    done = _run(tmp_path, "--baseline", "no-such-revision-xyz")
    assert done.returncode != 0
    assert "--baseline no-such-revision-xyz" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_small_trail_is_not_damage(tmp_path: Path) -> None:
    """The generated backups are as big as the maxSize their events say they rotate at: no ``shrunk`` stretch."""
    done = _run(tmp_path, "--keep")
    assert done.returncode == 0, done.stderr
    kept = next(line.split("kept: ", 1)[1] for line in done.stderr.splitlines() if line.startswith("kept: "))
    try:
        stats = subprocess.run([str(CLI), "stats", "--json", "--log-file", f"{kept}/cni-logger.log"],
                               capture_output=True, text=True, timeout=300, check=False)
        assert stats.returncode == 0, stats.stderr
        assert "shrunk" not in stats.stderr and "damaged" not in stats.stderr, stats.stderr
    finally:
        subprocess.run(["rm", "-rf", kept], check=True)
