"""The reader: a trail's files found and streamed oldest first, gzip inflated, damage skipped and counted."""

from __future__ import annotations

import gzip
import io
import json
import os
from pathlib import Path
from typing import Any

import pytest

from cni_logger.audit import lines, sources
from cni_logger.audit.output import Progress
from cni_logger.audit.reader import DEDUPE_WINDOW, Scan
from cni_logger.audit.record import Record
from cni_logger.filesink import live_path_of

STAMP = "2026-11-28T02:20:{:02d}.000000Z"


@pytest.fixture(params=["inflated here", "inflated aside"])
def inflating(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """A scan of gzipped files twice: inflated in the reading process, and (however small) by a forked child."""
    if request.param == "inflated aside":
        monkeypatch.setattr(sources, "ASIDE_AT", 0)
    return str(request.param)


def event(n: int, cid: str = "c", **extra: Any) -> bytes:
    """A compact event line shaped like the plugin's (timestamp n seconds into the minute)."""
    doc = {"@timestamp": STAMP.format(n), "message": f"event {n}",
           "event": {"kind": "event", "action": "cni-add", "outcome": "success", "duration": 1000 + n, "id": str(n)},
           "network": {"name": "net"},
           "cni": {"command": "ADD", "container_id": cid, "netns": "/x", "ifname": "eth0"}, **extra}
    return json.dumps(doc, separators=(",", ":")).encode()


def scan(*paths: Path, **kw: Any) -> tuple[list[str], Scan, list[str]]:
    """(event ids in the order read, the scan, warnings)."""
    trails, problems = sources.resolve([str(p) for p in paths])
    assert not problems, problems
    warnings: list[str] = []
    s = Scan(trails, warn=warnings.append)
    ids = [str(r.doc["event"]["id"]) for r in s.records(**kw)]
    return ids, s, warnings


def write_trail(directory: Path, files: dict[str, list[int]], gz: tuple[str, ...] = ()) -> Path:
    """Files named ``cni.log`` and ``cni.log.<suffix>`` holding the numbered events."""
    for suffix, numbers in files.items():
        data = b"".join(event(n) + b"\n" for n in numbers)
        name = "cni.log" + (f".{suffix}" if suffix else "")
        if suffix in gz:
            (directory / (name + ".gz")).write_bytes(gzip.compress(data))
        else:
            (directory / name).write_bytes(data)
    return directory / "cni.log"


@pytest.mark.usefixtures("inflating")
def test_backups_then_live_oldest_first_plain_and_gzipped(tmp_path: Path) -> None:
    log = write_trail(tmp_path, {"20261128T010000.000000Z": [0, 1], "20261128T020000.000000Z": [2],
                                 "20261128T020000.000000Z-1": [3, 4], "20261128T030000.000000Z": [5], "": [6]},
                      gz=("20261128T010000.000000Z", "20261128T020000.000000Z-1"))
    ids, s, warnings = scan(log)
    assert ids == [str(n) for n in range(7)]
    assert (s.skipped, warnings) == (0, [])
    assert s.data_bytes == sum(len(event(n)) + 1 for n in range(7))


def test_a_trail_whose_live_file_is_gone_is_read_from_its_backups(tmp_path: Path) -> None:
    write_trail(tmp_path, {"20261128T010000.000000Z": [0], "20261128T020000.000000Z": [1]})
    assert scan(tmp_path / "cni.log")[0] == ["0", "1"]


@pytest.mark.usefixtures("inflating")
@pytest.mark.parametrize("chunk", [1, 7, 64, 1 << 20])
def test_lines_survive_any_chunk_boundary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, chunk: int) -> None:
    monkeypatch.setattr(sources, "CHUNK", chunk)
    log = write_trail(tmp_path, {"20261128T010000.000000Z": [0, 1, 2], "": [3, 4]}, gz=("20261128T010000.000000Z",))
    assert scan(log)[0] == ["0", "1", "2", "3", "4"]


def test_damaged_and_foreign_lines_are_skipped_and_counted(tmp_path: Path) -> None:
    good = [event(n) for n in range(4)]
    spaced = json.dumps(json.loads(event(9))).encode()  # another writer's spacing: still an event
    lines = [
        good[0], b"not json", b'{"foo": 1}', b'{"event": "x"}', b"[1,2]", b"", b"   ", b"\xff\xfe garbage",
        good[1][:200] + good[2],  # a cut-short write with the next event glued on ...
        good[2],                  # ... which the next writer wrote again on a line of its own
        spaced, b"[" * 100_000, good[3], good[3][:80],  # cut short at the very end (no newline)
    ]
    log = tmp_path / "cni.log"
    log.write_bytes(b"\n".join(lines))
    ids, s, _ = scan(log)
    assert ids == ["0", "2", "9", "3"]
    assert s.skipped == 8  # not json, foo, event "x", [1,2], garbage, glued, deep nesting, cut short


def test_a_complete_last_line_without_newline_is_kept(tmp_path: Path) -> None:
    log = tmp_path / "cni.log"
    log.write_bytes(event(0) + b"\n" + event(1))
    ids, s, _ = scan(log)
    assert (ids, s.skipped) == (["0", "1"], 0)
    trails, _ = sources.resolve([str(log)])
    assert [r.line for r in Scan(trails).records()] == [event(0), event(1)]


def test_overlong_lines_are_dropped_without_holding_them(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lines, "MAX_LINE", 1000)
    monkeypatch.setattr(sources, "CHUNK", 300)
    log = tmp_path / "cni.log"
    log.write_bytes(event(0) + b"\n" + b"x" * 5000 + b"\n" + event(1) + b"\n" + b"y" * 3000)
    ids, s, _ = scan(log)
    assert (ids, s.skipped) == (["0", "1"], 2)


@pytest.mark.usefixtures("inflating")
def test_gzip_members_truncation_and_corruption(tmp_path: Path) -> None:
    stem = tmp_path / "cni.log.20261128T010000.000000Z"
    whole = gzip.compress(event(0) + b"\n") + gzip.compress(event(1) + b"\n")
    Path(str(stem) + ".gz").write_bytes(whole)
    assert scan(tmp_path / "cni.log")[0] == ["0", "1"]

    Path(str(stem) + ".gz").write_bytes(whole + b"\0" * 10)  # zero padding after the last member
    ids, _, warnings = scan(tmp_path / "cni.log")
    assert (ids, warnings) == (["0", "1"], [])

    Path(str(stem) + ".gz").write_bytes(whole[:-30])  # cut inside the second member
    ids, s, warnings = scan(tmp_path / "cni.log")
    assert ids == ["0"] and s.skipped == 1
    assert len(warnings) == 1 and "truncated" in warnings[0]

    broken = bytearray(whole)
    broken[len(whole) // 2 + 20: len(whole) // 2 + 40] = b"\x55" * 20
    Path(str(stem) + ".gz").write_bytes(bytes(broken))
    ids, _, warnings = scan(tmp_path / "cni.log")
    assert ids[:1] == ["0"] and len(warnings) == 1 and "damaged compressed data" in warnings[0]


@pytest.mark.parametrize("compressed", [False, True], ids=["plain", "gzip"])
def test_a_read_error_mid_file_warns_once_and_keeps_what_was_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                  compressed: bool) -> None:
    """Plain and gzip files share one read loop; a failed read ends the file with one warning (a compressed
    stream cut by it is not flushed, nor reported as truncated too)."""
    monkeypatch.setattr(sources, "CHUNK", 64)
    data = b"".join(event(n) + b"\n" for n in range(20))
    path = tmp_path / "cni.log"
    path.write_bytes(gzip.compress(data) if compressed else data)
    fd = os.open(path, os.O_RDONLY)
    warnings: list[str] = []
    pieces = sources.chunks(sources.OpenFile(str(path), fd, 0), lambda n: None, warnings.append)
    got = next(pieces)
    os.close(fd)  # every read fails from here on, as on a disk that returns EIO
    got += b"".join(pieces)
    assert got and len(got) < len(data) and data.startswith(got)
    assert warnings == [f"{path}: Bad file descriptor; rest of the file skipped"]


def test_inflate_is_fed_any_pieces_and_reads_concatenated_members() -> None:
    data = [event(0) + b"\n", event(1) + b"\n"]
    whole = gzip.compress(data[0]) + gzip.compress(data[1])
    warnings: list[str] = []
    inflate = sources.Inflate(warnings.append)
    out = b"".join(piece for n in range(len(whole)) for piece in inflate.feed(whole[n:n + 1]))
    out += b"".join(inflate.finish())
    assert (out, warnings, inflate.stopped) == (b"".join(data), [], True)
    inflate = sources.Inflate(warnings.append)
    out = b"".join(inflate.feed(whole[:-30])) + b"".join(inflate.finish())
    assert out.startswith(data[0]) and b"".join(data).startswith(out)  # what came before the cut
    assert warnings == ["compressed data ends early (truncated file); read up to the cut"]


def test_rotation_during_the_scan_reads_each_event_once(tmp_path: Path) -> None:
    """The live file is renamed to a backup (and a new live file started) after the scan began."""
    log = write_trail(tmp_path, {"20261128T010000.000000Z": [0, 1], "": [2, 3]})
    trails, _ = sources.resolve([str(log)])
    s = Scan(trails)
    records = s.records()
    first = next(records)
    os.rename(log, tmp_path / "cni.log.20261128T020000.000000Z")  # what the plugin's rotation does
    log.write_bytes(event(4) + b"\n")                             # written after the scan began
    ids = [str(first.doc["event"]["id"])] + [str(r.doc["event"]["id"]) for r in records]
    assert ids == ["0", "1", "2", "3"]


def test_a_backup_compressed_or_pruned_meanwhile(tmp_path: Path) -> None:
    stem = tmp_path / "cni.log.20261128T010000.000000Z"
    Path(str(stem) + ".gz").write_bytes(gzip.compress(event(0) + b"\n"))
    handle = sources._open_backup(str(stem), None, print)  # listed as plain, found gzipped
    assert handle is not None and handle.path.endswith(".gz")
    handle.close()
    assert sources._open_backup(str(tmp_path / "cni.log.20261128T020000.000000Z"), None, print) is None


@pytest.mark.usefixtures("inflating")
def test_trails_are_merged_by_time(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "cni.log").write_bytes(b"".join(event(n) + b"\n" for n in (0, 3, 4, 8)))
    (tmp_path / "b" / "cni.log").write_bytes(b"".join(event(n) + b"\n" for n in (1, 2, 5, 9)))
    assert scan(tmp_path / "a" / "cni.log", tmp_path / "b" / "cni.log")[0] == ["0", "1", "2", "3", "4", "5", "8",
                                                                                 "9"]
    # logrotate-style names are trails of their own, merged the same way
    (tmp_path / "a" / "cni.log.1").write_bytes(gzip.compress(event(6) + b"\n"))
    ids = scan(tmp_path / "a" / "cni.log*")[0]
    assert ids == ["0", "3", "4", "6", "8"]


def test_resolve_names_trails_and_problems(tmp_path: Path) -> None:
    log = write_trail(tmp_path, {"20261128T010000.000000Z": [0], "": [1]}, gz=("20261128T010000.000000Z",))
    backup = str(log) + ".20261128T010000.000000Z.gz"
    assert live_path_of(backup) == str(log)
    assert live_path_of(str(log) + ".20261128T010000.000000Z-3") == str(log)
    assert live_path_of(str(log) + ".1") == str(log) + ".1"
    trails, problems = sources.resolve([backup, str(log), str(tmp_path / "cni.*")])
    assert (trails, problems) == ([sources.Trail(str(log))], [])
    trails, problems = sources.resolve([str(tmp_path / "missing.log"), str(tmp_path), str(tmp_path / "*.x")])
    assert trails == []
    assert [p.split(": ", 1)[1] for p in problems] == ["no such file (and no rotated backups of it)", "is a directory",
                                                      "no files match"]


def test_progress_only_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    clock = iter([0.0, 0.5, 2.0, 2.1, 3.0])
    monkeypatch.setattr("cni_logger.audit.output.time.monotonic", lambda: next(clock))
    tty = Tty()
    progress = Progress(1000, tty)
    progress.advance(100)   # 0.5 s: too early
    progress.data = 4000
    progress.advance(400)   # 2.0 s: drawn
    progress.advance(100)   # 2.1 s: too soon after the last one
    assert tty.getvalue().count("scanned") == 1
    assert "scanned 50% (0 of 0 MB on disk; 0 MB of events, 0 MB/s)" in tty.getvalue()
    progress.clear()
    assert tty.getvalue().endswith("\r\x1b[K")
    pipe = io.StringIO()
    quiet = Progress(1000, pipe)
    quiet.advance(1000)
    assert pipe.getvalue() == ""


def _gz_variants() -> dict[str, bytes]:
    data = b"".join(event(n % 60, cid=f"c{n}") + b"\n" for n in range(3000))
    whole = gzip.compress(data[: len(data) // 2]) + gzip.compress(data[len(data) // 2:])
    bad_crc = bytearray(whole)
    bad_crc[-8] ^= 0xFF  # the last member's CRC: every event inflates, then the check fails
    broken = bytearray(whole)
    broken[len(whole) // 3: len(whole) // 3 + 40] = b"\x55" * 40
    return {"whole": whole, "zero padding": whole + b"\0" * 10, "garbage after": whole + b"junk",
            "truncated": whole[:-30], "bad crc": bytes(bad_crc), "damaged mid-stream": bytes(broken), "empty": b""}


@pytest.mark.parametrize("variant", list(_gz_variants()))
def test_inflating_aside_yields_what_inflating_here_yields(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                          variant: str) -> None:
    """The same pieces, with each ``advance`` and ``warn`` between the same pieces, damage or not."""
    monkeypatch.setattr(sources, "CHUNK", 1 << 14)
    path = tmp_path / "cni.log.000001.20261128T010000.000000Z.gz"
    path.write_bytes(_gz_variants()[variant])

    def run(read: Any) -> list[tuple[str, Any]]:
        calls: list[tuple[str, Any]] = []
        fd = os.open(path, os.O_RDONLY)
        try:
            for piece in read(sources.OpenFile(str(path), fd, path.stat().st_size),
                              lambda n: calls.append(("advance", n)), lambda m: calls.append(("warn", m))):
                calls.append(("piece", piece))
        finally:
            os.close(fd)
        return calls

    here, aside = run(sources.chunks), run(sources.inflated_aside)
    assert aside == here
    assert sum(1 for kind, _ in here if kind == "piece") > (1 if variant != "empty" else -1)


def _forks(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    pids: list[int] = []
    fork = os.fork

    def recorded() -> int:
        pid = fork()
        if pid:
            pids.append(pid)
        return pid

    monkeypatch.setattr(os, "fork", recorded)
    return pids


def _gone(pid: int) -> bool:
    """Ended and reaped: no such process, not even a zombie."""
    return not Path(f"/proc/{pid}").exists()


def test_a_reader_that_stops_early_ends_the_child(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pids = _forks(monkeypatch)
    monkeypatch.setattr(sources, "CHUNK", 1 << 12)
    path = tmp_path / "cni.log.gz"
    path.write_bytes(gzip.compress(b"".join(event(n % 60) + b"\n" for n in range(5000))))
    fd = os.open(path, os.O_RDONLY)
    read = sources.inflated_aside(sources.OpenFile(str(path), fd, path.stat().st_size), lambda n: None, print)
    assert next(read)
    read.close()
    os.close(fd)
    assert len(pids) == 1 and _gone(pids[0])


@pytest.mark.parametrize("how", ["raises", "dies"])
def test_a_child_that_fails_is_reported_like_an_unreadable_rest(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                               how: str) -> None:
    pids = _forks(monkeypatch)
    good = event(0) + b"\n"

    def failing(handle: sources.OpenFile, advance: Any, warn: Any) -> Any:
        yield good
        if how == "raises":
            raise RuntimeError("boom")
        os._exit(9)  # as if killed

    monkeypatch.setattr(sources, "chunks", failing)  # the child is a fork: it runs this
    path = tmp_path / "cni.log.gz"
    path.write_bytes(gzip.compress(good))
    warnings: list[str] = []
    fd = os.open(path, os.O_RDONLY)
    got = list(sources.inflated_aside(sources.OpenFile(str(path), fd, 1), lambda n: None, warnings.append))
    os.close(fd)
    assert got == [good]
    assert warnings == [f"{path}: inflating failed (RuntimeError: boom); rest of the file skipped" if how == "raises"
                        else f"{path}: the process inflating it ended early; rest of the file skipped"]
    assert _gone(pids[0])


def test_without_a_child_the_file_is_inflated_here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_fork() -> int:
        raise BlockingIOError(11, "Resource temporarily unavailable")

    monkeypatch.setattr(os, "fork", no_fork)
    path = tmp_path / "cni.log.gz"
    path.write_bytes(gzip.compress(event(0) + b"\n"))
    fd = os.open(path, os.O_RDONLY)
    got = b"".join(sources.inflated_aside(sources.OpenFile(str(path), fd, 1), lambda n: None, print))
    os.close(fd)
    assert got == event(0) + b"\n"


def test_event_ids_are_remembered_for_half_the_window_at_least_and_the_window_at_most() -> None:
    scan = Scan([])
    half = DEDUPE_WINDOW // 2
    records = [Record(b"", "", "ADD", "success", "c", "eth0", "net", None, None, f"id-{n}")
               for n in range(DEDUPE_WINDOW + 10)]
    assert not any(scan.duplicate(r) for r in records)
    assert half <= len(scan._ids) + len(scan._older_ids) <= DEDUPE_WINDOW  # bounded memory
    assert all(scan.duplicate(r) for r in records[-half:])  # the last half window, every one
    assert scan.duplicates == scan.evidence.duplicates == half
    assert not scan.duplicate(records[0])  # long forgotten: yielded again
