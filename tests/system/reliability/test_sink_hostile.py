"""The file sink under clock steps and in hostile directories, and the audit reader on
trails those leave behind.

Every case drives the installed plugin (and the ``cni-logger`` command) as real processes:

* clock steps: ``libfaketime`` (Debian's ``faketime``) moves the plugin's clock back and forward; the
  kernel's file times stay real, which is what a stepped system clock looks like to a file;
* things that cannot be removed: a directory, an immutable (``chattr +i``) file, a FIFO, a unix
  socket carrying a backup's name;
* compressors: a FIFO named like a backup, a large backup that takes a while to gzip;
* names that are not ours next to the log; stale ``.gz.tmp.<pid>`` files;
* symlinks planted by ``nobody`` in a parent directory of the log;
* addresses recorded in non-canonical IPv6 spellings; a ``.gz`` backup with a bad checksum.
"""

from __future__ import annotations

import gzip
import json
import os
import signal
import socket
import subprocess
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cni_logger import skel
from tests.harness.plugin import REPO, cni_env
from tests.harness.reliability import (
    PREV_RESULT,
    Timed,
    audit_log,
    net_config,
    run_proc,
    wait_for,
    wait_until_quiet,
)

ADD_ANSWER = {**PREV_RESULT, "cniVersion": "1.0.0"}
CLI = str(REPO / ".venv" / "bin" / "cni-logger")
LIBFAKETIME = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1"
OLD_BACKUP = "20200101T000000.000000Z"
"""An old-scheme backup stamp (what every release before the sequence numbers wrote)."""
ROTATE_EVERY_ADD = 0.0005
"""maxSize in MB (~524 bytes): smaller than one event, so every ADD rotates the file."""


def rotating(log: Path, *, backups: int = 0, compress: bool = False, strict: bool = False,
             version: str = "1.0.0", prev: dict[str, Any] | None = None) -> dict[str, Any]:
    conf = net_config(log, version, logOptions={"maxSize": ROTATE_EVERY_ADD, "maxBackups": backups,
                                                "compress": compress})
    if strict:
        conf["failOnLogError"] = True
    if prev is not None:
        conf["prevResult"] = prev
    return conf


def faked(offset: str | None) -> dict[str, str]:
    """An environment whose clock is moved by ``offset`` (libfaketime syntax: ``+365d``, ``-2d``)."""
    if offset is None:
        return {}
    if not os.path.exists(LIBFAKETIME):
        pytest.skip("libfaketime is not installed (Debian package faketime)")
    return {"LD_PRELOAD": LIBFAKETIME, "FAKETIME": offset, "FAKETIME_DONT_FAKE_MONOTONIC": "1",
            "FAKETIME_NO_CACHE": "1"}


def invoke(command: str, config: dict[str, Any], key: str, clock: str | None = None, **kw: Any) -> Timed:
    env = {**cni_env(command, CNI_CONTAINERID=key), **faked(clock), **kw.pop("env", {})}
    return run_proc(command, config, env=env, **kw)


def ok_add(config: dict[str, Any], key: str, clock: str | None = None, **kw: Any) -> Timed:
    run = invoke("ADD", config, key, clock, **kw)
    assert run.rc == 0, run
    assert b"not written" not in run.stderr, run.stderr.decode()
    return run


def keys_in(log: Path) -> list[str]:
    return [e["cni"]["container_id"] for e in audit_log(log).events]


def cli(*argv: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CLI, *argv], capture_output=True, text=True, timeout=timeout, check=False)


def events_in_read_order(log: Path) -> list[str]:
    done = cli("events", "--json", "--log-file", str(log))
    assert done.returncode in (0, 1), done.stderr
    return [json.loads(line)["cni"]["container_id"] for line in done.stdout.splitlines()]


def regular_backups(log: Path) -> list[Path]:
    return sorted(p for p in log.parent.iterdir()
                  if p.name.startswith(log.name + ".") and p.is_file() and not p.is_symlink()
                  and ".tmp." not in p.name)


# -- 1. clock steps ----------------------------------------------------------------------------------

CLOCK_PHASES = {
    "back-after-running-ahead": ["+400d", "+400d", "+400d", None, None, None],     # wrong RTC at boot, then NTP
    "back-from-real-time": [None, None, None, "-30d", "-30d", "-30d"],             # VM snapshot restored
    "back-within-the-second": ["+2s", "+2s", None, None, "+1s", None],
    "forward-then-back-twice": [None, "+10d", None, "+20d", "+5d", "-1d"],
}


@pytest.mark.parametrize("phases", list(CLOCK_PHASES), ids=list(CLOCK_PHASES))
def test_clock_steps_never_prune_the_newest_backups(tmp_path: Path, phases: str) -> None:
    """maxBackups keeps the newest backups in write order, whatever the clock said when each was made."""
    log = tmp_path / "audit.log"
    config = rotating(log, backups=3)
    keys = [f"clock-{n}" for n in range(len(CLOCK_PHASES[phases]))]
    for key, clock in zip(keys, CLOCK_PHASES[phases], strict=True):
        ok_add(config, key, clock)
    assert sorted(keys_in(log)) == sorted(keys[-3:]), sorted(p.name for p in tmp_path.iterdir())
    assert events_in_read_order(log) == keys[-3:]


@pytest.mark.parametrize("compress", [False, True])
def test_clock_steps_keep_the_write_order_for_readers(tmp_path: Path, compress: bool) -> None:
    """All backups kept (maxBackups 0): the audit reader reads them in write order, not clock order."""
    log = tmp_path / "audit.log"
    config = rotating(log, compress=compress)
    clocks = ["+300d", None, "+100d", "-50d", None, "+1d", "-1d", None]
    keys = [f"order-{n}" for n in range(len(clocks))]
    for key, clock in zip(keys, clocks, strict=True):
        ok_add(config, key, clock)
    wait_until_quiet(log)
    assert sorted(keys_in(log)) == sorted(keys)
    assert events_in_read_order(log) == keys


def test_an_upgrade_reads_old_backups_first_and_prunes_them_first(tmp_path: Path) -> None:
    """Backups an earlier release named by time stay readable and count as older than any new one,
    even when their stamps lie in the future of the current clock."""
    log = tmp_path / "audit.log"
    for n, stamp in enumerate(["20991231T235959.000000Z", "20991231T235959.000000Z-1"]):
        line = run_proc("ADD", net_config(None), env=cni_env("ADD", CNI_CONTAINERID=f"old-{n}")).stderr_events[0]
        (tmp_path / f"audit.log.{stamp}").write_text(json.dumps(line) + "\n")
    config = rotating(log, backups=3)
    ok_add(config, "new-0")
    assert events_in_read_order(log) == ["old-0", "old-1", "new-0"]
    ok_add(config, "new-1")
    assert events_in_read_order(log) == ["old-1", "new-0", "new-1"]
    ok_add(config, "new-2")
    assert events_in_read_order(log) == ["new-0", "new-1", "new-2"]


def test_who_had_after_a_backward_step_has_no_interval_ending_before_it_starts(tmp_path: Path) -> None:
    log = tmp_path / "audit.log"
    prev = {**PREV_RESULT, "ips": [{"interface": 2, "address": "10.250.77.99/24"}]}
    config = rotating(log, prev=prev)
    ok_add(config, "stepped", "+400d")                          # ADD while the clock is a year ahead
    deleted = invoke("DEL", config, "stepped")                   # DEL after the clock was corrected
    assert deleted.rc == 0
    done = cli("who-had", "10.250.77.99", "--json", "--log-file", str(log))
    # A qualified answer (exit 3): which of the two recorded times is wrong, the trail cannot tell.
    assert done.returncode == 3, done
    assert "the clock was stepped back" in done.stderr, done.stderr
    holders = [json.loads(line) for line in done.stdout.splitlines()]
    assert len(holders) == 1, holders                            # one interval, closed by its DEL
    [holder] = holders
    assert holder["ended_by"] == "DEL" and holder["until"] is not None, holder
    assert (holder["from"] or holder["seen"]) <= holder["until"], holder
    assert "clock" in done.stderr, done.stderr                   # and the step is reported


def test_a_rotation_never_replaces_an_existing_file(tmp_path: Path) -> None:
    """A file already at the name a compressed backup would take (an operator's, or a previous run's)
    is never replaced: the plain backup is kept instead."""
    log = tmp_path / "audit.log"
    config = rotating(log, compress=True)
    ok_add(config, "first")
    [first] = regular_backups(log)
    squatter = first.with_name(first.name + ".gz")
    squatter.write_bytes(b"NOT OURS\n")
    for n in range(3):
        ok_add(config, f"more-{n}")
    wait_until_quiet(log)
    assert squatter.read_bytes() == b"NOT OURS\n"
    assert first.exists() and b"first" in first.read_bytes()


# -- 2. backups that cannot be removed ---------------------------------------------------------------


@pytest.fixture
def blocker(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Path]:
    """Something that carries the name of the oldest backup and cannot be pruned like a file."""
    path = tmp_path / f"audit.log.{OLD_BACKUP}"
    kind = request.param
    server = None
    if kind == "directory":
        path.mkdir()
        (path / "keep").write_bytes(b"keep\n")
    elif kind == "immutable-file":
        path.write_bytes(b"{}\n")
        done = subprocess.run(["chattr", "+i", str(path)], capture_output=True, check=False)
        if done.returncode != 0:
            pytest.skip(f"chattr +i not possible here: {done.stderr.decode(errors='replace').strip()}")
    elif kind == "fifo":
        os.mkfifo(path, 0o640)
    elif kind == "socket":
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        server.bind(str(path))
    try:
        yield path
    finally:
        if server is not None:
            server.close()
        subprocess.run(["chattr", "-i", str(path)], capture_output=True, check=False)


BLOCKERS = ["directory", "immutable-file", "fifo", "socket"]


@pytest.mark.parametrize("blocker", BLOCKERS, indirect=True)
@pytest.mark.parametrize("compress", [False, True])
def test_a_backup_that_cannot_be_removed_is_a_warning_not_a_failure(tmp_path: Path, blocker: Path,
                                                                     compress: bool) -> None:
    log = tmp_path / "audit.log"
    config = rotating(log, backups=2, compress=compress, strict=True)
    keys = [f"blocked-{n}" for n in range(6)]
    for key in keys:
        run = invoke("ADD", config, key)
        assert run.rc == 0 and run.doc == ADD_ANSWER, run         # the event was written: success
        assert b"not written" not in run.stderr, run.stderr.decode()
        [event] = run.stderr_events
        assert event["event"]["outcome"] == "success"
    assert str(blocker) in run.stderr.decode(), run.stderr.decode()  # and the operator is told
    wait_until_quiet(log)
    # Retention goes on around it: the two newest events are kept, older backups are gone ...
    assert sorted(keys_in(log)) == sorted(keys[-2:]), sorted(p.name for p in tmp_path.iterdir())
    assert len(regular_backups(log)) == 2 + (blocker.is_file() and not blocker.is_symlink())
    # ... and compression too: every backup but the newest is gzipped.
    if compress:
        ours = [p for p in regular_backups(log) if p != blocker]
        assert [p.name.endswith(".gz") for p in ours] == [True, False], [p.name for p in ours]
    assert os.path.lexists(blocker)                               # never touched


# -- 3. compressors ------------------------------------------------------------------------------------


def compressors(marker: str) -> list[int]:
    """Live processes (the plugin's detached compressors) whose environment carries ``marker``."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as env:
                if marker.encode() in env.read():
                    found.append(int(entry))
        except OSError:
            continue
    return found


@pytest.fixture
def marker(tmp_path: Path) -> Iterator[str]:
    """A unique environment value for this test's plugin runs; their stray children are killed afterwards."""
    value = f"CNI_LOGGER_TEST_MARK={tmp_path.name}-{os.getpid()}"
    yield value
    for pid in compressors(value):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def test_a_fifo_named_like_a_backup_blocks_no_compressor(tmp_path: Path, marker: str) -> None:
    log = tmp_path / "audit.log"
    os.mkfifo(tmp_path / f"audit.log.{OLD_BACKUP}", 0o640)
    config = rotating(log, compress=True)
    name, value = marker.split("=", 1)
    for n in range(5):
        ok_add(config, f"fifo-{n}", env={name: value})
    wait_until_quiet(log)
    wait_for(lambda: not compressors(marker), 20, "the compressors to finish")
    assert [p.name.endswith(".gz") for p in regular_backups(log)] == [True] * 4 + [False]


def test_at_most_one_compressor_per_log(tmp_path: Path, marker: str) -> None:
    """A backup large enough to take a while to gzip, then several rotations: never two compressors."""
    log = tmp_path / "audit.log"
    big = tmp_path / f"audit.log.{OLD_BACKUP}"
    with open(big, "wb") as out:
        for _ in range(24):
            out.write(os.urandom(1 << 20))  # incompressible: gzip takes its time
    config = rotating(log, compress=True)
    name, value = marker.split("=", 1)
    most = 0
    for n in range(6):
        ok_add(config, f"busy-{n}", env={name: value})
        most = max(most, len(compressors(marker)))
    deadline = time.monotonic() + 120
    while compressors(marker) and time.monotonic() < deadline:
        most = max(most, len(compressors(marker)))
        tmps = [p for p in tmp_path.iterdir() if p.name.startswith(big.name + ".gz.tmp.")]
        assert len(tmps) <= 1, tmps                                # never gzipped twice at once
        time.sleep(0.05)
    assert most <= 1, f"{most} compressors of one log at once"
    wait_until_quiet(log, timeout=120)
    assert (tmp_path / (big.name + ".gz")).exists() and not big.exists()


# -- 4. names that are not ours ------------------------------------------------------------------------

NOT_OURS = [
    "audit.log.20240101T000000-legal-hold.tar.gz",
    "audit.log.20240101T000000.000000Z.sig",
    "audit.log.20240101T000000.000000Z-final",
    "audit.log.20240101T000000Z",
    "audit.log.20240101T000000.000000Z.gz.tmp.evidence",
    "audit.log.20240101T000000.000000Z-01",
    "audit.log.000001.20240101T000000.000000Z.bak",
    "audit.log.1",
    "audit.log.2.gz",
]


def test_retention_touches_only_our_exact_names(tmp_path: Path, marker: str) -> None:
    log = tmp_path / "audit.log"
    for name in NOT_OURS:
        (tmp_path / name).write_bytes(b"operator's file\n")
    config = rotating(log, backups=1, compress=True)
    name, value = marker.split("=", 1)
    for n in range(5):
        ok_add(config, f"ours-{n}", env={name: value})
    wait_for(lambda: not compressors(marker), 30, "the compressors to finish")
    for name in NOT_OURS:
        assert (tmp_path / name).read_bytes() == b"operator's file\n", name
    assert events_in_read_order(log) == ["ours-4"]


def test_temporaries_of_dead_compressors_are_cleaned_up(tmp_path: Path) -> None:
    log = tmp_path / "audit.log"
    config = rotating(log, compress=True)
    ok_add(config, "before")
    [backup] = regular_backups(log)
    stale = tmp_path / f"{backup.name}.gz.tmp.999999999"       # beyond pid_max: never a live process
    alive = tmp_path / f"{backup.name}.gz.tmp.{os.getpid()}"   # this test is alive: not stale
    stale.write_bytes(b"\x1f\x8b half")
    alive.write_bytes(b"\x1f\x8b busy")
    for n in range(3):
        ok_add(config, f"after-{n}")
    wait_for(lambda: not stale.exists(), 20, f"{stale.name} to be removed")
    assert alive.exists()
    alive.unlink()


# -- 5. symlinks planted in a parent directory -------------------------------------------------------


def as_nobody(*argv: str) -> None:
    subprocess.run(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", *argv],
                   check=True, capture_output=True, timeout=30)


PLANTS = {
    # where the symlink is planted: (mode of its directory, owner of the directory, who plants it)
    "sticky-world-writable": (0o1777, "root", "nobody"),
    "directory-of-nobody": (0o755, "nobody", "nobody"),
    "group-writable": (0o775, "root", "nobody"),
    "root-link-in-nobody-dir": (0o755, "nobody", "root"),
    "root-link-in-group-writable": (0o775, "root", "root"),
}


@pytest.mark.parametrize("plant", list(PLANTS))
@pytest.mark.parametrize("depth", [1, 2])
@pytest.mark.usefixtures("unprivileged")
def test_a_planted_parent_symlink_is_not_followed(public_dir: Path, plant: str, depth: int) -> None:
    dir_mode, owner, planter = PLANTS[plant]
    shared = public_dir / "shared"
    shared.mkdir()
    os.chmod(shared, dir_mode)
    if owner == "nobody":
        os.chown(shared, 65534, 65534)
    else:
        os.chown(shared, 0, 65534)  # group nogroup: the planter's group
    target = public_dir / "target"  # where the attacker wants root's file (a root-only place, say)
    target.mkdir()
    os.chmod(target, 0o755)
    link = shared / "logs"
    if planter == "nobody":
        as_nobody("ln", "-s", str(target), str(link))
    else:
        link.symlink_to(target)
    log = link / "audit.log" if depth == 1 else link / "deeper" / "audit.log"
    if depth == 2:
        (target / "deeper").mkdir()

    run = invoke("ADD", net_config(log), "planted")
    assert run.rc == 0 and run.doc == ADD_ANSWER
    assert "symbolic link" in run.stderr.decode() and str(link) in run.stderr.decode(), run.stderr.decode()
    strict = invoke("ADD", net_config(log, failOnLogError=True), "planted")
    assert strict.rc == 1 and strict.doc["code"] == skel.ERR_TRY_AGAIN_LATER, strict
    assert "symbolic link" in strict.doc["details"]
    status = run_proc("STATUS", net_config(log, "1.1.0", prev=False, failOnLogError=True))
    assert status.rc == 1 and status.doc["code"] == skel.ERR_PLUGIN_NOT_AVAILABLE, status
    assert sorted(p.name for p in target.rglob("*")) == ([] if depth == 1 else ["deeper"])


@pytest.mark.parametrize("relative", [False, True])
def test_a_root_symlink_in_a_root_directory_is_followed(tmp_path: Path, relative: bool) -> None:
    """What root set up (``/var/log -> /data/log`` on some nodes) keeps working."""
    real = tmp_path / "data" / "log"
    real.mkdir(parents=True)
    link = tmp_path / "var-log"
    link.symlink_to(os.path.relpath(real, tmp_path) if relative else real)
    log = link / "cni" / "audit.log"
    ok_add(net_config(log, failOnLogError=True), "root-link")
    assert keys_in(real / "cni" / "audit.log") == ["root-link"]


# -- 11. IPv6 spellings ---------------------------------------------------------------------------------

SPELLINGS = ["FD00:0:0::0005", "fd00:0000:0000:0000:0000:0000:0000:0005", "Fd00::05", "fd00::5",
             "fd00:0:0:0:0:0:0:5"]


@pytest.mark.parametrize("recorded", SPELLINGS)
def test_who_had_compares_addresses_not_spellings(tmp_path: Path, recorded: str) -> None:
    log = tmp_path / "audit.log"
    prev = {**PREV_RESULT, "ips": [{"interface": 2, "address": f"{recorded}/64"}]}
    config = net_config(log, prev=False, prevResult=prev)
    ok_add(config, "v6-holder")
    assert invoke("DEL", config, "v6-holder").rc == 0
    ok_add(net_config(log), "v4-other")
    for asked in ("fd00::5", "FD00:0:0::0005", "fd00:0:0:0:0:0:0:0005"):
        done = cli("who-had", asked, "--json", "--log-file", str(log))
        assert done.returncode == 0, (asked, done.stderr)
        [holder] = [json.loads(line) for line in done.stdout.splitlines()]
        assert holder["container_id"] == "v6-holder" and holder["ended_by"] == "DEL", holder
        events = cli("events", "--ip", asked, "--json", "--log-file", str(log))
        assert len(events.stdout.splitlines()) == 2, (asked, events.stdout)
    assert cli("who-had", "fd00::6", "--log-file", str(log)).returncode == 1


# -- 12. a .gz backup with a bad checksum ----------------------------------------------------------------


def gz_trail(tmp_path: Path, count: int) -> tuple[Path, Path, bytes]:
    """A live file with one event, and a gzipped old-scheme backup holding ``count`` events."""
    log = tmp_path / "audit.log"
    lines = []
    for n in range(count):
        run = run_proc("ADD", net_config(None), env=cni_env("ADD", CNI_CONTAINERID=f"gz-{n:05d}"))
        lines.append(json.dumps(run.stderr_events[0], separators=(",", ":")).encode() + b"\n")
    backup = tmp_path / f"audit.log.{OLD_BACKUP}.gz"
    ok_add(net_config(log), "live-one")
    return log, backup, b"".join(lines)


@pytest.mark.parametrize("damage", ["crc", "length", "crc-and-length"])
def test_a_bad_gzip_trailer_loses_no_event(tmp_path: Path, damage: str) -> None:
    log, backup, content = gz_trail(tmp_path, 40)
    data = bytearray(gzip.compress(content))
    if damage in ("crc", "crc-and-length"):
        data[-8] ^= 0xFF
    if damage in ("length", "crc-and-length"):
        data[-4] ^= 0x01
    backup.write_bytes(bytes(data))
    zcat = subprocess.run(["zcat", str(backup)], capture_output=True, check=False)
    assert zcat.returncode != 0 and zcat.stdout == content  # gzip's own tools recover everything
    done = cli("events", "--json", "--log-file", str(log))
    keys = [json.loads(line)["cni"]["container_id"] for line in done.stdout.splitlines()]
    assert keys == [f"gz-{n:05d}" for n in range(40)] + ["live-one"], done.stderr
    assert str(backup) in done.stderr and "check" in done.stderr, done.stderr


def test_damage_inside_the_stream_keeps_what_precedes_it(tmp_path: Path) -> None:
    log, backup, content = gz_trail(tmp_path, 40)
    data = bytearray(gzip.compress(content, compresslevel=1))
    middle = len(data) * 3 // 4
    data[middle:middle + 16] = b"\xff" * 16
    backup.write_bytes(bytes(data))
    recoverable = zlib.decompressobj(16 + zlib.MAX_WBITS)
    inflated = b""
    for offset in range(len(data)):  # byte by byte: everything zlib can inflate before the damage
        try:
            inflated += recoverable.decompress(bytes(data[offset:offset + 1]))
        except zlib.error:
            break
    expected = []
    for line in inflated.split(b"\n")[:-1]:
        try:
            expected.append(json.loads(line)["cni"]["container_id"])
        except (ValueError, KeyError, TypeError):
            continue
    assert 0 < len(expected) < 40
    done = cli("events", "--json", "--log-file", str(log))
    keys = [json.loads(line)["cni"]["container_id"] for line in done.stdout.splitlines()]
    assert keys == [*expected, "live-one"], done.stderr
    assert str(backup) in done.stderr and "damaged" in done.stderr, done.stderr
