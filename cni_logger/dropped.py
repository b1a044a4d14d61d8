"""Events the plugin could not write, counted where that survives, and put on the record once it can.

Fail-open means a full or read-only log filesystem costs the trail its events, silently unless they
are counted somewhere else. Here: one small record per lost event (time, command, container id),
appended to a file per log file in a root-only directory on tmpfs (``filesink.DROPPED_DIR``,
``/run/cni-logger/dropped``, 0700), which neither a full nor a read-only ``/var`` affects and which a
reboot (that ends every attachment anyway) clears.

Once writing works again the records become one ``logger-dropped`` coverage event
(docs/coverage-events.md) in that trail, written by whoever gets there first: the plugin itself, after
an append that succeeded (it looks for the file with one ``stat``, ``filesink.dropped_path``), or
``install --watch`` on its next pass (``cni_logger.install.coverage``). Whoever flushes first claims the
file by renaming it, so the two never both write the same records; a record appended by a plugin that
opened the file just before the rename is waited for (writers hold a shared ``flock`` while appending
and check, under it, that the name still leads to their file; the flusher takes it exclusively).

This module is on the plugin's failure path (and on its success path only when a file is pending), so
it imports nothing the plugin does not load anyway.
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
import time

from cni_logger.filesink import DROPPED_DIR, dropped_path, pid_alive

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from cni_logger.filesink import RotatingFile

MAX_RECORDS_BYTES = 1 << 20
"""Per log file: about 10,000 records. Beyond it nothing more is recorded but a marker: the event then
says the count is incomplete (``complete: false``), and tmpfs (memory) stays bounded."""
MAX_CONTAINERS = 64
"""``cni.coverage.containers`` lists at most this many (``containers_truncated`` says when there were more)."""
_OVERFLOW = b"!\n"
_CLAIMED = ".claimed."
_FLAGS = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK


def _clean(text: str) -> str:
    return "".join(c if c.isprintable() and c not in "\t\\" else "?" for c in text)[:256] or "-"


def _own_dir(directory: str) -> None:
    """Create ``directory`` (and its parent) 0700; refuse one that others could write or read."""
    for path in (os.path.dirname(directory), directory):
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:
            pass
    st = os.lstat(directory)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o077:
        raise PermissionError(errno.EPERM, f"{directory} is not a directory only its owner can use")


def record(log_file: str, command: str, container_id: str, now_ns: int | None = None,
           directory: str = DROPPED_DIR) -> str:
    """Count one event for ``log_file`` that was not written; the problem, or ``""`` (never raises)."""
    path = dropped_path(log_file, directory)
    line = f"{time.time_ns() if now_ns is None else now_ns}\t{_clean(command)}\t{_clean(container_id)}\n"
    try:
        _own_dir(directory)
        for _ in range(3):
            fd = os.open(path, _FLAGS, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_SH)
                mine, current = os.fstat(fd), os.stat(path, follow_symlinks=False)
                if not stat.S_ISREG(mine.st_mode):
                    return f"{path}: not a regular file"
                if (mine.st_dev, mine.st_ino) != (current.st_dev, current.st_ino):
                    continue  # claimed by a flusher between our open and our lock: the new file
                if mine.st_size < MAX_RECORDS_BYTES:
                    os.write(fd, line.encode("utf-8"))
                elif mine.st_size < MAX_RECORDS_BYTES + 64 * len(_OVERFLOW):
                    os.write(fd, _OVERFLOW)
                return ""
            except FileNotFoundError:
                continue
            finally:
                os.close(fd)
        return f"{path}: kept being claimed"
    except OSError as exc:
        return f"{path}: {exc.strerror or exc}"


def pending(log_file: str, directory: str = DROPPED_DIR) -> list[str]:
    """The files holding records for ``log_file``: the pending one, and claims whose flusher died."""
    path = dropped_path(log_file, directory)
    name = os.path.basename(path)
    try:
        names = os.listdir(directory)
    except OSError:
        return []
    found = [path] if name in names else []
    for other in names:
        head, _, pid = other.rpartition(_CLAIMED)
        if head == name and pid.isdigit() and not pid_alive(int(pid)):
            found.append(os.path.join(directory, other))
    return found


def read_records(path: str) -> tuple[list[tuple[int, str, str]], bool]:
    """The records of a claimed file, and whether they are all there (no overflow, no damaged line)."""
    records: list[tuple[int, str, str]] = []
    complete = True
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # writers that opened it before the rename have finished
        data = b""
        while chunk := os.read(fd, 1 << 16):
            data += chunk
    finally:
        os.close(fd)
    for raw in data.split(b"\n")[:-1] if data.endswith(b"\n") else data.split(b"\n"):
        parts = raw.decode("utf-8", "replace").split("\t")
        if len(parts) == 3 and parts[0].isdigit():
            records.append((int(parts[0]), parts[1], parts[2]))
        elif raw:
            complete = False
    return records, complete


def dropped_event(log_file: str, records: list[tuple[int, str, str]], complete: bool) -> dict[str, Any]:
    """The ``logger-dropped`` event for ``records`` (time ns, command, container id) lost from ``log_file``."""
    from cni_logger import events

    times = [r[0] for r in records]
    commands: dict[str, int] = {}
    for _, command, _ in records:
        commands[command] = commands.get(command, 0) + 1
    containers = list(dict.fromkeys(r[2] for r in records if r[2] != "-"))
    coverage: dict[str, Any] = {"dropped": len(records)}
    if times:
        coverage["first"], coverage["last"] = events.iso_utc(min(times)), events.iso_utc(max(times))
    coverage["commands"] = commands
    coverage["containers"] = containers[:MAX_CONTAINERS]
    coverage["containers_truncated"] = len(containers) > MAX_CONTAINERS
    coverage["complete"] = complete
    count = f"{len(records)}" if complete else f"at least {len(records)}"
    when = f" between {coverage['first']} and {coverage['last']}" if times else ""
    return events.coverage_event(
        "logger-dropped", f"cni-logger could not write {count} events to {log_file}{when}",
        "the plugin could not write to its log file (fail-open)", coverage, level="warning")


def flush(sink: RotatingFile, secret_keys: tuple[str, ...] = (), directory: str = DROPPED_DIR,
          claims: list[str] | None = None) -> list[str]:
    """Write the pending records of ``sink``'s file as one ``logger-dropped`` event; the problems met.

    ``claims``: the files to take (``pending``'s answer); by default the pending file alone. A file that
    cannot be written now is put back for the next try. Never raises.
    """
    problems: list[str] = []
    path = dropped_path(sink.path, directory)
    for source in claims if claims is not None else [path]:
        claimed = source if _CLAIMED in os.path.basename(source) else f"{source}{_CLAIMED}{os.getpid()}"
        try:
            if claimed != source:
                os.rename(source, claimed)
            records, complete = read_records(claimed)
        except FileNotFoundError:
            continue  # someone else flushed it
        except OSError as exc:
            problems.append(f"{source}: {exc.strerror or exc}")
            continue
        problems += _write(sink, claimed, path, records, complete, secret_keys)
    return problems


def _write(sink: RotatingFile, claimed: str, path: str, records: list[tuple[int, str, str]], complete: bool,
           secret_keys: tuple[str, ...]) -> list[str]:
    from cni_logger import events

    try:
        if records or not complete:
            warnings = sink.append(events.render_coverage(dropped_event(sink.path, records, complete), secret_keys))
        else:
            warnings = []
    except Exception as exc:  # a SinkError, or any failure: keep the records for the next try
        return [f"dropped events not put on the record: {exc}", *_put_back(claimed, path)]
    try:
        os.unlink(claimed)
    except OSError as exc:
        warnings.append(f"{claimed}: written to the trail but not removed: {exc.strerror or exc}")
    return warnings


def _put_back(claimed: str, path: str) -> list[str]:
    try:
        with open(claimed, "rb") as f:
            data = f.read()
        fd = os.open(path, _FLAGS, 0o600)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)
        os.unlink(claimed)
    except OSError as exc:
        return [f"{claimed}: kept for the next try ({exc.strerror or exc})"]
    return []
