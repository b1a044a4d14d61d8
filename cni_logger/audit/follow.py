"""New events as they arrive, across rotation: ``follow`` (what ``tail -F`` does, event-aware).

Each followed path is polled: read what was appended, then compare the path's inode with the one
open. When the plugin has rotated the file (a rename, so the path now names a new inode), the old
descriptor is read to its end *before* switching, and kept for a short grace period afterwards: a
writer that opened the file just before the rename finishes its line there. The new file is read
from its beginning. A busy plugin can rotate more than once between two polls: every backup rotated
after the held file (found by the sink's sequence numbers, ``filesink.list_backups``) is read in
between, from its ``.gz`` if it is compressed already; the held file's own backup is told by its inode,
or once compressed and unlinked by the size its gzip trailer records. A file truncated in place
(logrotate's ``copytruncate``) is read again from the start. A path that does not exist yet is waited
for. (An event the sink wrote twice, see ``FileSink._append``, is printed once: ``run.follow``
de-duplicates by ``event.id``.)

Lines are split by ``lines.LineSplitter``, as the scans split them: a partial line (a write still
in progress) is held until its newline arrives, and one that never gets it (the writer was killed) is
handed on when its file is given up, and is then skipped as damaged; a line longer than any event
could be is dropped and counted (``on_drop``) without being held.

The wait between polls is a ``select`` on a pipe that the signal handlers write to
(``signal.set_wakeup_fd``), so SIGINT and SIGTERM end the command at once, with status 0.
"""

from __future__ import annotations

import os
import select
import signal
import time
from collections.abc import Callable, Iterator
from types import FrameType

from cni_logger.audit.lines import LineSplitter
from cni_logger.audit.sources import OpenFile, chunks
from cni_logger.filesink import BACKUP_SUFFIX_GZ, Order, backup_order, list_backups

GRACE = 2.0
"""Seconds a rotated-away file is still read for late writers' lines."""
READ_LIMIT = 8 << 20
"""Bytes read from one file per poll, so one busy file cannot starve the others."""
_UNLIMITED = 1 << 62
"""A rotated file is read to its end at once (a piece at a time: lines are yielded as they come)."""
_OPEN_ATTEMPTS = 20
"""Opens of a live file that is rotated each time before its backups are listed, before giving up on order."""


class _Open:
    """A descriptor being read, with its unfinished last line."""

    def __init__(self, fd: int, ident: tuple[int, int], on_drop: Callable[[], None]) -> None:
        self.fd = fd
        self.ident = ident
        self.lines = LineSplitter(on_drop)
        self.offset = 0
        self.retire_at = 0.0

    def read_lines(self, limit: int = READ_LIMIT) -> Iterator[bytes]:
        """Lines read from where the last call stopped, up to ``limit`` bytes, a piece at a time."""
        done = 0
        while done < limit:
            try:
                data = os.read(self.fd, 1 << 20)
            except OSError:
                break
            if not data:
                break
            done += len(data)
            self.offset += len(data)
            yield from self.lines.feed(data)

    def close(self) -> list[bytes]:
        """Give the file up; an unfinished line is handed on (it will be counted as damaged)."""
        rest = [self.lines.rest + b"\n"] if self.lines.rest else []
        os.close(self.fd)
        return rest


def _ident(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def _gzip_size(path: str) -> int | None:
    """The uncompressed size (mod 2**32) a gzip file's trailer records, ``None`` if it cannot be read."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        size = os.fstat(fd).st_size
        trailer = os.pread(fd, 4, size - 4) if size >= 18 else b""
    except OSError:
        trailer = b""
    finally:
        os.close(fd)
    return int.from_bytes(trailer, "little") if len(trailer) == 4 else None


class Tail:
    """One followed path.

    Besides the open live file, a tail knows ``older``: the order (``filesink.backup_order``) of the
    newest backup that is *not* to be read, because it was rotated before the live file that is open
    now (or was read already). When the path names another file, every backup newer than that, except
    the held file's own, was rotated between two polls and is read, oldest first, before the new live
    file: under load the plugin can rotate several times between polls, and such a file was never the
    live one while follow looked.
    """

    def __init__(self, path: str, *, from_start: bool = False, on_drop: Callable[[], None] = lambda: None) -> None:
        self.path = path
        self.on_drop = on_drop
        self.current: _Open | None = None
        self.retired: list[_Open] = []
        self.older: Order | None = None
        self.current, older = self._open_live()
        self._set_older(older)
        if self.current is not None and not from_start:
            self.current.offset = os.lseek(self.current.fd, 0, os.SEEK_END)

    def _set_older(self, older: list[str]) -> None:
        """None without backups: the sink numbers from 1 again when there are none left."""
        self.older = backup_order(older[-1]) if older else None

    def _open_live(self) -> tuple[_Open | None, list[str]]:
        """The live file, opened at its start, and the backups rotated before it, oldest first.

        The backups are listed after the open; the path still naming the open file afterwards, with no
        second link to it (the sink links before it unlinks), shows that none of them is this file or
        newer. A file rotated meanwhile is found among them by its inode and the list cut before it; one
        whose backup cannot be found (compressed already) is opened again.
        """
        for _ in range(_OPEN_ATTEMPTS):
            try:
                fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
            except OSError:
                return None, list_backups(self.path)
            names = list_backups(self.path)
            st = os.fstat(fd)
            handle = _Open(fd, (st.st_dev, st.st_ino), self.on_drop)
            live = _ident(self.path) == handle.ident
            if live and st.st_nlink == 1:
                return handle, names
            for index, stem in enumerate(names):
                if _ident(stem) == handle.ident:
                    return handle, names[:index]
            if live:  # another link, not a backup's (or made after the listing): the listing is older
                return handle, names
            os.close(fd)
        return self._open_live_anyway()

    def _open_live_anyway(self) -> tuple[_Open | None, list[str]]:  # pragma: no cover - a rotation per open
        names = list_backups(self.path)
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
        except OSError:
            return None, names
        st = os.fstat(fd)
        return _Open(fd, (st.st_dev, st.st_ino), self.on_drop), names

    def poll(self, now: float) -> Iterator[bytes]:
        """Complete lines appended since the last poll, in file order (rotated files first), as they are read."""
        for old in list(self.retired):
            yield from old.read_lines()
            if now >= old.retire_at:
                self.retired.remove(old)
                yield from old.close()
        if self.current is not None:
            yield from self.current.read_lines()
        try:
            st: os.stat_result | None = os.stat(self.path)
        except OSError:
            st = None
        current = self.current
        if current is not None and st is not None and (st.st_dev, st.st_ino) == current.ident:
            if st.st_size < current.offset:  # truncated in place: start again
                os.lseek(current.fd, 0, os.SEEK_SET)
                current.offset = 0
                current.lines.reset()
            return
        if st is None:
            return  # rotated away and not recreated yet, or not created yet: keep waiting
        self.current = None
        if current is not None:
            current.retire_at = now + GRACE
            self.retired.append(current)
            yield from current.read_lines(limit=_UNLIMITED)  # the old inode to its end, before switching
        yield from self._switch(current, now)

    def _switch(self, held: _Open | None, now: float) -> Iterator[bytes]:
        """Open the new live file; first read the backups rotated since ``held`` (which is read already)."""
        self.current, older = self._open_live()
        skip = self.older
        self._set_older(older)
        first = True
        for stem in older:
            if skip is not None and backup_order(stem) <= skip:
                continue
            if held is not None and self._is_held(held, stem, first):
                first = False
                continue
            first = False
            yield from self._read_backup(stem, now)
        if self.current is not None:
            yield from self.current.read_lines()

    @staticmethod
    def _is_held(held: _Open, stem: str, first: bool) -> bool:
        """Is ``stem`` the backup of the held file? By inode while it has a name; once compressed (no name
        left), the first backup after the ones known older is its, if the sizes agree."""
        ident = _ident(stem)
        if ident is not None:
            return ident == held.ident
        st = os.fstat(held.fd)
        if st.st_nlink or not first:
            return False
        return _gzip_size(stem + BACKUP_SUFFIX_GZ) == st.st_size & 0xFFFFFFFF

    def _read_backup(self, stem: str, now: float) -> Iterator[bytes]:
        """A backup rotated between two polls, from its start: kept open for the grace period like the
        held one if it is plain, read through ``sources.chunks`` if it is compressed already."""
        try:
            fd = os.open(stem, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
        except OSError:
            fd = -1
        if fd >= 0:
            st = os.fstat(fd)
            handle = _Open(fd, (st.st_dev, st.st_ino), self.on_drop)
            handle.retire_at = now + GRACE
            self.retired.append(handle)
            yield from handle.read_lines(limit=_UNLIMITED)
            return
        try:
            fd = os.open(stem + BACKUP_SUFFIX_GZ, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
        except OSError:
            return  # pruned meanwhile
        opened = OpenFile(stem + BACKUP_SUFFIX_GZ, fd, os.fstat(fd).st_size)
        splitter = LineSplitter(self.on_drop)
        try:
            for data in chunks(opened, lambda _: None, lambda _: None):
                yield from splitter.feed(data)
        finally:
            opened.close()
        if splitter.rest:
            yield splitter.rest + b"\n"

    def close(self) -> None:
        for handle in [*self.retired, *([self.current] if self.current else [])]:
            os.close(handle.fd)
        self.retired, self.current = [], None


class StopSignals:
    """SIGINT and SIGTERM end ``wait`` at once and set ``stopped`` (restored on exit)."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.stopped = False
        self._read, self._write = os.pipe()
        for fd in (self._read, self._write):
            os.set_blocking(fd, False)
            os.set_inheritable(fd, False)
        self._old_fd = signal.set_wakeup_fd(self._write)
        self._old = {sig: signal.signal(sig, self._handle) for sig in self.SIGNALS}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.stopped = True

    def wait(self, seconds: float) -> None:
        if self.stopped or seconds <= 0:
            return
        try:
            ready, _, _ = select.select([self._read], [], [], seconds)
        except InterruptedError:  # pragma: no cover - PEP 475 retries; kept for other platforms
            return
        if ready:
            try:
                while os.read(self._read, 512):
                    pass
            except BlockingIOError:
                pass

    def restore(self) -> None:
        for sig, handler in self._old.items():
            signal.signal(sig, handler)
        signal.set_wakeup_fd(self._old_fd)
        os.close(self._read)
        os.close(self._write)


def follow(paths: list[str], on_line: Callable[[bytes], bool], *, interval: float, timeout: float | None,
           from_start: bool = False, on_drop: Callable[[], None] = lambda: None,
           clock: Callable[[], float] = time.monotonic) -> str:
    """Poll ``paths`` until ``on_line`` returns False (enough events), a signal, or the timeout.

    ``on_drop`` hears of each overlong line dropped. Returns why it stopped: ``"done"``, ``"signal"``
    or ``"timeout"``.
    """
    stops = StopSignals()
    tails = [Tail(path, from_start=from_start, on_drop=on_drop) for path in paths]
    deadline = None if timeout is None else clock() + timeout
    try:
        while True:
            for line in _poll_all(tails, clock()):
                if not on_line(line):
                    return "done"
            if stops.stopped:
                return "signal"
            now = clock()
            if deadline is not None and now >= deadline:
                return "timeout"
            stops.wait(interval if deadline is None else min(interval, deadline - now))
            if stops.stopped:
                return "signal"
    finally:
        for tail in tails:
            tail.close()
        stops.restore()


def _poll_all(tails: list[Tail], now: float) -> Iterator[bytes]:
    for tail in tails:
        yield from tail.poll(now)
