"""New events as they arrive, across rotation: ``follow`` (what ``tail -F`` does, event-aware).

Each followed path is polled: read what was appended, then compare the path's inode with the one
open. When the plugin has rotated the file (a rename, so the path now names a new inode), the old
descriptor is read to its end *before* switching, and kept for a short grace period afterwards: a
writer that opened the file just before the rename finishes its line there. The new file is read
from its beginning. A file truncated in place (logrotate's ``copytruncate``) is read again from the
start. A path that does not exist yet is waited for.

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

GRACE = 2.0
"""Seconds a rotated-away file is still read for late writers' lines."""
READ_LIMIT = 8 << 20
"""Bytes read from one file per poll, so one busy file cannot starve the others."""


class _Open:
    """A descriptor being read, with its unfinished last line."""

    def __init__(self, fd: int, ident: tuple[int, int], on_drop: Callable[[], None]) -> None:
        self.fd = fd
        self.ident = ident
        self.lines = LineSplitter(on_drop)
        self.offset = 0
        self.retire_at = 0.0

    def read_lines(self, limit: int = READ_LIMIT) -> list[bytes]:
        lines: list[bytes] = []
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
            lines += self.lines.feed(data)
        return lines

    def close(self) -> list[bytes]:
        """Give the file up; an unfinished line is handed on (it will be counted as damaged)."""
        rest = [self.lines.rest + b"\n"] if self.lines.rest else []
        os.close(self.fd)
        return rest


class Tail:
    """One followed path."""

    def __init__(self, path: str, *, from_start: bool = False, on_drop: Callable[[], None] = lambda: None) -> None:
        self.path = path
        self.on_drop = on_drop
        self.current: _Open | None = None
        self.retired: list[_Open] = []
        self.current = self._open(at_end=not from_start)

    def _open(self, *, at_end: bool) -> _Open | None:
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
        except OSError:
            return None
        st = os.fstat(fd)
        handle = _Open(fd, (st.st_dev, st.st_ino), self.on_drop)
        if at_end:
            handle.offset = os.lseek(fd, 0, os.SEEK_END)
        return handle

    def poll(self, now: float) -> list[bytes]:
        """Complete lines appended since the last poll, in file order (rotated files first)."""
        lines: list[bytes] = []
        for old in list(self.retired):
            lines += old.read_lines()
            if now >= old.retire_at:
                lines += old.close()
                self.retired.remove(old)
        if self.current is not None:
            lines += self.current.read_lines()
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
            return lines
        if st is None:
            return lines  # rotated away and not recreated yet, or not created yet: keep waiting
        if current is not None:
            lines += current.read_lines(limit=1 << 62)  # the old inode to its end, before switching
            current.retire_at = now + GRACE
            self.retired.append(current)
        self.current = self._open(at_end=False)
        if self.current is not None:
            lines += self.current.read_lines()
        return lines

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
