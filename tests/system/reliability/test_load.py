"""Load: hundreds of real plugin processes sharing one small, constantly rotating log file.

Every run mixes ADD, CHECK and DEL, each invocation with its own container id, so every event can be
accounted for across the live file and all rotated files (plain and gzipped). Rotation is forced every
few KiB (``maxSize`` 0.004 MB). The default runs are sized to finish in well under a minute on two
cores; ``--run-slow`` runs the longer variants.
"""

from __future__ import annotations

import fcntl
import json
import os
import select
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.harness.plugin import REPO, cni_env
from tests.harness.reliability import (
    MAX_EVENT_BYTES,
    PREV_RESULT,
    Job,
    KnownBug,
    LoadStats,
    audit_log,
    log_files,
    mixed_jobs,
    mode,
    net_config,
    run_in_process,
    run_jobs,
    run_proc,
    stray_temporaries,
    wait_until_quiet,
)

MAX_SIZE_MB = 0.004
MAX_BYTES = int(MAX_SIZE_MB * 1024 * 1024)
PARALLEL = 16


def load_config(log: Path, *, compress: bool, max_backups: int = 0, max_size: float = MAX_SIZE_MB) -> dict[str, Any]:
    return net_config(log, logOptions={"maxSize": max_size, "maxBackups": max_backups, "compress": compress})


def figures(name: str, stats: LoadStats, **more: object) -> None:
    extra = " ".join(f"{k}={v}" for k, v in more.items())
    print(f"\nFIGURES {name}: processes={stats.processes} killed={stats.killed} "
          f"max_in_flight={stats.max_in_flight} wall={stats.wall_seconds:.1f}s {extra}")


def check_answers(jobs: list[Job]) -> None:
    """Every process that was not killed answered exactly as the spec requires."""
    answered_add = {**PREV_RESULT, "cniVersion": "1.0.0"}
    for job in jobs:
        if job.killed:
            continue
        assert job.rc == 0, (job.key, job.rc, job.stdout, job.stderr[-500:])
        assert b"Traceback" not in job.stderr, job.stderr
        if job.command == "ADD":
            assert json.loads(job.stdout) == answered_add, job.stdout
        else:
            assert job.stdout == b"", job.stdout


def check_files(log: Path, *, max_backups: int = 0) -> list[Path]:
    """Modes, sizes, no leftover temporaries; returns the backups."""
    assert stray_temporaries(log) == []
    files = log_files(log)
    backups = [p for p in files if p != log]
    for path in files:
        assert mode(path) == 0o640, (path, oct(mode(path)))
        assert path.is_file() and not path.is_symlink()
    for path in backups:
        if not path.name.endswith(".gz"):  # the size limit is soft by the events in flight
            assert path.stat().st_size <= MAX_BYTES + PARALLEL * MAX_EVENT_BYTES, path
    stems = [p.name.removesuffix(".gz") for p in backups]
    assert len(stems) == len(set(stems)), "a backup exists both plain and gzipped"
    if max_backups:
        assert len(backups) <= max_backups, [p.name for p in backups]
    return backups


@pytest.mark.parametrize("count", [500, pytest.param(2000, marks=pytest.mark.slow)])
@pytest.mark.parametrize("compress", [False, True], ids=["plain", "gzip"])
def test_every_event_exactly_once(tmp_path: Path, compress: bool, count: int) -> None:
    log = tmp_path / "logs" / "audit.log"  # the directory does not exist yet: the plugin creates it
    jobs = mixed_jobs("load", count, load_config(log, compress=compress))
    stats = run_jobs(jobs, parallel=PARALLEL)
    check_answers(jobs)
    settled = wait_until_quiet(log)

    audit = audit_log(log, {job.key: job.command for job in jobs})
    assert audit.problems() == []
    assert len(audit.events) == count
    assert mode(log.parent) == 0o750
    backups = check_files(log)
    assert len(backups) >= count // 20, "rotation did not keep up"
    compressed = [p for p in backups if p.name.endswith(".gz")]
    if compress:
        # Compression skips the newest backup (a writer may still hold it) and any backup written to
        # while it was being compressed; everything else is gzipped.
        assert len(compressed) >= len(backups) - 3, (len(compressed), len(backups))
    else:
        assert compressed == []
    figures(f"load[{'gzip' if compress else 'plain'}]", stats, files=len(audit.files),
            gz=len(compressed), events=len(audit.events), lost=len(audit.missing), settle=f"{settled:.1f}s")


@pytest.mark.parametrize("compress", [False, True], ids=["plain", "gzip"])
def test_retention_keeps_at_most_max_backups(tmp_path: Path, compress: bool) -> None:
    log = tmp_path / "audit.log"
    jobs = mixed_jobs("keep", 120, load_config(log, compress=compress, max_backups=3))
    stats = run_jobs(jobs, parallel=PARALLEL)
    check_answers(jobs)
    wait_until_quiet(log)

    backups = check_files(log, max_backups=3)
    audit = audit_log(log, {job.key: job.command for job in jobs})
    # Old events are gone by design; what is kept is intact, unique and ours.
    assert not (audit.duplicated or audit.unexpected or audit.torn or audit.merged or audit.empty), audit.problems()
    assert len(audit.events) >= 4, "retention kept less than the live file"
    newest = {job.key for job in jobs[-3:]}
    assert newest <= {e["cni"]["container_id"] for e in audit.events}, "the newest events were pruned"
    figures(f"retention[{'gzip' if compress else 'plain'}]", stats, backups=len(backups),
            kept_events=len(audit.events))


def assert_unlocked(paths: list[Path]) -> None:
    for path in paths:
        if path.name.endswith(".gz"):
            continue
        fd = os.open(path, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # BlockingIOError if a dead process held it
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)


@pytest.mark.parametrize(("count", "compress"), [
    (300, False),
    pytest.param(1500, False, marks=pytest.mark.slow),
    pytest.param(1500, True, marks=pytest.mark.slow),
])
def test_sigkill_at_random_points(tmp_path: Path, count: int, compress: bool) -> None:
    log = tmp_path / "audit.log"
    config = load_config(log, compress=compress)
    jobs = mixed_jobs("kill", count, config, kill_fraction=0.4, seed=count)
    stats = run_jobs(jobs, parallel=PARALLEL)
    check_answers(jobs)
    wait_until_quiet(log)

    killed = [job for job in jobs if job.killed]
    assert killed, "no process was killed: the kill window is wrong for this machine"
    expected = {job.key: job.command for job in jobs if not job.killed}
    audit = audit_log(log, expected, maybe=[job.key for job in killed])
    recorded = set(audit.counts)
    killed_after_write = [job for job in killed if job.key in recorded]
    # Only a writer killed mid-write may leave a damaged line, and only its own: every survivor's
    # event is present exactly once, nothing is merged, and at most one torn line per killed process
    # whose event is not complete.
    assert audit.problems(allowed_torn=len(killed) - len(killed_after_write), allowed_empty=len(killed)) == []
    files = log_files(log)
    check_files(log)

    # No lock is left behind: a non-blocking exclusive lock succeeds on every file ...
    assert_unlocked(files)
    # ... and a fresh process rotates: with a one-byte limit its own append must trigger it.
    before = {p.name for p in log_files(log) if p != log}
    fresh = run_proc("ADD", load_config(log, compress=False, max_size=1e-6),
                     env=cni_env("ADD", CNI_CONTAINERID="after-the-kills"))
    assert fresh.rc == 0, fresh
    after = {p.name for p in log_files(log) if p != log}
    new = sorted(after - before)
    assert len(new) == 1, (new, "the fresh process did not rotate")
    assert not log.exists() or log.stat().st_size == 0
    last = (log.parent / new[0]).read_bytes().split(b"\n")[-2]
    assert json.loads(last)["cni"]["container_id"] == "after-the-kills"

    figures(f"sigkill[{'gzip' if compress else 'plain'}]", stats,
            killed_after_write=len(killed_after_write), torn=len(audit.torn), empty=len(audit.empty),
            survivors=len(expected), lost=len(audit.missing))


# -- SIGKILL at the two worst points, deterministically ---------------------------------------------

HOOKED_PLUGIN = r"""
import os, sys, time
from cni_logger import filesink, skel
from cni_logger.plugin import LoggerPlugin

where, ready = sys.argv[1], int(sys.argv[2])

def pause():
    os.write(ready, b"!")
    while True:
        time.sleep(60)

if where == "rotating":  # inside _rotate: the flock is held, the inode re-checked, the rename next
    filesink.RotatingFile._new_backup_name = lambda self: pause()
else:                    # inside the append: half of the line is in the file, the rest never comes
    def half(self, fd, data):
        os.write(fd, data[: len(data) // 2])
        pause()
    filesink.RotatingFile._write_all = half
sys.exit(skel.run(LoggerPlugin()))
"""


def start_paused_plugin(where: str, config: dict[str, Any], key: str) -> subprocess.Popen[bytes]:
    """The real plugin code in a child process, stopped at ``where``; returns once it got there."""
    r, w = os.pipe()
    proc = subprocess.Popen([str(REPO / ".venv" / "bin" / "python"), "-c", HOOKED_PLUGIN, where, str(w)],
                            pass_fds=[w], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env=cni_env("ADD", CNI_CONTAINERID=key))
    os.close(w)
    try:
        assert proc.stdin is not None
        proc.stdin.write(json.dumps(config).encode())
        proc.stdin.close()
        ready, _, _ = select.select([r], [], [], 20)
        assert ready and os.read(r, 1) == b"!", f"the hooked plugin never reached {where}"
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    finally:
        os.close(r)
    return proc


def test_sigkill_while_holding_the_rotation_lock(tmp_path: Path) -> None:
    log = tmp_path / "audit.log"
    assert run_proc("ADD", load_config(log, compress=False), env=cni_env("ADD", CNI_CONTAINERID="first")).rc == 0
    victim = start_paused_plugin("rotating", load_config(log, compress=False, max_size=1e-6), "victim")
    try:
        fd = os.open(log, os.O_RDONLY)
        try:
            with pytest.raises(BlockingIOError):  # the paused process really holds the lock
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        finally:
            os.close(fd)
        # Meanwhile another process neither waits for the lock nor loses its event.
        meanwhile = run_proc("ADD", load_config(log, compress=False, max_size=1e-6),
                             env=cni_env("ADD", CNI_CONTAINERID="meanwhile"))
        assert meanwhile.rc == 0 and meanwhile.elapsed < 5, meanwhile
    finally:
        victim.send_signal(signal.SIGKILL)
        victim.wait(timeout=10)
    assert victim.returncode == -signal.SIGKILL

    assert_unlocked(log_files(log))
    fresh = run_proc("ADD", load_config(log, compress=False, max_size=1e-6),
                     env=cni_env("ADD", CNI_CONTAINERID="fresh"))
    assert fresh.rc == 0
    backups = [p for p in log_files(log) if p != log]
    assert len(backups) == 1 and not log.exists(), "the fresh process did not rotate"
    audit = audit_log(log, {"first": "ADD", "victim": "ADD", "meanwhile": "ADD", "fresh": "ADD"})
    assert audit.problems() == []  # the victim's event was complete before it was killed


def test_sigkill_mid_write_damages_only_its_own_line(tmp_path: Path) -> None:
    log = tmp_path / "audit.log"
    config = load_config(log, compress=False, max_size=1.0)
    for key in ("one", "two"):
        assert run_proc("ADD", config, env=cni_env("ADD", CNI_CONTAINERID=key)).rc == 0
    victim = start_paused_plugin("writing", config, "victim")
    victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=10)
    assert not log.read_bytes().endswith(b"\n"), "the victim should have left half a line"

    for key in ("three", "four"):
        assert run_proc("ADD", config, env=cni_env("ADD", CNI_CONTAINERID=key)).rc == 0
    audit = audit_log(log, {"one": "ADD", "two": "ADD", "three": "ADD", "four": "ADD"}, maybe=["victim"])
    assert audit.problems(allowed_torn=1) == []
    assert len(audit.torn) == 1 and audit.glued == ["three"] and not audit.unrepaired
    assert audit.torn[0].raw.startswith(b'{"@timestamp":') and b'"victim"' in audit.torn[0].raw
    assert_unlocked(log_files(log))


# -- a writer that stalls between open and write ----------------------------------------------------


def stalled_writer(monkeypatch: pytest.MonkeyPatch, log: Path, config: dict[str, Any],
                   until: str) -> dict[str, Any]:
    """Run one ADD in-process whose append stalls (as if descheduled) after opening the live file and
    before writing, while real plugin processes keep appending, until ``until`` holds for the file it
    opened: ``"rotated-twice"`` (two rotations since) or ``"unlinked"`` (compressed or pruned away)."""
    from cni_logger import filesink

    original = filesink.RotatingFile._write_all
    seen: dict[str, Any] = {"others": []}

    def stalled(self: filesink.RotatingFile, fd: int, data: bytes) -> None:
        if "inode" not in seen:
            seen["inode"] = os.fstat(fd).st_ino
            for n in range(60):
                key = f"other-{n:03d}"
                run = run_proc("ADD", config, env=cni_env("ADD", CNI_CONTAINERID=key))
                assert run.rc == 0
                seen["others"].append(key)
                names = [p.name for p in log_files(log) if p != log]
                if until == "rotated-twice" and len(names) >= 2 and os.fstat(fd).st_nlink:
                    break
                if until == "unlinked" and os.fstat(fd).st_nlink == 0:
                    break
                if until == "unlinked" and n % 4 == 3:
                    wait_until_quiet(log, settle=0.3)
                    if os.fstat(fd).st_nlink == 0:
                        break
            seen["nlink_at_write"] = os.fstat(fd).st_nlink
        original(self, fd, data)

    monkeypatch.setattr(filesink.RotatingFile, "_write_all", stalled)
    rc, _ = run_in_process(cni_env("ADD", CNI_CONTAINERID="stalled"), json.dumps(config).encode())
    assert rc == 0
    monkeypatch.undo()
    wait_until_quiet(log)
    return seen


def test_stalled_writer_lands_in_its_backup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """docs/reliability-security.md: a writer that opened the file just before a rename finishes its line into the
    backup."""
    log = tmp_path / "audit.log"
    config = load_config(log, compress=False)
    seen = stalled_writer(monkeypatch, log, config, "rotated-twice")
    assert seen["nlink_at_write"] == 1
    audit = audit_log(log, {"stalled": "ADD", **dict.fromkeys(seen["others"], "ADD")})
    assert audit.problems() == []


def test_stalled_writer_survives_compression(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    log = tmp_path / "audit.log"
    config = load_config(log, compress=True)
    seen = stalled_writer(monkeypatch, log, config, "unlinked")
    assert seen["nlink_at_write"] == 0, "set-up: the stalled writer's file was never compressed away"
    audit = audit_log(log, {"stalled": "ADD", **dict.fromkeys(seen["others"], "ADD")})
    assert not (audit.duplicated or audit.unexpected or audit.torn or audit.merged), audit.problems()
    assert [k for k in audit.missing if k != "stalled"] == []
    if audit.missing:
        raise KnownBug(f"the stalled writer's event was lost: {audit.missing}")
