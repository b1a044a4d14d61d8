"""Backups big enough to be inflated by a forked child (``sources.ASIDE_AT``), checked against ``gzip`` itself.

The reader hands a compressed backup of 1 MiB or more to a child process; the answers must be those
of reading it in one process, damage included. Here the independent reading is Debian's ``gzip -dc``:
every complete event it can inflate must be read once, in order, and a cut-short file reported.
"""

from __future__ import annotations

import gzip
import json
import random
import subprocess
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cni_logger.audit import sources
from tests.harness.audit import cli
from tests.harness.trails import Trail

EVENTS_PER_BACKUP = 18000
START = datetime(2026, 11, 1, tzinfo=UTC)


def _big_backup(template: dict[str, Any], first: int) -> bytes:
    """``EVENTS_PER_BACKUP`` plugin events (the template's shape), each with its own ids: poorly compressible."""
    lines = []
    rng = random.Random(first)
    for n in range(first, first + EVENTS_PER_BACKUP):
        event = json.loads(json.dumps(template))
        event["@timestamp"] = (START + timedelta(seconds=n)).strftime("%Y-%m-%dT%H:%M:%S.000000Z")
        event["event"]["id"] = str(uuid.UUID(int=rng.getrandbits(128)))
        event["cni"]["container_id"] = f"{rng.getrandbits(256):064x}"
        event["cni"]["netns"] = f"/var/run/netns/cni-{uuid.UUID(int=rng.getrandbits(128))}"
        lines.append(json.dumps(event, ensure_ascii=False, separators=(",", ":")).encode())
    return b"\n".join(lines) + b"\n"


def _complete_ids(path: Path) -> tuple[list[str], str]:
    """The ids of the complete events ``gzip -dc`` inflates from ``path``, and what gzip says on stderr."""
    proc = subprocess.run(["gzip", "-dc", str(path)], capture_output=True, check=False)
    ids = []
    for line in proc.stdout.split(b"\n"):
        try:
            ids.append(json.loads(line)["event"]["id"])
        except ValueError:
            continue  # the line the cut went through
    return ids, proc.stderr.decode(errors="replace")


def test_big_gzip_backups_intact_and_cut_short_read_as_gzip_reads_them(copy_of_trail: Trail, tmp_path: Path) -> None:
    template = next(e for e in copy_of_trail.events if e["cni"]["command"] == "ADD" and e["event"]["outcome"] ==
                    "success")
    log = tmp_path / "cni-logger.log"
    whole = tmp_path / "cni-logger.log.000001.20261101T000000.000000Z.gz"
    cut = tmp_path / "cni-logger.log.000002.20261102T000000.000000Z.gz"
    whole.write_bytes(gzip.compress(_big_backup(template, 0), compresslevel=9))
    data = gzip.compress(_big_backup(template, EVENTS_PER_BACKUP), compresslevel=9)
    cut.write_bytes(data[: len(data) * 2 // 3])
    log.write_bytes(b"")
    assert min(whole.stat().st_size, cut.stat().st_size) >= sources.ASIDE_AT, "too small to be inflated aside"

    expected, said = _complete_ids(whole)
    cut_ids, said_cut = _complete_ids(cut)
    assert len(expected) == EVENTS_PER_BACKUP and not said
    assert 0 < len(cut_ids) < EVENTS_PER_BACKUP and "unexpected end of file" in said_cut
    expected += cut_ids

    found = cli("events", "--json", "--log-file", str(log))
    assert found.rc == 0
    assert [e["event"]["id"] for e in found.json] == expected
    assert f"{cut}: compressed data ends early (truncated file); read up to the cut" in found.stderr
    assert "skipped 1 line (" in found.stderr  # the event the cut went through

    (stats,) = cli("stats", "--json", "--log-file", str(log)).json
    assert stats["events"] == len(expected)
    kinds = [(s["kind"], s["file"]) for s in stats["evidence"]["stretches"]]
    assert ("unreadable", str(cut)) in kinds or ("damaged", str(cut)) in kinds
