"""The output writers: escaping for terminals, CSV/TSV quoting and formula defusing, table sizing."""

from __future__ import annotations

import csv
import io

from cni_logger.audit.formats import Delimited, defused, visible
from cni_logger.audit.output import Out, Table, container


def test_visible_writes_out_controls_and_bidi_overrides() -> None:
    assert visible("web-1") == "web-1"
    assert visible("a\x1b]0;owned\x07b") == "a\\x1b]0;owned\\x07b"
    assert visible("x\u009b31m\x7f") == "x\\x9b31m\\x7f"
    assert visible("abc\u202edcb") == "abc\\u202edcb"
    assert visible("née/ünïcode") == "née/ünïcode"


def test_defused_cells_cannot_be_formulas() -> None:
    for text in ("=1+1", "+1", "-2", "@SUM(A1)", "\tx", "\rx"):
        assert defused(text) == "'" + text
    assert defused("web-=1") == "web-=1"


def write(fmt: str, rows: list[list[object]]) -> bytes:
    buffer = io.BytesIO()
    out = Out(buffer)
    writer = Delimited(out, fmt, ["a", "b", "c"])
    for row in rows:
        writer.row(row)  # type: ignore[arg-type]
    out.flush()
    return buffer.getvalue()


def test_csv_quotes_as_rfc4180_and_tsv_escapes() -> None:
    rows: list[list[object]] = [['say "hi", twice', "line\nbreak", None], ["=cmd", 1.5, 2]]
    data = write("csv", rows)
    assert data == b'a,b,c\r\n"say ""hi"", twice","line\nbreak",\r\n\'=cmd,1.5,2\r\n'
    assert list(csv.reader(io.StringIO(data.decode(), newline=""))) == [
        ["a", "b", "c"], ['say "hi", twice', "line\nbreak", ""], ["'=cmd", "1.5", "2"]]
    assert write("tsv", [["a\tb\\c", "x\ny", None]]) == b"a\tb\tc\na\\tb\\\\c\tx\\ny\t\n"
    assert write("csv", []) == b""  # nothing found: not even a header


def test_table_sizes_columns_to_the_rows_and_escapes() -> None:
    buffer = io.BytesIO()
    out = Out(buffer)
    table = Table(out, (("POD", 3), ("X", 0)))
    table.row(["kube-system/coredns-5d78c9869d-abcde", "1"])
    table.row(["a\x1b[2Jb", "2"])
    assert buffer.getvalue() == b""  # held to size the columns
    out.text("after")
    out.flush()  # rows are gathered into larger writes
    lines = buffer.getvalue().decode().splitlines()
    assert lines == ["POD                                   X", "kube-system/coredns-5d78c9869d-abcde  1",
                     "a\\x1b[2Jb                             2", "after"]


def test_container_ids_hex_short_others_whole() -> None:
    assert container("f" * 64, False) == "f" * 12
    assert container("cnitool-20c433bb2b1d6ede56d6", False) == "cnitool-20c433bb2b1d6ede56d6"
    assert container("x" * 40, False) == "x" * 31 + "~"
    assert container("x" * 40, True) == "x" * 40
