"""``lines.LineSplitter`` against the plain definition of a line, piece boundaries anywhere."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cni_logger.audit import lines
from cni_logger.audit.lines import LineSplitter

_BYTES = st.binary(max_size=40).map(lambda b: b.replace(b"\x00", b"\n"))
"""Pieces with newlines often enough that lines start and end anywhere, at a piece's edge too."""


class _Split:
    """The splitter's contract written the obvious way (``bytes.split``), to check the fast one against."""

    def __init__(self, limit: int) -> None:
        self.limit, self.rest, self.discarding, self.drops = limit, b"", False, 0

    def feed(self, data: bytes) -> list[bytes]:
        parts = (self.rest + data).split(b"\n")
        self.rest = parts.pop()
        if self.discarding and parts:
            del parts[0]
            self.discarding = False
        elif self.discarding:
            self.rest = b""
            return parts
        if len(self.rest) > self.limit:
            self.drops += 1
            self.rest, self.discarding = b"", True
        return parts


@settings(max_examples=400, deadline=None)
@given(pieces=st.lists(_BYTES, max_size=12), limit=st.integers(min_value=1, max_value=30))
def test_the_splitter_gives_the_lines_split_gives_piece_by_piece(pieces: list[bytes], limit: int) -> None:
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(lines, "MAX_LINE", limit)
        drops: list[None] = []
        fast, plain = LineSplitter(lambda: drops.append(None)), _Split(limit)
        for piece in pieces:
            assert fast.feed(piece) == plain.feed(piece)
            assert fast.rest == plain.rest
        assert len(drops) == plain.drops


@settings(max_examples=200, deadline=None)
@given(pieces=st.lists(_BYTES, max_size=12))
def test_without_overlong_lines_every_line_comes_out_once(pieces: list[bytes]) -> None:
    splitter = LineSplitter(lambda: pytest.fail("no line is over MAX_LINE here"))
    found = [line for piece in pieces for line in splitter.feed(piece)]
    assert [*found, splitter.rest] == b"".join(pieces).split(b"\n")
