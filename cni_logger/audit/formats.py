"""The output formats of every question: a table for people, JSON lines, CSV and TSV for spreadsheets.

Text in the trail is partly chosen by whoever names a pod or a container, so two writers here
defend the reader of the output, each in one place:

* ``visible`` (tables and every other human-readable line, stderr messages included): control
  characters (C0, DEL, C1) and Unicode bidirectional overrides are shown as ``\\xNN`` / ``\\uNNNN``
  instead of being sent to the terminal, so a pod named ``"web\\x1b]0;owned\\x07"`` cannot retitle,
  recolour or rewrite the operator's screen, nor hide text. JSON is exact (``json.dumps`` escapes C0
  itself; what it leaves is data for a program, not for a terminal).
* ``Delimited`` (``--format csv|tsv``): a text cell that begins with ``=``, ``+``, ``-``, ``@``, a tab
  or a carriage return gets a leading apostrophe, which spreadsheets show as text instead of running
  the cell as a formula (CSV injection). Numbers the tool computes are written as they are.

CSV follows RFC 4180: a header row, CRLF line ends, fields quoted when they hold ``,``, ``"``, CR or
LF (quotes doubled). TSV has no quoting, so a tab, newline, carriage return or backslash inside a
field is written as ``\\t``, ``\\n``, ``\\r``, ``\\\\``. Both have one row per answer and empty cells
for absent values; a question without answers writes nothing at all, header included (like the table).
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cni_logger.audit.output import Out

Cell = str | int | float | None

_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
"""What a terminal may act on or reorder: C0, DEL and C1 controls (ESC, CSI, OSC...), bidi marks and overrides."""


def _show(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def plural(count: int, noun: str, nouns: str = "") -> str:
    """``1 file``, ``2 files``, ``0 files`` (``nouns``: an irregular plural): every count the tool prints goes
    through here, so that none says "1 files"."""
    return f"{count} {noun}" if count == 1 else f"{count} {nouns or noun + 's'}"


def visible(text: str) -> str:
    """``text`` safe to print on a terminal: controls and bidi overrides written out as escapes."""
    return _UNSAFE.sub(_show, text) if _UNSAFE.search(text) else text


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def defused(text: str) -> str:
    """A spreadsheet cell that cannot be taken for a formula (OWASP's advice: a leading apostrophe)."""
    return "'" + text if text.startswith(_FORMULA_START) else text


def _cell(value: Cell) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return defused(value)
    return str(value)


_TSV_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


class Delimited:
    """``--format csv`` or ``tsv``: a header row with the first answer, then one row per answer."""

    def __init__(self, out: Out, fmt: str, columns: Sequence[str]) -> None:
        if fmt not in ("csv", "tsv"):
            raise ValueError(f"not a delimited format: {fmt!r}")
        self.out = out
        self.tsv = fmt == "tsv"
        self.columns = list(columns)
        self.started = False
        self._buffer = io.StringIO()
        self._csv = csv.writer(self._buffer, lineterminator="\r\n", quoting=csv.QUOTE_MINIMAL)

    def _write(self, cells: Sequence[str]) -> None:
        if self.tsv:
            self.out.raw(("\t".join(c.translate(_TSV_ESCAPES) for c in cells) + "\n").encode("utf-8", "replace"))
            return
        self._csv.writerow(cells)
        self.out.raw(self._buffer.getvalue().encode("utf-8", "replace"))
        self._buffer.seek(0)
        self._buffer.truncate()

    def row(self, values: Sequence[Cell]) -> None:
        if len(values) != len(self.columns):
            raise ValueError(f"{len(values)} values for {len(self.columns)} columns")
        if not self.started:
            self.started = True
            if getattr(self.out, "headers", True):
                self._write(self.columns)
        self._write([_cell(v) for v in values])
