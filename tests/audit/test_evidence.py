"""What a scan found wanting: damaged stretches (file, lines, times), possible gaps, duplicates."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

from cni_logger.audit import evidence, sources
from cni_logger.audit.evidence import Stretch
from cni_logger.audit.reader import Scan

T = "2026-11-28T02:20:{:02d}.000000Z"


def line(n: int, cid: str = "c", command: str = "ADD", event_id: str = "") -> bytes:
    doc = {"@timestamp": T.format(n), "message": f"CNI {command} eth0 of container {cid} on network net succeeded",
           "event": {"outcome": "success", "duration": 5, "id": event_id or f"id-{n}-{cid}"},
           "network": {"name": "net"}, "cni": {"command": command, "container_id": cid, "ifname": "eth0"}}
    return json.dumps(doc, separators=(",", ":")).encode()


def scan(*paths: Path) -> tuple[Scan, list[str]]:
    trails, problems = sources.resolve([str(p) for p in paths])
    assert problems == []
    s = Scan(trails)
    ids = [r.event_id for r in s.records()]
    return s, ids


def test_damaged_lines_are_a_stretch_with_file_lines_and_the_good_events_around_them(tmp_path: Path) -> None:
    log = tmp_path / "cni.log"
    cut = line(3, "victim", "DEL")[:120]
    log.write_bytes(b"\n".join([line(1), line(2), cut, b"kernel: junk", b"", line(5), b'{"foo": 1}', line(7)])
                    + b"\n")
    s, ids = scan(log)
    assert len(ids) == 4 and s.skipped == 3
    first, second = s.evidence.stretches
    assert (first.kind, first.path, first.first_line, first.last_line, first.lines) == ("damaged", str(log), 3, 4, 2)
    assert (first.after, first.before, first.lost, first.containers) == (T.format(2), T.format(5), True, {"victim"})
    assert first.concerns("victim") and not first.concerns("other")
    assert (second.first_line, second.lost) == (7, False)  # complete JSON: foreign, no event lost
    assert s.evidence.uncovered(T.format(4)).startswith(f"{T.format(4)} is in a damaged stretch")
    assert s.evidence.uncovered(T.format(6)) == ""
    assert "before the trail" in s.evidence.uncovered(T.format(0))


def test_junk_without_a_container_concerns_anyone_and_reaches_the_end(tmp_path: Path) -> None:
    log = tmp_path / "cni.log"
    log.write_bytes(line(1) + b"\n" + b"\0\0\0 rot\n")
    s, _ = scan(log)
    (stretch,) = s.evidence.stretches
    assert (stretch.containers, stretch.before, stretch.concerns("anyone")) == (None, None, True)
    assert "the end of the trail" in stretch.describe()


def test_truncated_gzip_and_empty_backup_are_stretches(tmp_path: Path) -> None:
    log = tmp_path / "cni.log"
    full = gzip.compress(b"\n".join(line(n % 50, f"c{n}") for n in range(1, 400)) + b"\n")
    (tmp_path / "cni.log.20261128T022001.000000Z.gz").write_bytes(full[: len(full) // 2])
    (tmp_path / "cni.log.20261128T022002.000000Z").write_bytes(b"")
    log.write_bytes(line(50) + b"\n")
    s, _ = scan(log)
    kinds = [(x.kind, x.before) for x in s.evidence.stretches]
    assert ("unreadable", T.format(50)) in kinds and ("empty", T.format(50)) in kinds
    unreadable = next(x for x in s.evidence.stretches if x.kind == "unreadable")
    assert unreadable.first_line > 1 and unreadable.after  # what came before the cut was read
    assert all(x.lost and x.containers is None for x in s.evidence.stretches if x.kind != "damaged")


def test_a_missing_backup_shows_as_a_possible_gap(tmp_path: Path) -> None:
    log = tmp_path / "cni.log"
    files = [range(0, 10), range(30, 40)]  # 10..29 were in a backup now gone
    for index, numbers in enumerate(files):
        (tmp_path / f"cni.log.20261128T02200{index}.000000Z").write_bytes(b"".join(line(n) + b"\n" for n in numbers))
    log.write_bytes(b"".join(line(n) + b"\n" for n in range(40, 45)))
    s, _ = scan(log)
    (gap,) = s.evidence.stretches
    assert (gap.kind, gap.after, gap.before) == ("gap", T.format(9), T.format(30))
    assert "a backup may be missing" in gap.describe()


def test_a_number_missing_from_the_backup_sequence_is_a_gap_even_without_a_pause(tmp_path: Path) -> None:
    """Backups 3 and 4 were deleted; events kept their pace, so time alone would not tell."""
    stamp = "20261128T0220{:02d}.000000Z"
    kept = {1: range(0, 10), 2: range(10, 20), 5: range(20, 30), 6: [], 7: range(30, 40)}  # 6: empty
    for number, numbers in kept.items():
        name = f"cni.log.{number:06d}.{stamp.format(number)}"
        data = b"".join(line(n) + b"\n" for n in numbers)
        if number == 5:
            (tmp_path / (name + ".gz")).write_bytes(gzip.compress(data))
        else:
            (tmp_path / name).write_bytes(data)
    (tmp_path / "cni.log").write_bytes(b"".join(line(n) + b"\n" for n in range(40, 45)))
    s, ids = scan(tmp_path / "cni.log")
    assert len(ids) == 45
    gaps = [x for x in s.evidence.stretches if x.kind == "gap"]
    assert [(g.after, g.before) for g in gaps] == [(T.format(19), T.format(20))]
    assert "backups 000003 to 000004 missing from the sequence" in gaps[0].describe()
    assert gaps[0].path.endswith(".000002.20261128T022002.000000Z and " + str(tmp_path) +
                                 "/cni.log.000005.20261128T022005.000000Z.gz")
    assert [x.kind for x in s.evidence.stretches if x.kind != "gap"] == ["empty"]  # 6 is there, only empty
    assert s.evidence.uncovered(T.format(19)[:-8] + "500000Z").startswith(T.format(19)[:-8] + "500000Z is in")

    (tmp_path / f"cni.log.000006.{stamp.format(6)}").unlink()  # the empty one gone too
    s, _ = scan(tmp_path / "cni.log")
    assert [(g.what.split(" missing")[0], g.after, g.before) for g in s.evidence.stretches] == [
        ("backups 000003 to 000004", T.format(19), T.format(20)), ("backup 000006", T.format(29), T.format(30))]


def test_an_ordinary_pause_at_a_rotation_is_no_gap() -> None:
    a = (T.format(0), T.format(9), 10)
    assert evidence.gap("a", "b", a, (T.format(10), T.format(19), 10)) is None
    assert evidence.gap("a", "b", a, (T.format(16), T.format(25), 10)) is None  # 7 s: under 8 x the 1 s pace
    assert evidence.gap("a", "b", a, (T.format(30), T.format(39), 10)) is not None


def test_duplicates_across_inputs_are_yielded_once(tmp_path: Path) -> None:
    log = tmp_path / "cni.log"
    log.write_bytes(b"".join(line(n) + b"\n" for n in range(5)))
    copy = tmp_path / "copy.log"
    copy.write_bytes(log.read_bytes())
    s, ids = scan(log, copy)
    assert (len(ids), len(set(ids)), s.duplicates, s.evidence.duplicates) == (5, 5, 5, 5)


def test_stretches_beyond_the_cap_merge_into_a_wider_one() -> None:
    found = evidence.Evidence()
    for n in range(evidence.MAX_STRETCHES + 3):
        found.add(Stretch("damaged", "f", n, n, T.format(n % 60), T.format(n % 60), lines=1, lost=False))
    assert len(found.stretches) == evidence.MAX_STRETCHES
    assert found.stretches[-1].lines == 4 and found.stretches[-1].what == "many damaged stretches merged"


def test_rotten_timestamps_at_a_file_boundary_are_no_time(tmp_path: Path) -> None:
    """A damaged .gz can inflate into bytes shaped like an event's start around a rotten time (seen in CI:
    ``2026-11-29776d9-:08.551603Z``); the gap rule must not take it for a time, nor crash on it."""
    log = tmp_path / "cni.log"
    rotten = line(9).replace(T.format(9).encode(), b"2026-11-29776d9-:08.551603Z")
    (tmp_path / "cni.log.20261128T022000.000000Z").write_bytes(
        b"".join(line(n) + b"\n" for n in range(0, 9)) + rotten + b"\n")
    log.write_bytes(b"".join(line(n) + b"\n" for n in range(40, 45)) + rotten + b"\n")
    _, ids = scan(log)  # before: ValueError from the gap rule, a traceback instead of an answer
    assert {f"id-{n}-c" for n in [*range(9), *range(40, 45)]} <= set(ids)
    month_13 = (T.format(0), T.format(9), 10)
    assert evidence.gap("a", "b", month_13, ("2026-13-28T02:20:40.000000Z", T.format(49), 10)) is None
