"""Faults in the log file's path: fail-open by default, the documented strict answers with
``failOnLogError: true``, a reason on stderr, and logging that resumes when the fault clears.

Every plugin run is bounded (10 s subprocess timeout) and timed: no fault may make an invocation wait.
Root bypasses file permissions, so "permission denied" runs the plugin as ``nobody`` through
``setpriv``; "operation not permitted" uses an immutable (``chattr +i``) directory as root.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import stat
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cni_logger import skel
from cni_logger.filesink import dropped_path
from tests.harness.plugin import cni_env
from tests.harness.reliability import (
    PREV_RESULT,
    KnownBug,
    Timed,
    audit_log,
    json_lines,
    lines_of,
    mode,
    net_config,
    run_proc,
)
from tests.system.reliability.conftest import remount

ADD_ANSWER = {**PREV_RESULT, "cniVersion": "1.0.0"}
QUICK = 5.0
"""Seconds an invocation may take on a fault path (the subprocess timeout is 10 s)."""
_serial = iter(range(1_000_000))


def cid(tag: str) -> str:
    return f"{tag}-{next(_serial):04d}"


def add(log_file: str | Path, tag: str, **kw: Any) -> Timed:
    extra = {k: kw.pop(k) for k in ("failOnLogError", "version") if k in kw}
    version = extra.pop("version", "1.0.0")
    return run_proc("ADD", net_config(log_file, version, **extra), env=cni_env("ADD", CNI_CONTAINERID=cid(tag)), **kw)


def assert_fail_open(log_file: str | Path, reason: str, **kw: Any) -> None:
    """Default policy: ADD answers its prevResult, CHECK and DEL succeed; stderr names path and reason."""
    run = add(log_file, "open", **kw)
    assert run.elapsed < QUICK, run.elapsed
    assert run.rc == 0, run
    assert run.doc == ADD_ANSWER
    err = run.stderr.decode()
    assert str(log_file) in err and reason in err, err
    assert b"Traceback" not in run.stderr
    [event] = run.stderr_events
    assert event["log"]["level"] == "warning"
    assert any("audit log file not written" in w and reason in w for w in event["cni"]["warnings"]), event
    diagnostics = [d for d in json_lines(run.stderr) if "event" not in d]
    assert any(reason in json.dumps(d) for d in diagnostics), diagnostics
    for command in ("CHECK", "DEL"):
        other = run_proc(command, net_config(log_file), env=cni_env(command, CNI_CONTAINERID=cid("open")), **kw)
        assert other.rc == 0 and other.stdout == b"", other
        assert reason in other.stderr.decode()


def assert_strict(log_file: str | Path, reason: str, *, status_unavailable: bool = True, **kw: Any) -> None:
    """failOnLogError: ADD code 11, DEL still succeeds, STATUS (1.1.0) code 50 while the file cannot be opened."""
    run = add(log_file, "strict", failOnLogError=True, **kw)
    assert run.elapsed < QUICK
    assert run.rc == 1, run
    assert run.doc["code"] == skel.ERR_TRY_AGAIN_LATER, run.doc
    assert run.doc["msg"] == "audit log unavailable"
    assert str(log_file) in run.doc["details"] and reason in run.doc["details"], run.doc
    assert reason in run.stderr.decode()
    [event] = run.stderr_events
    assert event["event"]["outcome"] == "failure" and event["event"]["code"] == "11"

    strict = net_config(log_file, failOnLogError=True)
    deleted = run_proc("DEL", strict, env=cni_env("DEL", CNI_CONTAINERID=cid("strict")), **kw)
    assert deleted.rc == 0 and deleted.stdout == b"", deleted

    status = run_proc("STATUS", net_config(log_file, "1.1.0", prev=False, failOnLogError=True), **kw)
    assert status.elapsed < QUICK
    if status_unavailable:
        assert status.rc == 1 and status.doc["code"] == skel.ERR_PLUGIN_NOT_AVAILABLE, status
        assert reason in status.doc["details"], status.doc
    else:
        assert status.rc == 0, status


def assert_resumed(log_file: Path, lost: bool = False, **kw: Any) -> None:
    """After the fault clears, the next ADD's event is in the file; with ``lost``, followed by one
    ``logger-dropped`` event that counts what the fault cost (the plugin counted it in a root-only file
    on /run, which the fault did not touch)."""
    run = add(log_file, "resumed", **kw)
    assert run.rc == 0 and run.doc == ADD_ANSWER, run
    assert b"not written" not in run.stderr, run.stderr
    key = run.env["CNI_CONTAINERID"]
    events = audit_log(log_file).events
    assert key in {e["cni"].get("container_id") for e in events}
    assert mode(log_file) == 0o640
    dropped = [e for e in events if e["event"]["action"] == "logger-dropped"]
    if not lost:
        assert dropped == []
        return
    [event] = dropped
    assert events[-1] is event, "written right after the resumed ADD's own event"
    counted = event["cni"]["coverage"]
    assert counted["dropped"] >= 3 and counted["complete"] is True, counted
    assert {"ADD", "CHECK", "DEL"} <= set(counted["commands"]), counted
    assert any(c.startswith("open-") for c in counted["containers"]), counted
    assert not Path(dropped_path(str(log_file))).exists()


# -- disk full, read-only --------------------------------------------------------------------------


def fill(directory: Path) -> Path:
    filler = directory / "filler"
    with open(filler, "wb", buffering=0) as out:
        for size in (4096, 1):
            try:
                while True:
                    out.write(b"\0" * size)
            except OSError as exc:
                assert exc.errno == 28, exc  # ENOSPC
    return filler


def test_disk_full(tmpfs: Path) -> None:
    log = tmpfs / "audit.log"
    for _ in range(2):
        assert add(log, "before").rc == 0
    filler = fill(tmpfs)

    # The file's last page may still hold an event or two; the next ones fail with ENOSPC, one of
    # them possibly after a short write (a partial line), and the plugin still answers correctly.
    for _ in range(12):
        run = add(log, "full")
        assert run.rc == 0 and run.doc == ADD_ANSWER, run
        if b"no space left" in run.stderr:
            break
    else:
        pytest.fail("the tmpfs never filled up after 12 events")
    assert_fail_open(log, "no space left on the device")
    assert_strict(log, "no space left on the device", status_unavailable=False)  # the file still opens

    filler.unlink()
    assert_resumed(log, lost=True)
    audit = audit_log(log)
    # A short write leaves at most one damaged line (the cut-short event, with the next event glued
    # on); the next writer rewrites its event on a line of its own, so no complete event is lost.
    assert not audit.merged and len(audit.torn) <= 1 and not audit.empty, audit.problems()
    assert not audit.unrepaired and not audit.duplicated
    for torn in audit.torn:
        assert torn.raw.startswith(b'{"@timestamp":'), torn


def test_read_only_filesystem(tmpfs: Path) -> None:
    log = tmpfs / "audit.log"
    assert add(log, "before").rc == 0
    remount(tmpfs, "ro")
    try:
        assert_fail_open(log, "the filesystem is read-only")
        assert_strict(log, "the filesystem is read-only")
        assert_fail_open(tmpfs / "sub" / "new.log", "the filesystem is read-only")
    finally:
        remount(tmpfs, "rw")
        Path(dropped_path(str(tmpfs / "sub" / "new.log"))).unlink(missing_ok=True)  # never resumed: ours to remove
    assert_resumed(log, lost=True)
    assert audit_log(log).problems() == []


# -- permissions -----------------------------------------------------------------------------------


@pytest.mark.parametrize("where", ["dir-0500", "root-file-0640"])
@pytest.mark.usefixtures("unprivileged")
def test_permission_denied_as_nobody(public_dir: Path, where: str) -> None:
    locked = public_dir / "locked"
    locked.mkdir(mode=0o500)
    os.chmod(locked, 0o500 if where == "dir-0500" else 0o755)
    log = locked / "audit.log"
    if where == "root-file-0640":
        log.write_bytes(b"")
        os.chmod(log, 0o640)
    assert_fail_open(log, "permission denied", as_nobody=True)
    assert_strict(log, "permission denied", as_nobody=True)
    assert not log.exists() or log.stat().st_size == 0

    shutil.chown(locked, "nobody", "nogroup")
    os.chmod(locked, 0o750)
    if log.exists():
        shutil.chown(log, "nobody", "nogroup")
    assert_resumed(log, as_nobody=True)
    assert log.stat().st_uid == 65534


def test_root_is_not_stopped_by_mode_bits(public_dir: Path) -> None:
    """Documents why the permission test drops to nobody: as root a 0500 directory is no obstacle."""
    if os.geteuid() != 0:
        pytest.skip("only meaningful as root")
    locked = public_dir / "locked"
    locked.mkdir(mode=0o500)
    os.chmod(locked, 0o500)
    assert_resumed(locked / "audit.log")


@pytest.fixture
def immutable_dir(public_dir: Path) -> Iterator[Path]:
    path = public_dir / "immutable"
    path.mkdir()
    done = subprocess.run(["chattr", "+i", str(path)], capture_output=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"chattr +i not possible here: {done.stderr.decode(errors='replace').strip()}")
    try:
        yield path
    finally:
        subprocess.run(["chattr", "-i", str(path)], capture_output=True, check=False)


def test_immutable_directory(immutable_dir: Path) -> None:
    log = immutable_dir / "audit.log"
    assert_fail_open(log, "operation not permitted")
    assert_strict(log, "operation not permitted")
    assert_fail_open(immutable_dir / "deeper" / "audit.log", "operation not permitted")
    assert list(immutable_dir.iterdir()) == []
    subprocess.run(["chattr", "-i", str(immutable_dir)], check=True)
    assert_resumed(log, lost=True)


# -- what is at the path ---------------------------------------------------------------------------


@pytest.mark.parametrize("umask", [0o000, 0o077])
def test_missing_parent_directories_are_created_0750(tmp_path: Path, umask: int) -> None:
    log = tmp_path / "a" / "b" / "c" / "audit.log"
    run = add(log, "mkdir", umask=umask, failOnLogError=True)
    assert run.rc == 0 and run.doc == ADD_ANSWER, run
    for directory in (tmp_path / "a", tmp_path / "a" / "b", tmp_path / "a" / "b" / "c"):
        assert mode(directory) == 0o750, (directory, oct(mode(directory)))
    assert mode(log) == 0o640
    assert len(audit_log(log).events) == 1


def test_log_file_is_a_directory(tmp_path: Path) -> None:
    log = tmp_path / "audit.log"
    log.mkdir()
    assert_fail_open(log, "is a directory")
    assert_strict(log, "is a directory")
    assert list(log.iterdir()) == []
    log.rmdir()
    assert_resumed(log, lost=True)


def test_parent_is_a_file(tmp_path: Path) -> None:
    parent = tmp_path / "plain-file"
    parent.write_bytes(b"keep\n")
    log = parent / "audit.log"
    assert_fail_open(log, "a parent of the path is not a directory")
    assert_strict(log, "a parent of the path is not a directory")
    assert parent.read_bytes() == b"keep\n"


def test_trailing_slash_is_an_invalid_setting(tmp_path: Path) -> None:
    log = f"{tmp_path}/logs/"
    run = add(log, "slash")
    assert run.rc == 0 and run.doc == ADD_ANSWER
    assert "logFile" in run.stderr.decode() and "not a directory" in run.stderr.decode()
    strict = add(log, "slash", failOnLogError=True)
    assert strict.rc == 1 and strict.doc["code"] == skel.ERR_INVALID_NETWORK_CONFIG, strict
    assert not (tmp_path / "logs").exists()


@pytest.mark.parametrize("device", ["/dev/full", "/dev/null"])
def test_device_is_refused(device: str) -> None:
    assert_fail_open(device, "is not a regular file")
    assert_strict(device, "is not a regular file")
    assert stat.S_ISCHR(os.stat(device).st_mode)


def test_fifo_without_reader_does_not_block(tmp_path: Path) -> None:
    log = tmp_path / "audit.log"
    os.mkfifo(log, 0o640)
    assert_fail_open(log, "is not a regular file")   # each run asserts it took < 5 s (timeout 10 s)
    assert_strict(log, "is not a regular file")
    assert stat.S_ISFIFO(log.lstat().st_mode)
    log.unlink()
    assert_resumed(log, lost=True)


def test_fifo_with_reader_gets_nothing(tmp_path: Path) -> None:
    log = tmp_path / "audit.log"
    os.mkfifo(log, 0o640)
    reader = os.open(log, os.O_RDONLY | os.O_NONBLOCK)
    try:
        assert_fail_open(log, "is not a regular file")
        try:
            data = os.read(reader, 65536)
        except BlockingIOError:
            data = b""
        assert data == b"", data
    finally:
        os.close(reader)


def test_unix_socket_is_refused(tmp_path: Path) -> None:
    log = tmp_path / "audit.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(log))
    server.listen(1)
    try:
        run = add(log, "sock")
        assert run.rc == 0 and run.doc == ADD_ANSWER and run.elapsed < QUICK
        assert str(log) in run.stderr.decode() and b"not written" in run.stderr
        strict = add(log, "sock", failOnLogError=True)
        assert strict.rc == 1 and strict.doc["code"] == skel.ERR_TRY_AGAIN_LATER
    finally:
        server.close()


@pytest.mark.parametrize("kind", ["to-file", "dangling", "to-directory", "relative-to-file"])
def test_symlink_is_not_followed(tmp_path: Path, kind: str) -> None:
    target_dir = tmp_path / "elsewhere"
    target_dir.mkdir()
    target = target_dir / ("dir" if kind == "to-directory" else "target.log")
    if kind == "to-directory":
        target.mkdir()
    elif kind != "dangling":
        target.write_bytes(b"ORIGINAL CONTENT\n")
        os.utime(target, ns=(1_000_000_000, 1_000_000_000))
    log = tmp_path / "audit.log"
    log.symlink_to(os.path.relpath(target, tmp_path) if kind == "relative-to-file" else target)
    before = sorted(p.name for p in target_dir.rglob("*"))

    assert_fail_open(log, "is a symbolic link")
    assert_strict(log, "is a symbolic link")
    assert log.is_symlink()
    assert sorted(p.name for p in target_dir.rglob("*")) == before
    if kind in ("to-file", "relative-to-file"):
        assert target.read_bytes() == b"ORIGINAL CONTENT\n"
        assert target.stat().st_mtime_ns == 1_000_000_000
    elif kind == "dangling":
        assert not target.exists()
    log.unlink()
    assert_resumed(log, lost=True)


def test_dev_stdout_cannot_corrupt_the_answer() -> None:
    """``/dev/stdout`` is a symlink: refused, so stdout stays exactly one JSON document."""
    run = add("/dev/stdout", "stdout")
    assert run.rc == 0 and run.doc == ADD_ANSWER
    assert len(lines_of(run.stdout)) == 1
    assert "is a symbolic link" in run.stderr.decode()


@pytest.mark.parametrize("relative", ["audit.log", "logs/audit.log", "./audit.log", "../audit.log"])
def test_relative_path_is_refused(tmp_path: Path, relative: str) -> None:
    work = tmp_path / "cwd"
    work.mkdir()
    run = add(relative, "rel", cwd=work)
    assert run.rc == 0 and run.doc == ADD_ANSWER
    err = run.stderr.decode()
    assert "logFile" in err and "absolute path" in err and relative in err, err
    assert len(run.stderr_events) == 1          # the default: no file, the event on stderr only
    strict = add(relative, "rel", cwd=work, failOnLogError=True)
    assert strict.rc == 1 and strict.doc["code"] == skel.ERR_INVALID_NETWORK_CONFIG, strict
    assert "logFile" in strict.doc["details"]
    deleted = run_proc("DEL", net_config(relative, failOnLogError=True), cwd=work)
    assert deleted.rc == 0 and deleted.stdout == b""
    assert list(work.iterdir()) == [] and sorted(p.name for p in tmp_path.iterdir()) == ["cwd"]


@pytest.mark.parametrize("setting", [{"logFile": "relative/audit.log"}, {"logOptions": {"maxSize": "big"}}])
def test_status_reports_invalid_setting_under_strict(tmp_path: Path, setting: dict[str, Any]) -> None:
    config = net_config(None, "1.1.0", prev=False, failOnLogError=True, **setting)
    for command in ("ADD", "CHECK", "GC"):
        other = run_proc(command, config, cwd=tmp_path)
        assert other.rc == 1 and other.doc["code"] == skel.ERR_INVALID_NETWORK_CONFIG, (command, other)
    status = run_proc("STATUS", config, cwd=tmp_path)
    assert b"Traceback" not in status.stderr and "logger setting ignored" in status.stderr.decode()
    if status.rc == 0:
        raise KnownBug(f"STATUS answered success under failOnLogError with {setting}; ADD answers code 7")
    assert status.doc["code"] in (skel.ERR_INVALID_NETWORK_CONFIG, skel.ERR_PLUGIN_NOT_AVAILABLE), status


# -- nothing waits unboundedly ---------------------------------------------------------------------


def test_stdin_timeout_in_process() -> None:
    """The fast variant: ``read_stdin`` gives up on a pipe that is never closed, and on one that trickles."""
    r, w = os.pipe()
    try:
        started = time.monotonic()
        with pytest.raises(skel.CNIError) as caught:
            skel.read_stdin(r, timeout=0.5)
        assert caught.value.code == skel.ERR_IO_FAILURE
        assert 0.4 < time.monotonic() - started < 3

        os.write(w, b'{"cniVersion":')  # some input, then nothing more, never closed
        with pytest.raises(skel.CNIError):
            skel.read_stdin(r, timeout=0.3)
    finally:
        os.close(r)
        os.close(w)


def test_stdin_trickle_in_process() -> None:
    """A writer that sends a byte every 50 ms forever is cut off at the deadline, not served forever."""
    import threading

    r, w = os.pipe()
    stop = threading.Event()

    def trickle() -> None:
        while not stop.is_set():
            try:
                os.write(w, b" ")
            except OSError:
                return
            time.sleep(0.05)

    thread = threading.Thread(target=trickle, daemon=True)
    thread.start()
    try:
        started = time.monotonic()
        with pytest.raises(skel.CNIError) as caught:
            skel.read_stdin(r, timeout=0.5)
        assert caught.value.code == skel.ERR_IO_FAILURE
        assert time.monotonic() - started < 3
    finally:
        stop.set()
        thread.join()
        os.close(r)
        os.close(w)


def open_stdin_run(trickle: bool) -> tuple[subprocess.CompletedProcess[bytes], float]:
    """The real process with a stdin pipe that stays open (optionally with a byte every 0.5 s)."""
    from tests.harness.plugin import plugin_executable

    proc = subprocess.Popen([plugin_executable()], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=cni_env("ADD"))
    assert proc.stdin is not None
    started = time.monotonic()
    proc.stdin.write(b'{"cniVersion":"1.0.0",')
    proc.stdin.flush()
    try:
        while trickle and proc.poll() is None and time.monotonic() - started < 15:
            try:
                proc.stdin.write(b" ")
                proc.stdin.flush()
            except BrokenPipeError:
                break
            time.sleep(0.5)
        proc.wait(timeout=15)  # not communicate(): it would close stdin
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    elapsed = time.monotonic() - started
    assert proc.stdout is not None and proc.stderr is not None
    stdout, stderr = proc.stdout.read(), proc.stderr.read()  # small: they fit in the pipe buffers
    for stream in (proc.stdin, proc.stdout, proc.stderr):
        try:
            stream.close()
        except BrokenPipeError:
            pass
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr), elapsed


def _assert_stdin_timeout(done: subprocess.CompletedProcess[bytes], elapsed: float) -> None:
    assert done.returncode == 1, done
    doc = json.loads(done.stdout)
    assert doc["code"] == skel.ERR_IO_FAILURE and "10 seconds" in doc["details"], doc
    assert skel.STDIN_TIMEOUT_SECONDS - 0.5 < elapsed < 15, elapsed
    assert b"Traceback" not in done.stderr


def test_stdin_never_closed_real_process() -> None:
    """The plugin gives up with code 5 after its 10 s stdin timeout (bounded here at 15 s)."""
    _assert_stdin_timeout(*open_stdin_run(trickle=False))


@pytest.mark.slow
def test_stdin_trickling_forever_real_process() -> None:
    _assert_stdin_timeout(*open_stdin_run(trickle=True))
