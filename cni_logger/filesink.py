"""An append-only JSON-lines file that many short-lived plugin processes share safely.

Every CNI invocation is its own process, so in-process rotation schemes (the standard library's
``RotatingFileHandler``, Go's lumberjack) lose lines here: each process tracks the size on its own,
renames files under the others and truncates what they just wrote. This sink keeps to what the
kernel guarantees instead:

* Each event is appended with one ``write`` on an ``O_APPEND`` descriptor, opened afresh per
  invocation, so concurrent events never interleave and nothing is ever truncated.
* Rotation renames the live file to a time-stamped backup. It runs under a non-blocking ``flock``
  on the live file's own inode and re-checks, under the lock, that the path still names that inode,
  so two processes never both rotate the same file, and nobody waits for a lock.
* Retention deletes the oldest backups beyond ``maxBackups`` and those older than ``maxAge`` days.
* Compression runs in a detached child after the answer's critical path, and only on backups at
  least one rotation old, so a writer still holding a just-rotated file never loses its line.

Files are created 0640 and directories 0750; the path is never followed through a symlink.

Backups are named ``<live path>.<UTC stamp>[-N]`` (``.gz`` added when compressed), and this module is
the one place that knows it: ``backup_name`` makes a name, ``parse_backup_name`` and ``live_path_of``
read one back, ``list_backups`` finds a live file's backups. Retention here and the audit reader
(``cni_logger.audit.sources``) both go through them, so they always agree on what is a backup and
on its age order. No ``re``: this module is on the plugin's path.
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
import time

DEFAULT_LOG_FILE = "/var/log/cni/cni-logger.log"
"""The audit log's conventional path: what the README's examples configure and the tools read by default."""
BACKUP_SUFFIX_GZ = ".gz"
_TMP_MARK = ".tmp."
"""Marks a file being compressed: ``<stem>.gz.tmp.<pid>``, renamed to ``<stem>.gz`` when complete."""
_OPEN_FLAGS = os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK
"""Read-write so the last byte can be checked; with O_NONBLOCK a FIFO never blocks the open."""


# -- backup names ----------------------------------------------------------------------------------


def backup_stamp(now: float) -> str:
    """The stamp of a backup made at ``now`` (UTC to the microsecond): ``20261128T021506.573253Z``."""
    return time.strftime("%Y%m%dT%H%M%S", time.gmtime(now)) + f".{int(now % 1 * 1e6):06d}Z"


def backup_name(live: str, stamp: str, serial: int = 0) -> str:
    """The backup path (its stem: without ``.gz``) of ``live`` with ``stamp``; ``serial`` > 0 tells apart
    backups made within the same stamp (``-1``, ``-2`` ...)."""
    return f"{live}.{stamp}-{serial}" if serial else f"{live}.{stamp}"


def _is_stamp(text: str) -> bool:
    """What follows ``<live>.`` in a backup's stem: a stamp, perhaps with ``-N`` (loosely: 8 digits, ``T``)."""
    return len(text) >= 16 and text[:8].isdigit() and text[8] == "T"


def parse_backup_name(path: str) -> tuple[str, str, bool] | None:
    """``(live path, stem, compressed)`` when ``path`` is named like a backup, else ``None``.

    The stem is the backup's path without ``.gz``; stems of one live file sort oldest first. A file
    being compressed (``<stem>.gz.tmp.<pid>``) is not a backup: its stem is, while it exists.
    """
    directory, name = os.path.split(path)
    if _TMP_MARK in name:
        return None
    compressed = name.endswith(BACKUP_SUFFIX_GZ)
    stem = name[: -len(BACKUP_SUFFIX_GZ)] if compressed else name
    dot = stem.rfind(".")
    while dot > 0:  # the last ``.<stamp>`` (a live file's own name may look like a stamp too)
        if _is_stamp(stem[dot + 1:]):
            return os.path.join(directory, stem[:dot]), os.path.join(directory, stem), compressed
        dot = stem.rfind(".", 0, dot)
    return None


def live_path_of(path: str) -> str:
    """The live file whose backup ``path`` is (or is being compressed into); any other path itself."""
    directory, name = os.path.split(path)
    mark = name.find(BACKUP_SUFFIX_GZ + _TMP_MARK)
    parsed = parse_backup_name(os.path.join(directory, name[:mark] if mark > 0 else name))
    return parsed[0] if parsed else path


def list_backups(live: str) -> list[str]:
    """The backup stems (paths without ``.gz``) of the live file ``live``, oldest first."""
    directory, basename = os.path.split(live)
    prefix = basename + "."
    try:
        names = os.listdir(directory)
    except OSError:
        return []
    stems: set[str] = set()
    for name in names:
        if name.startswith(prefix):
            parsed = parse_backup_name(os.path.join(directory, name))
            if parsed is not None and parsed[0] == live:
                stems.add(parsed[1])
    return sorted(stems)


# -- the sink --------------------------------------------------------------------------------------


class SinkError(Exception):
    """The event could not be written; the message says why in words an operator can act on."""


def _explain(exc: OSError, path: str) -> str:
    reasons = {
        errno.ELOOP: "is a symbolic link; refusing to write through it",
        errno.EISDIR: "is a directory",
        errno.ENXIO: "is a FIFO or device with no reader; refusing to block on it",
        errno.ENOSPC: "no space left on the device",
        errno.EROFS: "the filesystem is read-only",
        errno.EACCES: "permission denied",
        errno.EPERM: "operation not permitted",
        errno.ENOTDIR: "a parent of the path is not a directory",
        errno.EDQUOT: "disk quota exceeded",
    }
    return f"{path}: {reasons.get(exc.errno or 0, exc.strerror or str(exc))}"


class RotatingFile:
    """The configured ``logFile`` with its rotation and retention settings."""

    def __init__(self, path: str, max_bytes: int, max_backups: int, max_age_days: float = 0.0,
                 compress: bool = False, rotate: bool = True) -> None:
        if not os.path.isabs(path):
            raise SinkError(f"{path}: logFile must be an absolute path")
        self.path = path
        self.directory, self.basename = os.path.split(path)
        self.max_bytes = max_bytes
        self.max_backups = max_backups
        self.max_age_seconds = max_age_days * 86400.0
        self.compress = compress
        self.rotate_enabled = rotate

    # -- writing ---------------------------------------------------------------------------------

    def _open(self) -> int:
        old_umask = os.umask(0o027)  # files 0640, directories 0750, whatever the runtime's umask
        try:
            try:
                return os.open(self.path, _OPEN_FLAGS, 0o640)
            except FileNotFoundError:
                os.makedirs(self.directory, mode=0o750, exist_ok=True)
                return os.open(self.path, _OPEN_FLAGS, 0o640)
        except OSError as exc:
            raise SinkError(_explain(exc, self.path)) from exc
        finally:
            os.umask(old_umask)

    def _open_regular(self) -> tuple[int, os.stat_result]:
        fd = self._open()
        try:
            st = os.fstat(fd)
        except OSError as exc:
            os.close(fd)
            raise SinkError(_explain(exc, self.path)) from exc
        if not stat.S_ISREG(st.st_mode):
            os.close(fd)
            raise SinkError(f"{self.path}: is not a regular file; refusing to write to it")
        return fd, st

    def probe(self) -> None:
        """Check that an event could be appended now, without writing one (used by STATUS)."""
        fd, _ = self._open_regular()
        os.close(fd)

    def append(self, line: bytes) -> None:
        """Append one complete line (ending in ``\\n``) in a single write, then rotate if due."""
        fd, _ = self._open_regular()
        try:
            self._write_all(fd, line)
            end = os.lseek(fd, 0, os.SEEK_CUR)  # O_APPEND: where our line ended, whoever wrote since
            start = end - len(line)
            if start > 0 and os.pread(fd, 1, start - 1) != b"\n":
                # The write before ours was cut short (disk full, writer killed mid-write), so our line
                # was glued to its tail. Appends are serialised, so that byte is final: write our event
                # again, on a line of its own; only the damaged line is lost.
                self._write_all(fd, line)
                end = os.lseek(fd, 0, os.SEEK_CUR)
            if os.fstat(fd).st_nlink == 0:
                # We were stalled between open and write long enough for our file to be rotated and
                # then compressed or pruned away: the line went into an unlinked inode. Write it to the
                # live file instead (a reader that saw the old copy de-duplicates by event.id).
                os.close(fd)
                fd, _ = self._open_regular()
                self._write_all(fd, line)
                end = os.lseek(fd, 0, os.SEEK_CUR)
            if self.rotate_enabled and end >= self.max_bytes:
                self._rotate(fd)
        except OSError as exc:
            raise SinkError(_explain(exc, self.path)) from exc
        finally:
            os.close(fd)

    def _write_all(self, fd: int, data: bytes) -> None:
        view = memoryview(data)
        written = os.write(fd, view)
        while written < len(view):  # only a full disk or a signal splits a regular-file write
            view = view[written:]
            written = os.write(fd, view)
            if written == 0:
                raise OSError(errno.ENOSPC, "short write")

    # -- rotation --------------------------------------------------------------------------------

    def _rotate(self, fd: int) -> None:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return  # another process is rotating this very file right now
        try:
            mine = os.fstat(fd)
            try:
                current = os.stat(self.path, follow_symlinks=False)
            except FileNotFoundError:
                return
            if (current.st_dev, current.st_ino) != (mine.st_dev, mine.st_ino) or current.st_size < self.max_bytes:
                return  # already rotated by someone else, or not due any more
            os.rename(self.path, self._new_backup_name())
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
        backups = self._prune()
        if self.compress and len(backups) > 1:
            self._compress_in_background(backups[:-1])

    def _new_backup_name(self) -> str:
        stamp = backup_stamp(time.time())
        serial = 0
        name = backup_name(self.path, stamp)
        while os.path.lexists(name) or os.path.lexists(name + BACKUP_SUFFIX_GZ):
            serial += 1
            name = backup_name(self.path, stamp, serial)
        return name

    def backups(self) -> list[str]:
        """Backup stems (path without ``.gz``), oldest first."""
        return list_backups(self.path)

    def _prune(self) -> list[str]:
        """Apply maxBackups and maxAge; return the backups that remain, oldest first."""
        stems = self.backups()
        doomed: list[str] = []
        if self.max_backups and len(stems) > self.max_backups:
            doomed = stems[: len(stems) - self.max_backups]
        if self.max_age_seconds:
            cutoff = time.time() - self.max_age_seconds
            for stem in stems:
                if stem not in doomed and _mtime(stem) < cutoff:
                    doomed.append(stem)
        for stem in doomed:
            for variant in (stem, stem + BACKUP_SUFFIX_GZ):
                try:
                    os.unlink(variant)
                except FileNotFoundError:
                    pass
        return [stem for stem in stems if stem not in doomed]

    def _compress_in_background(self, stems: list[str]) -> None:
        """Fork a detached child that gzips older backups; the plugin's answer never waits for it."""
        pending = [stem for stem in stems if os.path.lexists(stem)]
        if not pending:
            return
        pid = os.fork()
        if pid:
            return
        try:  # the child: leave the runtime's pipes so the runtime does not wait for us
            os.setsid()
            devnull = os.open(os.devnull, os.O_RDWR)
            for target in (0, 1, 2):
                os.dup2(devnull, target)
            for stem in pending:
                compress_backup(stem)
        finally:
            os._exit(0)


def _mtime(stem: str) -> float:
    for variant in (stem, stem + BACKUP_SUFFIX_GZ):
        try:
            return os.stat(variant, follow_symlinks=False).st_mtime
        except OSError:
            continue
    return time.time()


def compress_backup(stem: str) -> bool:
    """gzip ``stem`` to ``stem.gz`` through a temporary name; keep the original if it changed meanwhile."""
    import gzip
    import shutil

    tmp = f"{stem}.gz{_TMP_MARK}{os.getpid()}"
    try:
        before = os.stat(stem, follow_symlinks=False)
        src = os.open(stem, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        with os.fdopen(src, "rb") as fin, open(tmp, "xb") as raw:
            os.fchmod(raw.fileno(), 0o640)
            name = os.path.basename(stem)
            with gzip.GzipFile(filename=name, mode="wb", fileobj=raw, mtime=int(before.st_mtime)) as gz:
                shutil.copyfileobj(fin, gz, 1 << 16)
            raw.flush()
            os.fsync(raw.fileno())
        after = os.stat(stem, follow_symlinks=False)
        if (after.st_size, after.st_mtime_ns) != (before.st_size, before.st_mtime_ns):
            os.unlink(tmp)  # a late writer appended meanwhile: try again at the next rotation
            return False
        os.rename(tmp, stem + BACKUP_SUFFIX_GZ)
        os.unlink(stem)
        return True
    except OSError:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        return False
