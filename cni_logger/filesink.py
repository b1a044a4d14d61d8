"""An append-only JSON-lines file that many short-lived plugin processes share safely.

Every CNI invocation is its own process, so in-process rotation schemes (the standard library's
``RotatingFileHandler``, Go's lumberjack) lose lines here: each process tracks the size on its own,
renames files under the others and truncates what they just wrote. This sink keeps to what the
kernel guarantees instead:

* Each event is appended with one ``write`` on an ``O_APPEND`` descriptor, opened afresh per
  invocation, so concurrent events never interleave and nothing is ever truncated.
* Rotation moves the live file to a backup with the next *sequence number*. It runs under a
  non-blocking ``flock`` on the live file's own inode and re-checks, under the lock, that the path
  still names that inode, so two processes never both rotate the same file, and nobody waits for a
  lock. The move is ``link`` then ``unlink``: it never replaces an existing file.
* Backups are ordered by their sequence number, which only grows in write order, never by the wall
  clock: a clock stepped back (a wrong hardware clock corrected, a VM snapshot restored) changes no
  order, so retention never deletes the backup it has just made.
* Retention deletes the oldest backups beyond ``maxBackups`` and those older than ``maxAge`` days,
  only regular files named exactly as this module names them; what cannot be deleted is a warning.
* Compression runs in a detached child after the answer's critical path, at most one per log
  directory (a non-blocking ``flock`` on the directory; a busy compressor is left to finish), only on
  regular files, and only on backups at least one rotation old, so a writer still holding a
  just-rotated file never loses its line.

Everything after the event's write (rotation, retention, compression) reports problems as warnings
(``append`` returns them): the event *was* written, so they never change the answer.

The path is walked from ``/`` one directory at a time with ``O_NOFOLLOW`` and the rest works relative
to the directory's descriptor, so nothing is followed through a symlink that someone other than root
(or the plugin's own user) could have planted: a symlink is followed only if it and the directory
holding it are owned by root (or us) and that directory is not writable by others (``_walk``). The log
file itself is never a symlink. Files are created 0640 and directories 0750.

Backup names (this module is the one place that knows them; the audit reader,
``cni_logger.audit.sources``, goes through ``list_backups``, ``parse_backup_name``, ``live_path_of``):

* ``<live>.<sequence>.<stamp>``: the sequence a decimal of at least six digits (``000001``, growing
  wider past ``999999``), the stamp the UTC time of the rotation, ``YYYYmmddTHHMMSS.ffffffZ``, for
  people only; ``.gz`` added when compressed; ``.gz.tmp.<pid>`` while being compressed.
* ``<live>.<stamp>`` and ``<live>.<stamp>-<N>``: what releases before the sequence numbers wrote.
  Recognised, ordered by stamp and N, and *before* every sequence-numbered backup (an upgrade keeps
  its trail in order).

No ``re``: this module is on the plugin's path.
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
import time

DEFAULT_LOG_FILE = "/var/log/cni/cni-logger.log"
"""The audit log's conventional path: what the README's examples configure and the tools read by default."""
DROPPED_DIR = "/run/cni-logger/dropped"
"""Where the plugin counts the events it could not write (``cni_logger.dropped``): tmpfs, root-only, so the
count survives a full or read-only log filesystem; one file per log file, named by ``dropped_path``."""
BACKUP_SUFFIX_GZ = ".gz"
_TMP_MARK = ".gz.tmp."
"""Marks a file being compressed: ``<stem>.gz.tmp.<pid>``, renamed to ``<stem>.gz`` when complete."""
_OPEN_FLAGS = os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK
"""Read-write so the last byte can be checked; with O_NONBLOCK a FIFO never blocks the open."""
_DIR_FLAGS = os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
"""A directory of the path, held as a handle for ``*at`` calls (no read permission needed)."""
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_SEQUENCE_WIDTH = 6
_STAMP_LENGTH = 23
_MAX_SYMLINKS = 40
_NO_HARD_LINKS = (errno.EPERM, errno.EOPNOTSUPP, errno.ENOSYS, errno.EMLINK, errno.EXDEV)
"""``link`` failures that mean "this filesystem (or policy) does not do hard links here"."""

Order = tuple[int, int, str, int]
"""A backup's place in its trail: old-scheme ``(0, 0, stamp, N)`` before new ``(1, sequence, stamp, 0)``."""


# -- backup names ----------------------------------------------------------------------------------


def backup_stamp(now: float) -> str:
    """The stamp of a backup made at ``now`` (UTC to the microsecond): ``20261128T021506.573253Z``."""
    return time.strftime("%Y%m%dT%H%M%S", time.gmtime(now)) + f".{int(now % 1 * 1e6):06d}Z"


def backup_name(live: str, sequence: int, stamp: str) -> str:
    """The backup path (its stem: without ``.gz``) of ``live`` with ``sequence`` (>= 1) made at ``stamp``."""
    return f"{live}.{sequence:0{_SEQUENCE_WIDTH}d}.{stamp}"


def _digits(text: str) -> bool:
    return text.isascii() and text.isdigit()


def _is_stamp(text: str) -> bool:
    """Exactly ``YYYYmmddTHHMMSS.ffffffZ``."""
    return (len(text) == _STAMP_LENGTH and text[8] == "T" and text[15] == "." and text[22] == "Z"
            and _digits(text[:8]) and _digits(text[9:15]) and _digits(text[16:22]))


def _parse_stem(name: str) -> tuple[str, Order] | None:
    """``(live file name, order)`` when the file name ``name`` (without ``.gz``) is exactly a backup's."""
    serial = 0
    dash = name.rfind("-")
    if dash > 0 and not name.endswith("Z"):  # old scheme ``<live>.<stamp>-<N>``, N >= 1 without leading 0
        digits = name[dash + 1:]
        if not _digits(digits) or digits[0] == "0":
            return None
        serial, name = int(digits), name[:dash]
    stamp = name[-_STAMP_LENGTH:]
    head = name[: -_STAMP_LENGTH - 1]
    if len(name) < _STAMP_LENGTH + 2 or name[-_STAMP_LENGTH - 1] != "." or not _is_stamp(stamp):
        return None
    dot = head.rfind(".")
    if not serial and dot > 0 and len(head) - dot - 1 >= _SEQUENCE_WIDTH and _digits(head[dot + 1:]):
        return head[:dot], (1, int(head[dot + 1:]), stamp, 0)
    return head, (0, 0, stamp, serial)


def _split_name(name: str) -> tuple[str, str, bool] | None:
    """``(live name, stem name, compressed)`` for an exact backup file name, else ``None``."""
    compressed = name.endswith(BACKUP_SUFFIX_GZ)
    stem = name[: -len(BACKUP_SUFFIX_GZ)] if compressed else name
    parsed = _parse_stem(stem)
    return (parsed[0], stem, compressed) if parsed is not None else None


def parse_backup_name(path: str) -> tuple[str, str, bool] | None:
    """``(live path, stem, compressed)`` when ``path`` is named exactly like a backup, else ``None``.

    The stem is the backup's path without ``.gz``. A file being compressed (``<stem>.gz.tmp.<pid>``) is
    not a backup: its stem is, while it exists.
    """
    directory, name = os.path.split(path)
    split = _split_name(name)
    if split is None:
        return None
    return os.path.join(directory, split[0]), os.path.join(directory, split[1]), split[2]


def _temporary_stem(name: str) -> tuple[str, int] | None:
    """``(stem name, pid)`` for a compressor's temporary file ``<stem>.gz.tmp.<pid>``, else ``None``."""
    mark = name.rfind(_TMP_MARK)
    pid = name[mark + len(_TMP_MARK):]
    if mark <= 0 or not _digits(pid) or _parse_stem(name[:mark]) is None:
        return None
    return name[:mark], int(pid)


def live_path_of(path: str) -> str:
    """The live file whose backup ``path`` is (or is being compressed into); any other path itself."""
    directory, name = os.path.split(path)
    temporary = _temporary_stem(name)
    split = _split_name(temporary[0] if temporary else name)
    return os.path.join(directory, split[0]) if split else path


def backup_order(stem: str) -> Order:
    """Sort key of a backup stem (a path or a file name): write order, oldest first."""
    parsed = _parse_stem(os.path.basename(stem))
    return parsed[1] if parsed is not None else (-1, 0, "", 0)


def _stems(names: list[str], live: str) -> list[str]:
    """The backup stem names of the live file name ``live`` among ``names``, oldest first."""
    found: dict[str, Order] = {}
    prefix = live + "."
    for name in names:
        if name.startswith(prefix):
            split = _split_name(name)
            if split is not None and split[0] == live:
                found[split[1]] = backup_order(split[1])
    return sorted(found, key=found.__getitem__)


def list_backups(live: str) -> list[str]:
    """The backup stems (paths without ``.gz``) of the live file ``live``, oldest (first written) first."""
    directory, basename = os.path.split(live)
    try:
        names = os.listdir(directory)
    except OSError:
        return []
    return [os.path.join(directory, stem) for stem in _stems(names, basename)]


def dropped_path(live: str, directory: str = DROPPED_DIR) -> str:
    """The file in ``directory`` that counts the events lost for the log file ``live``.

    Here, not in ``cni_logger.dropped``: after every successful append the plugin looks for this one
    file (a single ``stat``) without importing anything. The name is the path with ``%`` and ``/``
    escaped; a path too long for a file name is named by its SHA-256 instead.
    """
    name = live.replace("%", "%25").replace("/", "%2F")
    if len(name.encode("utf-8", "surrogateescape")) > 200:
        import hashlib

        name = "sha256-" + hashlib.sha256(live.encode("utf-8", "surrogateescape")).hexdigest()
    return f"{directory}/{name}"


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


def _reason(exc: OSError) -> str:
    return exc.strerror or str(exc)


def _others_can_write(st: os.stat_result, euid: int) -> str:
    """Who other than root and us can add, remove or replace entries of this directory ("" if nobody)."""
    if st.st_uid not in (0, euid):
        return f"its owner (uid {st.st_uid})"
    if st.st_mode & stat.S_ISVTX:
        return ""  # sticky: only an entry's owner replaces it (the entry's owner is checked apart)
    if st.st_mode & 0o002:
        return "every user"
    if st.st_mode & 0o020 and st.st_gid != 0:
        return f"group {st.st_gid}"
    return ""


def _walk(path: str, create: bool) -> int:
    """A handle (``O_PATH``) on the directory ``path``, opened one component at a time from ``/``.

    No component is followed if it is a symlink that someone other than root or us could have planted
    or replaced (owned by another user, or in a directory another user can write): ``SinkError``. A
    missing directory is created (0750 under the caller's umask) when ``create``.
    """
    euid = os.geteuid()
    parts = [p for p in path.split("/") if p and p != "."]
    walked = ""
    fd = os.open("/", _DIR_FLAGS)
    links = 0
    try:
        while parts:
            name = parts.pop(0)
            try:
                following = os.open(name, _DIR_FLAGS, dir_fd=fd)
            except FileNotFoundError:
                if not create or name == "..":
                    raise
                try:
                    os.mkdir(name, 0o750, dir_fd=fd)
                except FileExistsError:
                    pass
                following = os.open(name, _DIR_FLAGS, dir_fd=fd)
            except OSError as exc:
                if exc.errno not in (errno.ELOOP, errno.ENOTDIR):
                    raise
                st = os.stat(name, dir_fd=fd, follow_symlinks=False)
                if not stat.S_ISLNK(st.st_mode):
                    raise
                where = f"{walked}/{name}"
                writer = _others_can_write(os.fstat(fd), euid)
                if st.st_uid not in (0, euid):
                    writer = f"its owner (uid {st.st_uid})"
                if writer:
                    raise SinkError(f"{where} is a symbolic link in a directory that {writer} can change; "
                                    "refusing to follow it") from None
                links += 1
                if links > _MAX_SYMLINKS:
                    raise
                target = os.readlink(name, dir_fd=fd)
                parts[:0] = [p for p in target.split("/") if p and p != "."]
                if target.startswith("/"):
                    following, walked = os.open("/", _DIR_FLAGS), ""
                else:
                    following = os.dup(fd)
                os.close(fd)
                fd = following
                continue
            os.close(fd)
            fd = following
            walked = walked.rsplit("/", 1)[0] if name == ".." else f"{walked}/{name}"
        return fd
    except BaseException:
        os.close(fd)
        raise


def pid_alive(pid: int) -> bool:
    """Whether a process of that id exists (a stale temporary file's or claim's owner is gone otherwise)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # exists, not ours to signal
    return True


def _link_no_replace(src: str, dst: str, dir_fd: int) -> bool:
    """Give ``src`` the name ``dst`` too, never replacing an existing ``dst`` (then ``False``).

    ``link`` fails on an existing name by itself. Where hard links are refused (some filesystems,
    ``fs.protected_hardlinks`` for another user's file), a ``rename`` after checking that ``dst`` is
    free: the callers hold a lock that keeps other plugin processes from creating it meanwhile.
    """
    try:
        os.link(src, dst, src_dir_fd=dir_fd, dst_dir_fd=dir_fd, follow_symlinks=False)
        return True
    except FileExistsError:
        return False
    except OSError as exc:
        if exc.errno not in _NO_HARD_LINKS:
            raise
    try:
        os.stat(dst, dir_fd=dir_fd, follow_symlinks=False)
        return False
    except FileNotFoundError:
        os.rename(src, dst, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        return True


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
        self._dir = -1
        """The log directory's handle while an append runs (every name below is relative to it)."""

    # -- writing ---------------------------------------------------------------------------------

    def _open(self) -> int:
        old_umask = os.umask(0o027)  # files 0640, directories 0750, whatever the runtime's umask
        try:
            self._close_dir()
            self._dir = _walk(self.directory, create=True)
            return os.open(self.basename, _OPEN_FLAGS, 0o640, dir_fd=self._dir)
        except OSError as exc:
            self._close_dir()
            raise SinkError(_explain(exc, self.path)) from exc
        except SinkError as exc:
            self._close_dir()
            raise SinkError(f"{self.path}: {exc}") from None
        finally:
            os.umask(old_umask)

    def _close_dir(self) -> None:
        if self._dir >= 0:
            os.close(self._dir)
            self._dir = -1

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
        self._close_dir()

    def append(self, line: bytes) -> list[str]:
        """Append one complete line (ending in ``\\n``) in a single write, then rotate if due.

        Raises ``SinkError`` when the line was not written; returns warnings about what went wrong
        after it was (rotation, retention, compression): the line is in the file either way.
        """
        fd = -1
        try:
            fd, _ = self._open_regular()
            try:
                end = self._append(fd, line)
            except OSError as exc:
                raise SinkError(_explain(exc, self.path)) from exc
            try:
                return self._rotate(fd) if self.rotate_enabled and end >= self.max_bytes else []
            except OSError as exc:  # after the write: the event is in the file
                return [f"{self.path}: not rotated: {_reason(exc)}"]
        finally:
            if fd >= 0:
                os.close(fd)
            self._close_dir()

    def _append(self, fd: int, line: bytes) -> int:
        """Write ``line``; return where it ended (``fd`` is pointed at the live file again if it was lost)."""
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
            again, _ = self._open_regular()
            os.dup2(again, fd)
            os.close(again)
            self._write_all(fd, line)
            end = os.lseek(fd, 0, os.SEEK_CUR)
        return end

    def _write_all(self, fd: int, data: bytes) -> None:
        view = memoryview(data)
        written = os.write(fd, view)
        while written < len(view):  # only a full disk or a signal splits a regular-file write
            view = view[written:]
            written = os.write(fd, view)
            if written == 0:
                raise OSError(errno.ENOSPC, "short write")

    # -- rotation --------------------------------------------------------------------------------

    def _rotate(self, fd: int) -> list[str]:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return []  # another process is rotating this very file right now
        try:
            mine = os.fstat(fd)
            try:
                current = os.stat(self.basename, dir_fd=self._dir, follow_symlinks=False)
            except FileNotFoundError:
                return []
            if (current.st_dev, current.st_ino) != (mine.st_dev, mine.st_ino) or current.st_size < self.max_bytes:
                return []  # already rotated by someone else, or not due any more
            if mine.st_nlink > 1 and self._finish_interrupted_rotation(mine):
                return []
            name = self._new_backup_name()
            while not _link_no_replace(self.basename, name, self._dir):
                name = self._new_backup_name(after=name)  # taken (by something not ours): the next one
            try:
                os.unlink(self.basename, dir_fd=self._dir)
            except FileNotFoundError:
                pass  # the rename fallback already moved it
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
        warnings: list[str] = []
        backups = self._prune(warnings)
        self._clean_temporaries(warnings)
        if self.compress and len(backups) > 1:
            self._compress_in_background(backups[:-1], warnings)
        return warnings

    def _listing(self) -> list[str]:
        """The names in the log directory (the handle is ``O_PATH``: list through a readable one)."""
        fd = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=self._dir)
        try:
            return os.listdir(fd)
        finally:
            os.close(fd)

    def _new_backup_name(self, after: str = "") -> str:
        """The next backup name: one past the highest sequence number in use (or past ``after``)."""
        highest = max((o[1] for o in map(backup_order, [after, *self.backups(names=True)]) if o[0] == 1),
                      default=0)
        return os.path.basename(backup_name(self.basename, highest + 1, backup_stamp(time.time())))

    def _finish_interrupted_rotation(self, mine: os.stat_result) -> bool:
        """A rotation killed between its ``link`` and its ``unlink`` left the live file under a backup's
        name too: drop the live name (the backup holds every line) instead of linking it once more."""
        for name in reversed(self.backups(names=True)):
            try:
                st = os.stat(name, dir_fd=self._dir, follow_symlinks=False)
            except OSError:
                continue
            if (st.st_dev, st.st_ino) == (mine.st_dev, mine.st_ino):
                os.unlink(self.basename, dir_fd=self._dir)
                return True
        return False

    def backups(self, names: bool = False) -> list[str]:
        """Backup stems (path without ``.gz``; file names with ``names``), oldest first."""
        if self._dir < 0:
            return list_backups(self.path) if not names else [os.path.basename(s) for s in list_backups(self.path)]
        stems = _stems(self._listing(), self.basename)
        return stems if names else [os.path.join(self.directory, s) for s in stems]

    def _regular(self, stem: str, warnings: list[str]) -> list[str]:
        """The variants of ``stem`` (plain, ``.gz``) that are regular files; anything else is reported."""
        found = []
        for variant in (stem, stem + BACKUP_SUFFIX_GZ):
            try:
                st = os.stat(variant, dir_fd=self._dir, follow_symlinks=False)
            except OSError:
                continue
            if stat.S_ISREG(st.st_mode):
                found.append(variant)
            else:
                warnings.append(f"{os.path.join(self.directory, variant)}: named like a backup but not a "
                                "regular file; left in place")
        return found

    def _prune(self, warnings: list[str]) -> list[str]:
        """Apply maxBackups and maxAge to the regular-file backups; return the backup stem names that
        remain, oldest first. What cannot be deleted is a warning, and the rest goes on."""
        stems = [(stem, variants) for stem in self.backups(names=True)
                 if (variants := self._regular(stem, warnings))]
        doomed: set[str] = set()
        if self.max_backups and len(stems) > self.max_backups:
            doomed.update(stem for stem, _ in stems[: len(stems) - self.max_backups])
        if self.max_age_seconds:
            cutoff = time.time() - self.max_age_seconds
            doomed.update(stem for stem, variants in stems if self._mtime(variants) < cutoff)
        for stem, variants in stems:
            if stem in doomed:
                for variant in variants:
                    try:
                        os.unlink(variant, dir_fd=self._dir)
                    except FileNotFoundError:
                        pass
                    except OSError as exc:
                        warnings.append(f"{os.path.join(self.directory, variant)}: old backup not deleted: "
                                        f"{_reason(exc)}")
        return [stem for stem, _ in stems if stem not in doomed]

    def _mtime(self, variants: list[str]) -> float:
        for variant in variants:
            try:
                return os.stat(variant, dir_fd=self._dir, follow_symlinks=False).st_mtime
            except OSError:
                continue
        return time.time()

    def _clean_temporaries(self, warnings: list[str]) -> None:
        """Remove ``<backup>.gz.tmp.<pid>`` files of this log whose compressor is gone."""
        prefix = self.basename + "."
        for name in self._listing():
            if not name.startswith(prefix) or _TMP_MARK not in name:
                continue
            temporary = _temporary_stem(name)
            split = _split_name(temporary[0]) if temporary is not None else None
            if temporary is None or split is None or split[0] != self.basename or pid_alive(temporary[1]):
                continue
            try:
                st = os.stat(name, dir_fd=self._dir, follow_symlinks=False)
                if stat.S_ISREG(st.st_mode):
                    os.unlink(name, dir_fd=self._dir)
            except FileNotFoundError:
                pass
            except OSError as exc:
                warnings.append(f"{os.path.join(self.directory, name)}: stale temporary not deleted: {_reason(exc)}")

    def _compress_in_background(self, stems: list[str], warnings: list[str]) -> None:
        """Fork a detached child that gzips older backups; the plugin's answer never waits for it.

        At most one compressor per log directory: the child holds a ``flock`` on the directory for
        as long as it runs (taken here, non-blocking, inherited across ``fork``); while it is held,
        nothing is forked. The compressor lists the backups again after each round, so it takes the
        ones rotations made meanwhile; what it still misses, the next rotation's compressor takes.
        """
        if not self._pending(stems):
            return
        try:
            lock = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=self._dir)
        except OSError as exc:
            warnings.append(f"{self.directory}: backups not compressed: {_reason(exc)}")
            return
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(lock)
            return  # a compressor of this directory is running
        pid = os.fork()
        if pid:
            os.close(lock)  # the child's copy keeps the lock until it exits
            return
        try:  # the child: leave the runtime's pipes so the runtime does not wait for us
            os.setsid()
            devnull = os.open(os.devnull, os.O_RDWR)
            for target in (0, 1, 2):
                os.dup2(devnull, target)
            tried: set[str] = set()
            while True:  # rotations meanwhile found the lock taken and left their backups to us
                pending = [s for s in self._pending(self.backups(names=True)[:-1]) if s not in tried]
                if not pending:
                    break
                for stem in pending:
                    tried.add(stem)
                    compress_backup(stem, dir_fd=self._dir)
        finally:
            os._exit(0)

    def _pending(self, stems: list[str]) -> list[str]:
        """The stems whose plain file is a regular file: not compressed yet."""
        return [stem for stem in stems if stem in self._regular(stem, [])]


def compress_backup(stem: str, dir_fd: int | None = None) -> bool:
    """gzip ``stem`` to ``stem.gz`` through a temporary name; keep the original if it changed meanwhile,
    if it is not a regular file, or if ``stem.gz`` exists already (never replaced).

    ``stem`` is a path, or a name in the directory ``dir_fd``. Never blocks on a FIFO or device.
    """
    import gzip
    import shutil

    tmp = f"{stem}{_TMP_MARK}{os.getpid()}"
    made = False
    try:
        src = os.open(stem, _READ_FLAGS, dir_fd=dir_fd)
        with os.fdopen(src, "rb") as fin:
            before = os.fstat(src)
            if not stat.S_ISREG(before.st_mode):
                return False
            out = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o640,
                          dir_fd=dir_fd)
            made = True
            with os.fdopen(out, "wb") as raw:
                os.fchmod(raw.fileno(), 0o640)
                name = os.path.basename(stem)
                with gzip.GzipFile(filename=name, mode="wb", fileobj=raw, mtime=int(before.st_mtime)) as gz:
                    shutil.copyfileobj(fin, gz, 1 << 16)
                raw.flush()
                os.fsync(raw.fileno())
        after = os.stat(stem, dir_fd=dir_fd, follow_symlinks=False)
        if (after.st_ino, after.st_size, after.st_mtime_ns) != (before.st_ino, before.st_size, before.st_mtime_ns):
            return False  # a late writer appended meanwhile: try again at the next rotation
        gz_name = stem + BACKUP_SUFFIX_GZ
        if dir_fd is None:
            directory, base = os.path.split(stem)
            handle = os.open(directory or ".", _DIR_FLAGS)
            try:
                done = _link_no_replace(os.path.basename(tmp), base + BACKUP_SUFFIX_GZ, handle)
            finally:
                os.close(handle)
        else:
            done = _link_no_replace(tmp, gz_name, dir_fd)
        if not done:
            return False  # something is already there: keep the plain backup, replace nothing
        try:
            os.unlink(stem, dir_fd=dir_fd)
        except OSError:
            os.unlink(gz_name, dir_fd=dir_fd)  # the original stays (immutable, say): not both copies
            return False
        return True
    except OSError:
        return False
    finally:
        if made:
            try:
                os.unlink(tmp, dir_fd=dir_fd)
            except OSError:
                pass
