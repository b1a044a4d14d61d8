"""Unit tests for cni_logger.filesink: the shared, rotating, append-only JSON-lines file.

Everything runs under ``tmp_path``. Anything that could block (a FIFO) or forks (compression) runs in
a child process with a timeout, and every wait is a bounded poll.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from cni_logger import filesink
from cni_logger.filesink import RotatingFile, SinkError

REPO = Path(__file__).resolve().parents[2]
BACKUP_NAME = re.compile(r"^cni\.log\.(?:\d{6,}\.(\d{8}T\d{6})\.(\d{6})Z|(\d{8}T\d{6})\.(\d{6})Z(-[1-9]\d*)?)$")
"""Both schemes: ``cni.log.<sequence>.<stamp>``, and the older ``cni.log.<stamp>[-N]``."""


def event_line(n: int, pad: int = 40) -> bytes:
    return (json.dumps({"n": n, "pad": "x" * pad}, separators=(",", ":")) + "\n").encode()


def backups_of(directory: Path) -> list[Path]:
    """Backup files (plain and gzipped) of ``cni.log``, oldest first."""
    found = [p for p in directory.iterdir() if BACKUP_NAME.match(p.name.removesuffix(".gz"))]
    return sorted(found, key=lambda p: filesink.backup_order(p.name.removesuffix(".gz")))


def read_lines(path: Path) -> list[bytes]:
    data = gzip.decompress(path.read_bytes()) if path.name.endswith(".gz") else path.read_bytes()
    assert data == b"" or data.endswith(b"\n"), f"{path.name} does not end with a newline"
    return data.split(b"\n")[:-1]


def all_lines(directory: Path) -> list[bytes]:
    """Lines of every backup, oldest first, then of the live file."""
    lines = [line for backup in backups_of(directory) for line in read_lines(backup)]
    live = directory / "cni.log"
    return lines + (read_lines(live) if live.exists() else [])


def run_python(code: str, *args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter (for anything that could block or fork)."""
    return subprocess.run([sys.executable, "-c", code, *args], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout, check=False)


APPEND_SCRIPT = """
import json, sys
from cni_logger.filesink import RotatingFile, SinkError
try:
    RotatingFile(sys.argv[1], 10**9, 0).append(b'{"x":1}\\n')
    print(json.dumps({"ok": True}))
except SinkError as exc:
    print(json.dumps({"error": str(exc)}))
"""


# -- creation and permissions ----------------------------------------------------------------------


def test_creates_file_0640_and_directories_0750_even_with_umask_0(tmp_path: Path) -> None:
    path = tmp_path / "var" / "log" / "cni" / "cni.log"
    previous = os.umask(0)
    try:
        RotatingFile(str(path), 10**9, 0).append(event_line(1))
        umask_after = os.umask(0)
    finally:
        os.umask(previous)
    assert umask_after == 0, "the process umask must be restored"
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    for directory in (tmp_path / "var", tmp_path / "var" / "log", tmp_path / "var" / "log" / "cni"):
        assert stat.S_IMODE(directory.stat().st_mode) == 0o750, directory
    assert path.read_bytes() == event_line(1)


def test_rotated_files_are_recreated_0640(tmp_path: Path) -> None:
    path = tmp_path / "cni.log"
    previous = os.umask(0)
    try:
        sink = RotatingFile(str(path), len(event_line(1)) * 3 // 2, 0)
        for n in range(3):  # the second append rotates, the third creates a new live file
            sink.append(event_line(n))
    finally:
        os.umask(previous)
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert [stat.S_IMODE(p.stat().st_mode) for p in backups_of(tmp_path)] == [0o640]


def test_relative_path_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SinkError, match="absolute"):
        RotatingFile("cni.log", 10**9, 0)
    assert list(tmp_path.iterdir()) == []


# -- appending -------------------------------------------------------------------------------------


def test_append_adds_exactly_one_line(tmp_path: Path) -> None:
    path = tmp_path / "cni.log"
    path.write_bytes(b'{"first":true}\n')
    RotatingFile(str(path), 10**9, 0).append(event_line(7))
    assert path.read_bytes() == b'{"first":true}\n' + event_line(7)


def test_appends_accumulate_in_order(tmp_path: Path) -> None:
    path = tmp_path / "cni.log"
    sink = RotatingFile(str(path), 10**9, 0)
    for n in range(5):
        sink.append(event_line(n))
    assert path.read_bytes() == b"".join(event_line(n) for n in range(5))


def assert_intact_after_damage(path: Path, damaged: bytes, event: bytes) -> None:
    """docs/reliability-security.md: a reader sees one line that does not parse, then the next event intact on its
    own line."""
    data = path.read_bytes()
    assert data.endswith(b"\n")
    lines = data.split(b"\n")[:-1]
    assert lines[0] == event_line(1)[:-1]
    assert lines.count(event[:-1]) == 1, lines
    unparsable = []
    for raw in lines:
        try:
            json.loads(raw)
        except ValueError:
            unparsable.append(raw)
    assert len(unparsable) == 1 and unparsable[0].startswith(damaged), lines


def test_damaged_last_line_makes_the_next_event_start_on_a_new_line(tmp_path: Path) -> None:
    path = tmp_path / "cni.log"
    path.write_bytes(event_line(1) + b'{"n":2,"pad":"xx')  # a writer killed mid-line
    RotatingFile(str(path), 10**9, 0).append(event_line(3))
    assert_intact_after_damage(path, b'{"n":2,"pad":"xx', event_line(3))
    RotatingFile(str(path), 10**9, 0).append(event_line(4))  # and the file is healthy again
    assert path.read_bytes().endswith(event_line(3) + event_line(4))


def test_line_cut_short_just_before_an_append_loses_only_the_cut_short_event(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Another plugin process dies half-way through its write after this one opened the file and
    # before its own write: a check made before writing cannot see it.
    path = tmp_path / "cni.log"
    path.write_bytes(event_line(1))
    real_write = os.write
    injected: list[bool] = []

    def other_writer_dies_mid_line_then_write(fd: int, data: Any) -> int:
        if not injected:
            injected.append(True)
            with path.open("ab") as other:
                other.write(b'{"n":2,"cut')
        return real_write(fd, data)

    with monkeypatch.context() as patch:
        patch.setattr(filesink.os, "write", other_writer_dies_mid_line_then_write)
        RotatingFile(str(path), 10**9, 0).append(event_line(3))
    assert injected
    assert_intact_after_damage(path, b'{"n":2,"cut', event_line(3))


# -- refusing what is not a regular file ------------------------------------------------------------


def test_symlink_at_the_path_is_refused_and_not_written_through(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere.txt"
    target.write_bytes(b"precious\n")
    link = tmp_path / "cni.log"
    link.symlink_to(target)
    with pytest.raises(SinkError, match="symbolic link"):
        RotatingFile(str(link), 1, 0).append(event_line(1))
    assert target.read_bytes() == b"precious\n"
    assert link.is_symlink()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cni.log", "elsewhere.txt"]


def test_dangling_symlink_is_refused_and_its_target_not_created(tmp_path: Path) -> None:
    link = tmp_path / "cni.log"
    link.symlink_to(tmp_path / "would-be-created")
    with pytest.raises(SinkError, match="symbolic link"):
        RotatingFile(str(link), 10**9, 0).append(event_line(1))
    assert not (tmp_path / "would-be-created").exists()


def test_directory_at_the_path_is_refused(tmp_path: Path) -> None:
    (tmp_path / "cni.log").mkdir()
    with pytest.raises(SinkError, match="is a directory"):
        RotatingFile(str(tmp_path / "cni.log"), 10**9, 0).append(event_line(1))
    assert list((tmp_path / "cni.log").iterdir()) == []


def test_fifo_without_a_reader_is_refused_promptly(tmp_path: Path) -> None:
    fifo = tmp_path / "cni.log"
    os.mkfifo(fifo)
    proc = run_python(APPEND_SCRIPT, str(fifo), timeout=30)  # a blocking open would hit the timeout
    assert proc.returncode == 0, proc.stderr
    answer = json.loads(proc.stdout)
    assert "error" in answer, answer
    assert str(fifo) in answer["error"]
    assert stat.S_ISFIFO(fifo.lstat().st_mode)


def test_fifo_with_a_reader_gets_nothing(tmp_path: Path) -> None:
    fifo = tmp_path / "cni.log"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    try:
        with pytest.raises(SinkError, match="not a regular file"):
            RotatingFile(str(fifo), 10**9, 0).append(event_line(1))
        try:
            data = os.read(reader, 4096)
        except BlockingIOError:
            data = b""
        assert data == b""
    finally:
        os.close(reader)


def test_dev_null_is_refused() -> None:
    before = os.stat("/dev/null")
    with pytest.raises(SinkError, match="not a regular file"):
        RotatingFile("/dev/null", 10**9, 0).append(event_line(1))
    after = os.stat("/dev/null")
    assert stat.S_ISCHR(after.st_mode) and after.st_rdev == before.st_rdev


def test_char_device_node_at_the_path_is_refused(tmp_path: Path) -> None:
    node = tmp_path / "cni.log"
    try:
        os.mknod(node, stat.S_IFCHR | 0o600, os.makedev(1, 3))  # a /dev/null twin
    except PermissionError:
        pytest.skip("mknod needs CAP_MKNOD")
    with pytest.raises(SinkError, match="not a regular file"):
        RotatingFile(str(node), 1, 0).append(event_line(1))
    assert stat.S_ISCHR(node.lstat().st_mode)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cni.log"]  # and nothing was rotated


def test_probe_checks_without_writing(tmp_path: Path) -> None:
    path = tmp_path / "d" / "cni.log"
    RotatingFile(str(path), 10**9, 0).probe()
    assert path.read_bytes() == b""
    (tmp_path / "dir.log").mkdir()
    with pytest.raises(SinkError):
        RotatingFile(str(tmp_path / "dir.log"), 10**9, 0).probe()


def test_parent_that_is_a_file_is_reported(tmp_path: Path) -> None:
    (tmp_path / "file").write_bytes(b"")
    with pytest.raises(SinkError, match="not a directory"):
        RotatingFile(str(tmp_path / "file" / "cni.log"), 10**9, 0).append(event_line(1))


# -- rotation --------------------------------------------------------------------------------------


def test_rotation_at_max_size_makes_a_timestamped_backup_and_a_new_live_file(tmp_path: Path) -> None:
    path = tmp_path / "cni.log"
    size = len(event_line(0))
    sink = RotatingFile(str(path), 3 * size + 1, 0)
    for n in range(3):
        sink.append(event_line(n))
    assert backups_of(tmp_path) == []  # 3 lines are still below maxSize
    sink.append(event_line(3))  # reaches it
    (backup,) = backups_of(tmp_path)
    match = BACKUP_NAME.match(backup.name)
    assert match, backup.name
    stamp = time.strptime(match.group(1), "%Y%m%dT%H%M%S")
    assert abs(time.mktime(stamp) - time.mktime(time.gmtime())) < 86400  # a UTC time stamp of today
    assert read_lines(backup) == [event_line(n)[:-1] for n in range(4)]
    sink.append(event_line(4))
    assert path.read_bytes() == event_line(4)
    assert backups_of(tmp_path) == [backup]


def test_external_rotation_mode_never_rotates(tmp_path: Path) -> None:
    path = tmp_path / "cni.log"
    sink = RotatingFile(str(path), 10, 1, rotate=False)
    for n in range(5):
        sink.append(event_line(n))
    assert [p.name for p in tmp_path.iterdir()] == ["cni.log"]
    assert len(read_lines(path)) == 5


def test_max_backups_keeps_the_newest_n(tmp_path: Path) -> None:
    sink = RotatingFile(str(tmp_path / "cni.log"), 1, 2)  # every append rotates
    for n in range(6):
        sink.append(event_line(n))
        assert len(backups_of(tmp_path)) <= 2
    kept = backups_of(tmp_path)
    assert [read_lines(p) for p in kept] == [[event_line(4)[:-1]], [event_line(5)[:-1]]]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in kept)


def test_max_backups_0_keeps_all(tmp_path: Path) -> None:
    sink = RotatingFile(str(tmp_path / "cni.log"), 1, 0)
    for n in range(8):
        sink.append(event_line(n))
    assert len(backups_of(tmp_path)) == 8
    assert all_lines(tmp_path) == [event_line(n)[:-1] for n in range(8)]


def test_max_age_deletes_old_backups_only(tmp_path: Path) -> None:
    old = time.time() - 10 * 86400
    old_plain = tmp_path / "cni.log.20200101T000000.000000Z"
    old_gz = tmp_path / "cni.log.20200102T000000.000000Z.gz"
    recent = tmp_path / "cni.log.20200103T000000.000000Z"  # old name, recent mtime: age is by mtime
    unrelated = [tmp_path / "cni.log.old", tmp_path / "other.log",
                 tmp_path / "cni.log.20200101T000000.000000Z.gz.tmp.1"]
    for path in (old_plain, recent, *unrelated):
        path.write_bytes(b"{}\n")
    old_gz.write_bytes(gzip.compress(b"{}\n"))
    for path in (old_plain, old_gz, *unrelated):
        os.utime(path, (old, old))
    sink = RotatingFile(str(tmp_path / "cni.log"), 1, 0, max_age_days=1)
    sink.append(event_line(1))  # rotates, then applies retention
    names = {p.name for p in tmp_path.iterdir()}
    assert old_plain.name not in names and old_gz.name not in names
    assert recent.name in names
    assert {p.name for p in unrelated} <= names
    new = [p for p in backups_of(tmp_path) if p != recent]
    assert len(new) == 1 and read_lines(new[0]) == [event_line(1)[:-1]]


def test_max_age_and_max_backups_together(tmp_path: Path) -> None:
    old = time.time() - 3 * 86400
    for day in range(1, 4):
        backup = tmp_path / f"cni.log.2020010{day}T000000.000000Z"
        backup.write_bytes(b"{}\n")
        os.utime(backup, (old, old))
    sink = RotatingFile(str(tmp_path / "cni.log"), 1, 5, max_age_days=2)
    sink.append(event_line(1))
    assert [read_lines(p) for p in backups_of(tmp_path)] == [[event_line(1)[:-1]]]


def test_backups_lists_only_backup_stems(tmp_path: Path) -> None:
    for name in ("cni.log", "cni.log.20261128T021506.123456Z", "cni.log.20261128T021507.000001Z.gz",
                 "cni.log.20261128T021507.000001Z-1", "cni.log.20261128T021508.000000Z.gz.tmp.42",
                 "cni.log.1", "cni.log.old", "cni.logx.20261128T021506.123456Z",
                 "xcni.log.20261128T021506.1Z"):
        (tmp_path / name).write_bytes(b"")
    sink = RotatingFile(str(tmp_path / "cni.log"), 10**9, 0)
    assert sink.backups() == [str(tmp_path / name) for name in (
        "cni.log.20261128T021506.123456Z", "cni.log.20261128T021507.000001Z",
        "cni.log.20261128T021507.000001Z-1")]


def test_backup_names_round_trip_and_sort_oldest_first() -> None:
    live = "/var/log/cni/cni.log"
    stamps = [filesink.backup_stamp(t) for t in (1764296106.5, 1764296106.75, 1764296107.0)]
    old = [f"{live}.{stamps[2]}", f"{live}.{stamps[2]}-1", f"{live}.{stamps[0]}-2"]  # earlier releases
    new = [filesink.backup_name(live, 1, stamps[2]), filesink.backup_name(live, 2, stamps[0]),
           filesink.backup_name(live, 999999, stamps[1]), filesink.backup_name(live, 1000000, stamps[0])]
    assert new[0] == "/var/log/cni/cni.log.000001.20251128T021507.000000Z"
    assert new[3] == "/var/log/cni/cni.log.1000000.20251128T021506.500000Z"
    names = old + new  # write order: old scheme by stamp, then by sequence whatever the stamps say
    assert sorted(reversed(names), key=filesink.backup_order) == sorted(old) + new
    for name in names:
        assert filesink.parse_backup_name(name) == (live, name, False)
        assert filesink.parse_backup_name(name + ".gz") == (live, name, True)
        assert filesink.live_path_of(name + ".gz") == filesink.live_path_of(name + ".gz.tmp.42") == live
    assert filesink.parse_backup_name(names[0] + ".gz.tmp.42") is None  # being compressed: not a backup yet
    stamped_live = old[0]  # a live file whose own name looks like a backup's: its backups are its own
    parsed = filesink.parse_backup_name(filesink.backup_name(stamped_live, 3, stamps[2]))
    assert parsed is not None and parsed[0] == stamped_live
    for other in ("/var/log/cni/cni.log", "/var/log/cni/cni.log.1", "/var/log/cni/cni.log.2.gz",
                  "/var/log/cni/.20251128T021506.500000Z", "/var/log/cni/cni.log.20251128",
                  "/var/log/cni/cni.log.20240101T000000-legal-hold.tar.gz",
                  f"{live}.{stamps[0]}.sig", f"{live}.{stamps[0]}-0", f"{live}.{stamps[0]}-01",
                  f"{live}.{stamps[0]}-x",
                  f"{live}.20251128T021506.5Z", f"{live}.{stamps[0]}.gz.tmp.x"):
        assert filesink.parse_backup_name(other) is None, other
        assert filesink.live_path_of(other) == other


def test_nothing_is_ever_truncated(tmp_path: Path) -> None:
    path = tmp_path / "cni.log"
    path.write_bytes(b'{"pre":"existing"}\n')  # written by an earlier version, or another node agent
    sink = RotatingFile(str(path), 700, 0)
    written = [b'{"pre":"existing"}']
    for n in range(60):
        sink.append(event_line(n, pad=n * 3))
        written.append(event_line(n, pad=n * 3)[:-1])
        assert all_lines(tmp_path) == written  # after every single append, nothing has gone missing
    assert len(backups_of(tmp_path)) >= 5


def test_oversized_existing_file_is_rotated_whole(tmp_path: Path) -> None:
    path = tmp_path / "cni.log"
    big = b"".join(event_line(n) for n in range(100))
    path.write_bytes(big)
    RotatingFile(str(path), 1000, 0).append(event_line(100))
    (backup,) = backups_of(tmp_path)
    assert backup.read_bytes() == big + event_line(100)


# -- compression -----------------------------------------------------------------------------------

COMPRESS_SCRIPT = """
import sys
from cni_logger.filesink import RotatingFile
sink = RotatingFile(sys.argv[1], 1, 0, compress=True)
for n in range(int(sys.argv[2])):
    sink.append(('{"n":%d}\\n' % n).encode())
"""


def wait_for(condition: Any, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return bool(condition())


def test_compress_gzips_older_backups_in_a_detached_child(tmp_path: Path) -> None:
    proc = run_python(COMPRESS_SCRIPT, str(tmp_path / "cni.log"), "4")
    assert proc.returncode == 0, proc.stderr

    def settled() -> bool:
        names = sorted(p.name.removesuffix(".gz") + (" gz" if p.name.endswith(".gz") else "")
                       for p in tmp_path.iterdir())
        return [n.endswith(" gz") for n in names] == [True, True, True, False]  # and no .tmp. files

    # Every older backup gzipped, the newest one left alone: it may still have a late writer.
    assert wait_for(settled), sorted(p.name for p in tmp_path.iterdir())
    backups = backups_of(tmp_path)
    assert [p.name.endswith(".gz") for p in backups] == [True, True, True, False]
    for n, backup in enumerate(backups):
        assert read_lines(backup) == [b'{"n":%d}' % n]  # intact gzip, the whole original content
        assert stat.S_IMODE(backup.stat().st_mode) == 0o640
        if backup.name.endswith(".gz"):
            assert not backup.with_name(backup.name.removesuffix(".gz")).exists()  # stem removed
            with gzip.open(backup) as gz:
                gz.read()
    assert not (tmp_path / "cni.log").exists()


def test_compress_backup_keeps_a_backup_that_changed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    stem = tmp_path / "cni.log.20261128T021506.123456Z"
    stem.write_bytes(event_line(1))
    real_fsync = os.fsync

    def late_writer_appends(fd: int) -> None:
        real_fsync(fd)
        with stem.open("ab") as late:
            late.write(event_line(2))

    monkeypatch.setattr(filesink.os, "fsync", late_writer_appends)
    assert filesink.compress_backup(str(stem)) is False
    assert stem.read_bytes() == event_line(1) + event_line(2)
    assert [p.name for p in tmp_path.iterdir()] == [stem.name]  # no .gz, no temporary file


def test_compress_backup_round_trip(tmp_path: Path) -> None:
    stem = tmp_path / "cni.log.20261128T021506.123456Z"
    data = b"".join(event_line(n) for n in range(50))
    stem.write_bytes(data)
    assert filesink.compress_backup(str(stem)) is True
    assert not stem.exists()
    assert gzip.decompress((tmp_path / (stem.name + ".gz")).read_bytes()) == data
