"""Bytes to lines, with a cap on a line's length: the one splitter of ``reader`` and ``follow``.

A line is what ends in ``\\n``. Between pieces only the unfinished last line is held, and only up
to ``MAX_LINE`` bytes: beyond that it cannot be an event (events are at most 16 KiB) but garbage,
such as the run of NUL bytes a crash can leave in a file. Such a line is dropped (and counted, by
the caller's ``on_drop``) as soon as it passes the cap, and the rest of it, up to its newline, is
passed over without being held. Memory stays at one piece plus ``MAX_LINE``, whatever the input.
"""

from __future__ import annotations

from collections.abc import Callable

MAX_LINE = 1 << 20
"""Bytes of an unfinished line held before it is dropped as garbage."""


class LineSplitter:
    """Complete lines from pieces of bytes, one piece at a time."""

    __slots__ = ("_discarding", "_on_drop", "rest")

    def __init__(self, on_drop: Callable[[], None]) -> None:
        self._on_drop = on_drop
        self.rest = b""
        """The unfinished last line (never more than ``MAX_LINE`` bytes)."""
        self._discarding = False
        """Inside an overlong line, until its newline."""

    def feed(self, data: bytes) -> list[bytes]:
        """The lines ``data`` completes, without their newlines.

        Split with ``find``, not ``data.split(b"\\n")``: ``bytes.split`` on one byte tests every byte in a loop
        of its own, where ``find`` skips to the newline with ``memchr``. With a trail's lines of about 2 KiB,
        this loop takes half the time ``split`` does, for every command of the audit.
        """
        find = data.find
        end = find(b"\n")
        if end < 0:
            parts: list[bytes] = []
            self.rest += data
        else:
            # The unfinished line is joined to the first line's end only, not to the piece copied whole behind it.
            parts = [self.rest + data[:end] if self.rest else data[:end]]
            append = parts.append
            start = end + 1
            end = find(b"\n", start)
            while end >= 0:
                append(data[start:end])
                start = end + 1
                end = find(b"\n", start)
            self.rest = data[start:]
        if self._discarding:
            if not parts:
                self.rest = b""
                return parts
            del parts[0]
            self._discarding = False
        if len(self.rest) > MAX_LINE:
            self._on_drop()
            self.rest = b""
            self._discarding = True
        return parts

    def reset(self) -> None:
        """Start afresh (the file was truncated and is read again from its start)."""
        self.rest = b""
        self._discarding = False
