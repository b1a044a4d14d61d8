"""The checkers are proven to fail: each kind of damage the load and fault tests look for is produced on
purpose (tampered files, and deliberately broken sinks monkeypatched into the real pipeline run
in-process through ``skel.run``) and the checker must report it.
"""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path
from typing import Any

import pytest

from cni_logger import filesink, redact
from tests.harness.plugin import cni_env
from tests.harness.reliability import audit_log, leaked, net_config, run_in_process

COMMANDS = ("ADD", "CHECK", "DEL")


def record(log: Path, count: int, tag: str = "chk", **options: Any) -> dict[str, str]:
    """``count`` real invocations in-process into ``log``; returns the expected key -> command."""
    config = json.dumps(net_config(log, logToStderr=False, **options)).encode()
    expected = {}
    for n in range(count):
        command = COMMANDS[n % 3]
        key = f"{tag}-{n:04d}"
        rc, _ = run_in_process(cni_env(command, CNI_CONTAINERID=key), config)
        assert rc == 0
        expected[key] = command
    return expected


def test_intact_log_is_clean(tmp_path: Path) -> None:
    log = tmp_path / "audit.log"
    expected = record(log, 12, logOptions={"maxSize": 0.002, "maxBackups": 0})
    audit = audit_log(log, expected)
    assert len(audit.files) > 2, "the fixture should have rotated"
    assert audit.problems() == []


def test_detects_loss_duplicates_tears_merges_and_strangers(tmp_path: Path) -> None:
    log = tmp_path / "audit.log"
    expected = record(log, 9)
    lines = log.read_bytes().split(b"\n")[:-1]
    assert len(lines) == 9

    log.write_bytes(b"\n".join(lines[1:]) + b"\n")                          # lose the first
    assert audit_log(log, expected).missing == ["chk-0000"]

    backup = tmp_path / "audit.log.20260101T000000.000000Z.gz"               # duplicate one, gzipped
    backup.write_bytes(gzip.compress(lines[1] + b"\n"))
    audit = audit_log(log, expected)
    assert audit.duplicated == {"chk-0001": 2}
    backup.unlink()

    torn = [*lines[:3], lines[3][:100], *lines[4:]]                          # tear one
    log.write_bytes(b"\n".join(torn) + b"\n")
    audit = audit_log(log, expected)
    assert len(audit.torn) == 1 and audit.missing == ["chk-0003"]
    assert audit.problems(allowed_torn=1) == ["1 events missing, e.g. ['chk-0003']"]

    glued = [*lines[:3], lines[3][:100] + lines[4], *lines[4:]]              # cut short, glued, rewritten
    log.write_bytes(b"\n".join(glued) + b"\n")
    audit = audit_log(log, expected)
    assert len(audit.torn) == 1 and audit.glued == ["chk-0004"] and not audit.merged
    assert audit.problems(allowed_torn=1) == ["1 events missing, e.g. ['chk-0003']"]

    unrepaired = [*lines[:3], lines[3][:100] + lines[4], *lines[5:]]         # ... and not rewritten
    log.write_bytes(b"\n".join(unrepaired) + b"\n")
    audit = audit_log(log, expected)
    assert audit.unrepaired == ["chk-0004"] and audit.missing == ["chk-0003", "chk-0004"]

    merged = [*lines[:3], lines[3] + lines[4], *lines[5:]]                   # merge two
    log.write_bytes(b"\n".join(merged) + b"\n")
    audit = audit_log(log, expected)
    assert len(audit.merged) == 1 and audit.missing == ["chk-0003", "chk-0004"]

    log.write_bytes(b"\n".join(lines) + b"\n" + lines[0][:50])               # unterminated tail
    audit = audit_log(log, expected)
    assert len(audit.torn) == 1 and audit.problems() != []

    log.write_bytes(b"\n".join(lines) + b"\n\n")                             # empty line
    assert audit_log(log, expected).problems() == ["1 empty lines (allowed 0)"]
    log.write_bytes(b"\n".join(lines) + b"\n")

    fewer = {k: v for k, v in expected.items() if k != "chk-0008"}            # a stranger
    assert audit_log(log, fewer).unexpected == ["chk-0008"]
    assert audit_log(log, fewer, maybe=["chk-0008"]).problems() == []

    wrong = {**expected, "chk-0000": "DEL"}                                   # right key, wrong command
    assert audit_log(log, wrong).wrong_command == ["chk-0000"]


class BrokenSink:
    """Replacements for ``RotatingFile.append``, each broken in one way."""

    def __init__(self, original: object) -> None:
        self.original = original
        self.calls = 0
        self.dropped: list[int] = []

    def install(self, monkeypatch: pytest.MonkeyPatch, how: str) -> None:
        original = filesink.RotatingFile.append
        sink = self

        def append(rf: filesink.RotatingFile, line: bytes) -> None:
            sink.calls += 1
            n = sink.calls
            if how == "drop" and n % 3 == 0:
                sink.dropped.append(n)
                return
            if how == "duplicate" and n % 4 == 0:
                original(rf, line)
            if how == "tear" and n % 4 == 0:
                original(rf, line[: len(line) // 2])  # a short write: the next append starts a new line
                return
            if how == "merge":
                fd = os.open(rf.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
                try:
                    os.write(fd, line.rstrip(b"\n") if n % 4 == 0 else line)
                finally:
                    os.close(fd)
                return
            original(rf, line)

        monkeypatch.setattr(filesink.RotatingFile, "append", append)


@pytest.mark.parametrize("how", ["drop", "duplicate", "tear", "merge"])
def test_broken_sink_is_caught(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, how: str) -> None:
    log = tmp_path / "audit.log"
    sink = BrokenSink(filesink.RotatingFile.append)
    sink.install(monkeypatch, how)
    rotating = {"maxSize": 0.003, "maxBackups": 0} if how != "tear" else {}  # tears: one file, glue visible
    expected = record(log, 12, logOptions=rotating)
    audit = audit_log(log, expected)
    problems = audit.problems()
    assert problems, f"the checker missed a {how} sink"
    if how == "drop":
        assert audit.missing == [f"chk-{n - 1:04d}" for n in sink.dropped]
    elif how == "duplicate":
        assert set(audit.duplicated) == {"chk-0003", "chk-0007", "chk-0011"}
    elif how == "tear":
        assert len(audit.torn) == 3 and len(audit.missing) == 3 and not audit.merged
        assert len(audit.glued) == 2 and not audit.unrepaired  # the real append repaired the next lines
    else:
        assert audit.merged and len(audit.missing) >= 2


def test_leak_checker_catches_a_broken_redactor(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                capfd: pytest.CaptureFixture[str]) -> None:
    """With redaction switched off the secret reaches the file and stderr, and ``leaked`` says so."""
    token = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJjaGVja2VyIn0.c2lnbmF0dXJlLWNoZWNrZXI"
    log = tmp_path / "audit.log"
    config = net_config(log, kubernetes={"k8s_auth_token": token})
    env = cni_env("ADD", CNI_CONTAINERID="leak")

    rc, _ = run_in_process(env, json.dumps(config).encode())
    assert rc == 0
    assert leaked([token], log.read_bytes(), capfd.readouterr().err.encode()) == []

    monkeypatch.setattr(redact.Scrubber, "value", lambda self, value, depth, aws=False: value)
    rc, _ = run_in_process(env, json.dumps(config).encode())
    assert rc == 0
    assert leaked([token], log.read_bytes()) == [token]
    assert leaked([token], capfd.readouterr().err.encode()) == [token]
