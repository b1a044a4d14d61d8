"""``install --watch`` as a DaemonSet's node agent: its own messages are JSON lines (a timestamp, a level, the
message, and for a failed self-check the reason: what failed, the exit status and the stderr tail), so
``kubectl logs`` and the log shippers read them; the node script's own lines are JSON too.

The watcher runs as a real process. Its plugin is broken the way a damaged bundle breaks it: the watcher runs
from a private copy of the package, whose launcher names that copy, and a module only the plugin's path imports
is taken away, so the plugin's VERSION exits 1 with a traceback on its stderr.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.harness.nodes import shape
from tests.harness.plugin import REPO
from tests.harness.waiting import wait_for

PYTHON = REPO / ".venv" / "bin" / "python"
RFC3339_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")
LEVELS = {"debug", "info", "warning", "error"}


def json_lines(text: str) -> list[dict[str, Any]]:
    """Every line of ``text`` parsed as one JSON object with the keys every log line has (fails otherwise)."""
    docs = []
    for line in text.splitlines():
        doc = json.loads(line)
        assert isinstance(doc, dict), line
        assert RFC3339_UTC.match(doc["@timestamp"]), line
        assert doc["log.level"] in LEVELS, line
        assert isinstance(doc["message"], str) and doc["message"], line
        docs.append(doc)
    return docs


def has_logger(path: Path) -> bool:
    try:
        return any(p.get("type") == "logger" for p in json.loads(path.read_text())["plugins"])
    except (ValueError, KeyError, FileNotFoundError):
        return False


def test_the_watchers_lines_are_json_and_a_failed_self_check_says_what_failed(tmp_path: Path) -> None:
    if not PYTHON.exists():
        pytest.skip(f"{PYTHON} is not installed (scripts/setup-system.sh)")
    copy = tmp_path / "pkg"
    shutil.copytree(REPO / "cni_logger", copy / "cni_logger", ignore=shutil.ignore_patterns("__pycache__"))
    net_d, bin_dir = tmp_path / "net.d", tmp_path / "bin"
    net_d.mkdir()
    bin_dir.mkdir()
    conf = net_d / "10-flannel.conflist"
    conf.write_bytes(shape("10-flannel.conflist"))
    ready = tmp_path / "ready"
    code = f"import sys; sys.path.insert(0, {str(copy)!r}); from cni_logger.cli import main; main()"
    proc = subprocess.Popen(
        [str(PYTHON), "-I", "-c", code, "install", "--watch", "--interval", "0.1", "--conf-dir", str(net_d),
         "--bin-dir", str(bin_dir), "--state-dir", str(tmp_path / "state"), "--ready-file", str(ready),
         "--log-file", str(tmp_path / "log" / "audit.log")],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    module = copy / "cni_logger" / "deferred.py"
    try:
        assert wait_for(ready.exists), "never ready"
        assert str(copy) in (bin_dir / "logger").read_text(), "the launcher runs the private copy"
        module.rename(module.with_name("deferred.py.away"))       # the plugin's path cannot import any more
        assert wait_for(lambda: not has_logger(conf)), "the failsafe never took the entry out"
        module.with_name("deferred.py.away").rename(module)
        assert wait_for(lambda: has_logger(conf) and ready.exists()), "never put back"
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    lines = json_lines(out) + json_lines(err)
    failed = [d for d in lines if (d.get("event") or {}).get("action") == "self-check-failed"]
    assert len(failed) == 1, err                                   # reported once while it keeps failing
    (line,) = failed
    assert line["log.level"] == "error"
    assert "VERSION exited with status 1" in line["event"]["reason"], line
    check = line["cni"]["check"]
    assert check["exit_status"] == 1, line
    assert "VERSION" in check["call"], line
    assert "deferred" in check["stderr_tail"], "the plugin's own error is quoted"
    levels = {d["message"]: d["log.level"] for d in lines}
    assert any("took the logger out" in m and lvl == "error" for m, lvl in levels.items()), err
    assert any("passes its self-check again" in m and lvl == "info" for m, lvl in levels.items()), err
    assert any(m.startswith("wrote ") for m in levels), "the install's own notes are lines too"
    assert all(d["log"]["logger"] == "cni-logger install --watch" for d in lines)


def test_a_refused_watch_says_so_in_a_json_line(tmp_path: Path) -> None:
    proc = subprocess.run([str(REPO / ".venv" / "bin" / "cni-logger"), "install", "--watch", "--interval", "0",
                           "--state-dir", str(tmp_path / "state")], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    (line,) = json_lines(proc.stderr)
    assert line["log.level"] == "error" and "--interval must be > 0" in line["message"], proc.stderr


def test_the_node_scripts_own_lines_are_json(tmp_path: Path) -> None:
    """The entry point's messages before the watcher runs (here: it refuses a missing bundle) are JSON lines."""
    script = REPO / "deploy" / "kubernetes" / "cni-logger-node.sh"
    env = {"PATH": os.environ["PATH"], "BUNDLE": str(tmp_path / 'no "such" bundle\\.tar.gz'),
           "HOST_ROOT": str(tmp_path)}
    proc = subprocess.run(["sh", str(script)], capture_output=True, text=True, timeout=60, env=env)
    assert proc.returncode == 1
    (line,) = json_lines(proc.stderr)
    assert line["log.level"] == "error"
    assert line["message"] == f"no bundle at '{env['BUNDLE']}'", line
    assert line["log"]["logger"] == "cni-logger-node"
