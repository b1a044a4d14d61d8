"""Exports sorted on disk: an export larger than ``exports.CHUNK_BYTES`` is sorted by an external merge sort (runs
written to temporary files, merged at the end), and must give the very trails, so the very answers, that sorting it
in memory gives. The chunk is forced small here so that the disk path runs (with rounds of merges too)."""

from __future__ import annotations

import io
import json
import random
import re
from pathlib import Path
from typing import Any

import pytest

from cni_logger import cli
from cni_logger.audit import exports
from cni_logger.audit.timeparse import from_epoch, to_epoch
from tests.harness.node_lines import invocation

NET = "pod-net"
T0 = "2026-01-02T10:00:00.000000Z"


def at(seconds: float) -> str:
    return from_epoch(to_epoch(T0) + seconds)


def export_lines() -> list[bytes]:
    """Three nodes' events as Elasticsearch ``_source`` documents in a scrambled order (as a search returns them),
    with events at the very same time (kept in the export's order), a document that is not an event, a line that
    is not JSON, and a plugin line cut short under ``message`` that holds a newline."""
    docs: list[dict[str, Any]] = []
    for number in range(40):
        host = f"node-{number % 3}"
        cid = f"ctr-{number}"
        address = f"10.88.0.{number % 7 + 2}"
        docs.append(invocation("ADD", at(number), host, network=NET, cid=cid, address=address, pod=f"p{number}",
                               namespace="shop"))
        if number % 4:
            docs.append(invocation("DEL", at(number + 0.5), host, network=NET, cid=cid, address=address,
                                   pod=f"p{number}", namespace="shop"))
    docs += [invocation("CHECK", at(50), "node-1", network=NET, cid=f"ctr-{n}", address="10.88.0.9") for n in (4, 8)]
    shipped = [{"_index": "logs-cni", "_source": {**d, "event": {**d["event"], "ingested": at(99)}}} for d in docs]
    lines = [json.dumps(d).encode() for d in shipped]
    random.Random(18).shuffle(lines)
    lines[5:5] = [json.dumps({"_source": {"hello": "world"}}).encode(), b"not json at all",
                  json.dumps({"message": '{"@timestamp":"' + at(7) + '","message":"CNI ADD\ncut'}).encode()]
    return lines


def spooled(lines: list[bytes], spooler: exports.Spool) -> dict[str, bytes]:
    spooler.read(io.BufferedReader(io.BytesIO(b"\n".join(lines) + b"\n")))  # type: ignore[arg-type]
    return {Path(p).name: Path(p).read_bytes() for p in spooler.write("stdin")}


class Watched(exports.Spool):
    """A spool that remembers the most it held between spills."""

    most = 0

    def add(self, item: Any) -> None:
        super().add(item)
        self.most = max(self.most, self.held)


@pytest.mark.parametrize(("chunk", "width"), [(1, 2), (700, 3), (5000, 64), (20000, 4)])
def test_sorting_on_disk_writes_the_trails_sorting_in_memory_writes(chunk: int, width: int) -> None:
    lines = export_lines()
    in_memory = exports.Spool()
    wanted = spooled(lines, in_memory)
    assert in_memory.spilled == 0 and sorted(wanted) == ["stdin.node-0.log", "stdin.node-1.log", "stdin.node-2.log"]
    on_disk = Watched(chunk_bytes=chunk, merge_width=width)
    assert spooled(lines, on_disk) == wanted
    assert on_disk.spilled > 1  # the disk path ran: runs were written (and merged)
    assert on_disk.most < chunk  # never more held than a chunk: it spills as soon as a chunk is full
    assert not [p for p in Path(on_disk.directory).iterdir() if p.name.startswith("run-")]  # runs removed once read


def test_each_node_trail_is_in_time_order() -> None:
    trails = spooled(export_lines(), exports.Spool(chunk_bytes=300, merge_width=2))
    for name, data in trails.items():
        stamps = [json.loads(raw)["@timestamp"] for raw in data.splitlines() if raw.startswith(b'{"@timestamp"')
                  and raw.endswith(b"}")]  # not the line cut short
        assert stamps == sorted(stamps) and len(stamps) > 20, name


_TEMPORARY = re.compile(r"/[^ ]*/cni-logger-export-[^/ ]+")
QUESTIONS = [["who-had", "10.88.0.9", "--json"], ["who-had", "10.88.0.0/24", "--at", at(30.2), "--json"],
             ["leaks", "--json"], ["stats", "--json"], ["timeline", "ctr-4", "--json"], ["events", "--json"]]


@pytest.mark.parametrize("question", QUESTIONS, ids=[q[0] + str(n) for n, q in enumerate(QUESTIONS)])
def test_answers_from_an_export_sorted_on_disk_are_the_in_memory_ones(
        question: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    export = tmp_path / "export.ndjson"
    export.write_bytes(b"\n".join(export_lines()) + b"\n")

    def answer() -> tuple[int, str, str]:
        status = cli.tool([*question, "--log-file", str(export)])
        out, err = capsys.readouterr()
        return status, _TEMPORARY.sub("EXPORT", out), _TEMPORARY.sub("EXPORT", err)  # each run's own directory

    in_memory = answer()
    assert in_memory[1], in_memory
    spilled: list[int] = []
    real = exports.Spool._spill

    def spill(self: exports.Spool) -> None:
        spilled.append(len(self.groups))
        real(self)

    monkeypatch.setattr(exports, "CHUNK_BYTES", 8000)  # a few lines per run
    monkeypatch.setattr(exports, "MERGE_WIDTH", 2)
    monkeypatch.setattr(exports.Spool, "_spill", spill)
    on_disk = answer()
    assert spilled, "the disk path did not run"
    if question[0] in ("leaks", "stats"):  # ages and the trail's temporary file names are the run's own
        return _same_json(in_memory, on_disk)
    assert on_disk == in_memory


def _same_json(first: tuple[int, str, str], second: tuple[int, str, str]) -> None:
    def drop(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: drop(v) for k, v in value.items() if k not in ("age_seconds",)}
        if isinstance(value, list):
            return [drop(v) for v in value]
        return value

    assert first[0] == second[0]
    assert [drop(json.loads(x)) for x in first[1].splitlines()] == [drop(json.loads(x)) for x in second[1].splitlines()]

