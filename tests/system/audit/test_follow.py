"""``follow``: new events as they arrive, across the plugin's rotation, stopped cleanly by signals."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from cni_logger import filesink
from cni_logger.audit import lines
from cni_logger.audit.follow import Tail
from tests.harness.audit import CLI, measured
from tests.harness.plugin import cni_env, run_plugin
from tests.harness.trails import prev_result


def start_follow(log: Path, *argv: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen([CLI, "follow", "--log-file", str(log), "--interval", "0.05", *argv],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:  # ready once it holds the file open (it seeks to the end at once)
        try:
            if any(os.readlink(f"/proc/{proc.pid}/fd/{fd}") == str(log) for fd in os.listdir(f"/proc/{proc.pid}/fd")):
                time.sleep(0.1)
                return proc
        except OSError:
            pass
        if proc.poll() is not None:
            break
        time.sleep(0.02)
    proc.kill()
    raise AssertionError(f"follow did not open {log}: {proc.communicate()}")


def add(log: Path, n: int) -> str:
    config = {"cniVersion": "1.0.0", "name": "follow-net", "type": "logger", "logFile": str(log),
              "logOptions": {"maxSize": 0.003, "maxBackups": 0, "compress": True},
              "prevResult": prev_result(f"10.9.0.{n}")}
    run = run_plugin("ADD", config, env=cni_env("ADD", CNI_CONTAINERID=f"follow-{n}"))
    assert run.rc == 0, run.stderr
    event_id: str = run.stderr_events[0]["event"]["id"]
    return event_id


def test_follow_prints_new_events_across_rotation(tmp_path: Path) -> None:
    log = tmp_path / "cni.log"
    before = [add(log, n) for n in range(2)]  # already there: not printed
    proc = start_follow(log, "--json", "--max-events", "8", "--timeout", "90")
    written = [add(log, n) for n in range(10, 18)]
    out, err = proc.communicate(timeout=90)
    assert proc.returncode == 0, err
    assert [json.loads(line)["event"]["id"] for line in out.splitlines()] == written
    assert not set(before) & set(written)
    assert len(list(tmp_path.glob("cni.log.*"))) >= 3  # it did rotate underneath


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signals_end_follow_with_status_0(tmp_path: Path, sig: signal.Signals) -> None:
    log = tmp_path / "cni.log"
    log.write_text("")
    proc = start_follow(log)
    started = time.monotonic()
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=10)
    assert (proc.returncode, out, err) == (0, "", "")
    assert time.monotonic() - started < 5


def test_a_file_not_there_yet_is_waited_for_filters_apply_and_timeout_exits_1(tmp_path: Path) -> None:
    log = tmp_path / "cni.log"
    proc = subprocess.Popen([CLI, "follow", "--log-file", str(log), "--interval", "0.05", "--timeout", "4",
                             "--container", "follow-2"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(0.5)
    add(log, 1)
    add(log, 2)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0
    assert [row.split()[7] for row in out.splitlines()[1:]] == ["follow-2"]
    quiet = subprocess.run([CLI, "follow", "--log-file", str(log), "--timeout", "0.3"], capture_output=True,
                           text=True, timeout=30, check=False)
    assert (quiet.returncode, quiet.stdout) == (1, "")


def test_from_start_reads_the_live_file_first(tmp_path: Path) -> None:
    log = tmp_path / "cni.log"
    first = add(log, 1)
    result = subprocess.run([CLI, "follow", "--from-start", "--json", "--max-events", "1", "--timeout", "20",
                             "--log-file", str(log)], capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode == 0
    assert json.loads(result.stdout)["event"]["id"] == first


def test_tail_finishes_the_old_file_keeps_late_lines_and_holds_partial_ones(tmp_path: Path) -> None:
    log = tmp_path / "cni.log"
    log.write_bytes(b"old\n")
    tail = Tail(str(log))
    with open(log, "ab") as late_writer:  # opened before the rotation, like a slow plugin process
        with open(log, "ab") as out:
            out.write(b"a1\na2 partial")
        assert list(tail.poll(0.0)) == [b"a1"]
        os.rename(log, tmp_path / "cni.log.20261128T000000.000000Z")
        log.write_bytes(b"b1\n")
        assert list(tail.poll(1.0)) == [b"b1"]  # the old file was read to its end first (nothing complete there)
        late_writer.write(b" rest\nlate\n")
    assert list(tail.poll(2.0)) == [b"a2 partial rest", b"late"]  # within the grace period
    with open(tmp_path / "cni.log.20261128T000000.000000Z", "ab") as out:
        out.write(b"cut short")
    assert list(tail.poll(10.0)) == [b"cut short\n"]  # given up after the grace: handed on, to be counted as damaged
    log.write_bytes(b"")  # truncated in place (copytruncate): start again
    assert list(tail.poll(10.5)) == []
    with open(log, "ab") as out:
        out.write(b"c1\n")
    assert list(tail.poll(11.0)) == [b"c1"]
    tail.close()


def test_tail_drops_an_overlong_line_without_holding_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lines, "MAX_LINE", 100)
    log = tmp_path / "cni.log"
    log.write_bytes(b"")
    dropped: list[int] = []
    tail = Tail(str(log), on_drop=lambda: dropped.append(1))
    with open(log, "ab") as out:
        out.write(b"a1\n" + b"x" * 1000)
        out.flush()
        assert (list(tail.poll(0.0)), dropped) == ([b"a1"], [1])
        assert tail.current is not None and tail.current.lines.rest == b""  # nothing of it is held
        out.write(b"x" * 1000 + b"\nb1\n")
    assert (list(tail.poll(0.1)), dropped) == ([b"b1"], [1])  # the rest of it is passed over, up to its newline
    tail.close()

@pytest.mark.parametrize("argv", [
    ["follow", "--from-start", "--max-events", "2", "--timeout", "60", "--interval", "0.01"],
    ["events"],  # the scans split lines with the same splitter
], ids=["follow", "events"])
def test_an_overlong_line_is_dropped_in_bounded_memory_and_the_next_events_still_come_out(
        tmp_path: Path, argv: list[str]) -> None:
    """200 MB without a newline (here a hole, read as NUL bytes: what a crash can leave in a file) is dropped
    and counted, never held: peak memory stays near the baseline (~20 MiB; follow reached 618 MiB before)."""
    log = tmp_path / "cni.log"
    config = {"cniVersion": "1.0.0", "name": "follow-net", "type": "logger", "logFile": str(log),
              "logOptions": {"maxSize": 1024}, "prevResult": prev_result("10.9.0.1")}  # no rotation here

    def add_event(cid: str) -> str:
        run = run_plugin("ADD", config, env=cni_env("ADD", CNI_CONTAINERID=cid))
        assert run.rc == 0, run.stderr
        event_id: str = run.stderr_events[0]["event"]["id"]
        return event_id

    written = [add_event("before-the-long-line")]
    with open(log, "r+b") as out:
        out.seek(200 << 20, os.SEEK_END)
        out.write(b"\n")
    written.append(add_event("after-the-long-line"))
    assert log.stat().st_size > 200 << 20
    run = measured([CLI, *argv, "--json", "--log-file", str(log)], tmp_path)
    assert run.rc == 0, run.stderr
    assert [json.loads(line)["event"]["id"] for line in run.stdout.splitlines()] == written
    assert b"skipped 1 line (" in run.stderr
    peak_mib = run.peak_kib / 1024  # KiB on Linux
    assert peak_mib < 60, f"{argv[0]} peaked at {peak_mib:.0f} MiB"


def _rotate(log: Path, sequence: int) -> str:
    """What the sink's rotation does: link the live file to its next backup name, then unlink it."""
    stem = filesink.backup_name(str(log), sequence, filesink.backup_stamp(time.time()))
    os.link(log, stem)
    os.unlink(log)
    return stem


def _append(log: Path, data: bytes) -> None:
    with open(log, "ab") as out:
        out.write(data)


@pytest.mark.parametrize("compress", ["none", "held", "between", "both"])
def test_tail_reads_every_file_when_several_rotations_happen_between_two_polls(tmp_path: Path, compress: str) -> None:
    """Two rotations (and the compression of the older backups) between two polls: the file rotated away in
    between is read too (from its ``.gz`` if it is compressed already), the held one is not read twice."""
    log = tmp_path / "cni.log"
    _append(log, b"old\n")
    held_before = _rotate(log, 1)  # a backup from before follow started: never printed
    _append(log, b"x0\n")
    tail = Tail(str(log))
    _append(log, b"x1\n")
    assert list(tail.poll(0.0)) == [b"x1"]
    _append(log, b"x2\n")
    held = _rotate(log, 2)  # the file follow holds open
    _append(log, b"y1\ny2\n")
    between = _rotate(log, 3)  # rotated before follow saw it as the live file
    _append(log, b"z1\n")
    if compress in ("held", "both"):
        assert filesink.compress_backup(held)  # the held file is now unlinked: only its .gz is there
    if compress in ("between", "both"):
        assert filesink.compress_backup(between)
    assert filesink.compress_backup(held_before)
    assert list(tail.poll(0.5)) == [b"x2", b"y1", b"y2", b"z1"]
    _append(log, b"z2\n")
    assert list(tail.poll(1.0)) == [b"z2"]
    _append(log, b"z3\n")
    _rotate(log, 4)
    _append(log, b"w1\n")
    assert list(tail.poll(10.0)) == [b"z3", b"w1"]
    tail.close()


def test_tail_reads_files_rotated_while_the_path_was_missing(tmp_path: Path) -> None:
    """Not there when follow starts, then created and rotated twice before the first poll: all of it is read."""
    log = tmp_path / "cni.log"
    tail = Tail(str(log))
    _append(log, b"a1\n")
    _rotate(log, 1)
    _append(log, b"b1\n")
    _rotate(log, 2)
    _append(log, b"c1\n")
    assert list(tail.poll(0.0)) == [b"a1", b"b1", b"c1"]
    tail.close()


def test_an_event_written_again_is_printed_once(tmp_path: Path) -> None:
    """The sink writes an event again to the live file when its first file was rotated and compressed away
    under a stalled writer; follow may have read the first copy from the file it held: printed once."""
    source = tmp_path / "source.log"
    config = {"cniVersion": "1.0.0", "name": "follow-net", "type": "logger", "logFile": str(source),
              "logOptions": {"maxSize": 1024}, "prevResult": prev_result("10.9.0.1")}
    for cid in ("again-1", "again-2"):
        assert run_plugin("ADD", config, env=cni_env("ADD", CNI_CONTAINERID=cid)).rc == 0
    first, second = source.read_bytes().splitlines(keepends=True)
    log = tmp_path / "cni.log"
    log.write_bytes(b"")
    proc = start_follow(log, "--json", "--max-events", "2", "--timeout", "30")
    _append(log, first)
    _rotate(log, 1)
    _append(log, first + second)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert [json.loads(line)["event"]["id"] for line in out.splitlines()] == [
        json.loads(first)["event"]["id"], json.loads(second)["event"]["id"]]
