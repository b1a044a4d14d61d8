"""``leaks`` on the node: a network namespace named by a process (``/proc/PID/ns/net``) whose PID now belongs to
another process must not make a leaked attachment look running (``alive``).

The processes are real: a ``sleep`` started *after* the attachment's ADD cannot be its sandbox's process (that one
was started before its ADD), whatever namespace its path shows; one started *before* the ADD may be.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from cni_logger.audit.alive import process_start
from cni_logger.audit.timeparse import from_epoch
from tests.harness.audit import cli
from tests.harness.node_lines import invocation, line

NET = "pod-net"


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(["sleep", "120"])
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait()


def trail(tmp_path: Path, added: float, pid: int) -> list[str]:
    """This node's trail: one ADD at ``added`` whose namespace is ``/proc/PID/ns/net``, never deleted; libcni's
    result cache still lists it (as it would if the runtime never DELed it)."""
    cache = tmp_path / "results"
    cache.mkdir()
    (cache / f"{NET}-ctr-p-eth0").write_text("{}")
    doc = invocation("ADD", from_epoch(added), os.uname().nodename, network=NET, cid="ctr-p", address="10.88.0.5",
                     pod="p", namespace="shop")
    doc["cni"]["netns"] = f"/proc/{pid}/ns/net"
    log = tmp_path / "cni.log"
    log.write_bytes(line(doc) + b"\n")
    return ["--log-file", str(log), "--results-cache", str(cache)]


def test_process_start_is_when_the_process_started(sleeper: subprocess.Popen[bytes]) -> None:
    started = process_start(sleeper.pid)
    assert started is not None and time.time() - 60 < started <= time.time()
    assert process_start(os.getpid()) is not None and process_start(os.getpid()) < started  # type: ignore[operator]
    assert process_start(2**22 + 1) is None  # beyond pid_max: no such process


def test_a_pid_reused_after_the_add_is_not_the_sandbox(tmp_path: Path, sleeper: subprocess.Popen[bytes]) -> None:
    """The ADD was a minute before ``sleep`` started: the PID its path names was given to ``sleep`` since, so the
    sandbox's process is gone and the attachment leaked (status 0), although the path exists and the cache lists
    it."""
    args = trail(tmp_path, time.time() - 60, sleeper.pid)
    assert Path(f"/proc/{sleeper.pid}/ns/net").exists()
    leaks = cli("leaks", "--json", *args)
    assert [(r["kind"], r["state"]) for r in leaks.json] == [("never-deleted", "leaked")], leaks
    assert leaks.rc == 0, leaks
    assert f"names process {sleeper.pid}, which started at" in leaks.json[0]["state_reason"]
    assert "the PID was reused" in leaks.json[0]["state_reason"]
    (report,) = cli("report", "--json", *args).json
    assert [h["state"] for h in report["leaks"]["never_deleted"]["listed"]] == ["leaked"], report["leaks"]
    assert report["leaks"]["running"]["count"] == 0


def test_a_process_started_before_the_add_may_be_the_sandbox(tmp_path: Path,
                                                             sleeper: subprocess.Popen[bytes]) -> None:
    """``sleep`` started before the ADD: it may be the sandbox's process, and with the cache entry the attachment is
    running (not a leak: status 1)."""
    started = process_start(sleeper.pid)
    assert started is not None
    args = trail(tmp_path, started + 0.2, sleeper.pid)
    time.sleep(max(started + 0.3 - time.time(), 0))  # the ADD is in the past when leaks looks (--older-than 0)
    leaks = cli("leaks", "--json", *args)
    assert [(r["kind"], r["state"]) for r in leaks.json] == [("never-deleted", "running")], leaks
    assert leaks.rc == 1, leaks
