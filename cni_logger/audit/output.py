"""Output conventions of ordinary Unix tools: results on stdout, everything else on stderr.

* Exit status: 0 when something was found (or the command did its job), 1 when nothing matched
  (like ``grep``), 2 for a usage error or a file that cannot be read.
* A reader that goes away (``| head``) ends the command quietly: ``BrokenPipeError`` is caught, and
  stdout is pointed at ``/dev/null`` so the final flush cannot fail again.
* Progress is drawn on stderr only when stderr is a terminal and only once a scan has taken a
  second, so scripts and pipes never see it.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Sequence
from typing import IO

FOUND, NOTHING, USAGE = 0, 1, 2
PROG = "cni-logger"


class Out:
    """stdout as bytes: table rows and JSON lines alike, written through one buffer."""

    def __init__(self, stream: IO[bytes] | None = None, *, flush_each: bool = False) -> None:
        self.stream = stream if stream is not None else sys.stdout.buffer
        self.flush_each = flush_each

    def raw(self, data: bytes) -> None:
        self.stream.write(data)
        if self.flush_each:
            self.stream.flush()

    def text(self, line: str) -> None:
        self.raw(line.encode("utf-8", "replace") + b"\n")

    def flush(self) -> None:
        self.stream.flush()


def error(command: str, message: str) -> None:
    """One line on stderr, prefixed like other tools prefix theirs."""
    sys.stderr.write(f"{PROG} {command}: {message}\n")
    sys.stderr.flush()


def guarded(run: Callable[[], int]) -> int:
    """Run a command, turning a closed stdout into a quiet exit and Ctrl-C into status 130."""
    try:
        status = run()
        sys.stdout.flush()
        return status
    except BrokenPipeError:
        _silence_stdout()
        return FOUND
    except KeyboardInterrupt:
        sys.stderr.write("\n")
        return 130


def _silence_stdout() -> None:
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass


class Table:
    """Fixed-width columns, streamed row by row (no buffering to measure): long values just overflow.

    The header comes with the first row, so a question without answers prints nothing at all.
    """

    def __init__(self, out: Out, columns: Sequence[tuple[str, int]], indent: str = "") -> None:
        self.out = out
        self.widths = [width for _, width in columns]
        self.indent = indent
        self.header: list[str] | None = [name for name, _ in columns]

    def row(self, values: Sequence[str]) -> None:
        if self.header is not None:
            header, self.header = self.header, None
            self.row(header)
        cells = [value.ljust(width) for value, width in zip(values[:-1], self.widths, strict=False)]
        self.out.text((self.indent + "  ".join([*cells, values[-1]])).rstrip())


class Progress:
    """``scanned 45% (100 of 229 MB on disk; 480 MB of events, 160 MB/s)`` on a terminal's stderr, in long scans."""

    DELAY = 1.0
    INTERVAL = 0.25

    def __init__(self, total_bytes: int, stream: IO[str] | None = None) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = _isatty(self.stream) and total_bytes > 0
        self.total = total_bytes
        self.done = 0
        self.data = 0
        """Bytes of events (inflated) read so far: the rate people care about."""
        self.started = time.monotonic()
        self.drawn_at = 0.0
        self.visible = False

    def advance(self, nbytes: int) -> None:
        self.done += nbytes
        if not self.enabled:
            return
        now = time.monotonic()
        if now - self.started < self.DELAY or now - self.drawn_at < self.INTERVAL:
            return
        self.drawn_at = now
        rate = self.data / (now - self.started) / 1e6
        percent = min(100, self.done * 100 // self.total)
        self.stream.write(f"\r{PROG}: scanned {percent}% ({self.done / 1e6:.0f} of {self.total / 1e6:.0f} MB on "
                          f"disk; {self.data / 1e6:.0f} MB of events, {rate:.0f} MB/s)\x1b[K")
        self.stream.flush()
        self.visible = True

    def clear(self) -> None:
        if self.visible:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
            self.visible = False


def _isatty(stream: IO[str]) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def milliseconds(duration_ns: int | None) -> str:
    return "-" if duration_ns is None else f"{duration_ns / 1e6:.1f}"
