"""cni_logger.thick: the in-process side of thick mode, run as the shim runs it (``python -IS -c <program> ID
REASON MAYBE PREFIX``), and the check that keeps a request from being recorded twice."""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from pathlib import Path

from cni_logger import thick
from cni_logger.install import launcher
from tests.harness.plugin import CNITOOL_RESULT_100, REPO, cni_env

PYTHON = str(REPO / ".venv" / "bin" / "python")
PROGRAM = launcher.program(launcher.import_paths(), "cni_logger.thick")


def fallback(tmp: Path, *args: str, stdin: bytes, env: dict[str, str] | None = None,
             pass_fds: tuple[int, ...] = ()) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([PYTHON, "-IS", "-c", PROGRAM, *args], input=stdin, env=env or cni_env("ADD"),
                          capture_output=True, timeout=60, pass_fds=pass_fds, check=False)


def add_config(log: Path) -> bytes:
    return json.dumps({"cniVersion": "1.0.0", "name": "net", "type": "logger", "logFile": str(log),
                       "logToStderr": False, "prevResult": CNITOOL_RESULT_100}).encode()


def events(log: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in log.read_bytes().splitlines()] if log.exists() else []


def test_valid_event_ids_are_only_the_shims() -> None:
    assert thick.valid_event_id(str(uuid.uuid4()))
    for bad in ("", "x" * 36, str(uuid.uuid4()).upper(), str(uuid.uuid1()), "00000000-0000-0000-0000-000000000000"):
        assert not thick.valid_event_id(bad), bad


def test_a_request_the_agent_may_have_recorded_is_appended_only_if_its_id_is_not_in_the_trail(tmp_path: Path) -> None:
    log = tmp_path / "cni.log"
    recorded = str(uuid.uuid4())
    log.write_text(json.dumps({"event": {"id": recorded}}, separators=(",", ":")) + "\n")
    run = fallback(tmp_path, recorded, "died", "1", "-", stdin=add_config(log))
    assert run.returncode == 0 and json.loads(run.stdout) == CNITOOL_RESULT_100
    assert len(events(log)) == 1, "the agent recorded it: the fallback answers and does not append"
    fresh = str(uuid.uuid4())
    fallback(tmp_path, fresh, "died", "1", "-", stdin=add_config(log))
    fallback(tmp_path, recorded, "absent", "0", "-", stdin=add_config(log))  # never reached the agent: no look
    found = events(log)
    assert [e["event"]["id"] for e in found[1:]] == [fresh, recorded]  # type: ignore[index]
    assert [(e["cni"]["served_by"], e["cni"]["fallback_reason"]) for e in found[1:]] == \
        [("fallback", "died"), ("fallback", "absent")]  # type: ignore[index]


def test_the_prefix_the_shim_read_comes_before_the_rest_of_stdin(tmp_path: Path) -> None:
    log = tmp_path / "cni.log"
    data = add_config(log)
    prefix = os.memfd_create("prefix", 0)
    os.write(prefix, data[:10])
    try:
        run = fallback(tmp_path, str(uuid.uuid4()), "stdin", "0", str(prefix), stdin=data[10:], pass_fds=(prefix,))
    finally:
        os.close(prefix)
    assert run.returncode == 0 and json.loads(run.stdout) == CNITOOL_RESULT_100, run.stderr


def test_arguments_that_are_not_the_shims_make_it_the_plain_plugin(tmp_path: Path) -> None:
    log = tmp_path / "cni.log"
    for args in ((), ("not-an-id", "absent", "0", "-"), (str(uuid.uuid4()), "why-not", "0", "-"),
                 (str(uuid.uuid4()), "absent", "2", "-")):
        run = fallback(tmp_path, *args, stdin=add_config(log))
        assert run.returncode == 0 and json.loads(run.stdout) == CNITOOL_RESULT_100
        assert "served_by" not in events(log)[-1]["cni"]  # type: ignore[operator]


def test_without_cni_command_it_prints_the_banner_as_the_launcher_does(tmp_path: Path) -> None:
    run = fallback(tmp_path, str(uuid.uuid4()), "absent", "0", "-", stdin=b"", env={"PATH": "/usr/bin:/bin"})
    assert run.returncode == 0 and run.stdout == b""
    assert run.stderr == thick.banner()
