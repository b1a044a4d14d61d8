"""Printing the answers, with the output conventions of ordinary Unix tools.

The questions (``cni_logger.audit.run``) compute answers: records, attachments, holder and leak
summaries, a stats report. This module prints them, as tables for people or, with ``--json``, as
JSON lines for machines (an event as its original line); nothing here reads the trail.

Conventions: results on stdout, everything else on stderr.

* Exit status: 0 when something was found (or the command did its job), 1 when nothing matched
  (like ``grep``), 2 for a usage error or a file that cannot be read, 3 for an answer the trail
  cannot vouch for (or, with ``--strict``, any damage in it), 4 when there is no evidence either way
  (``cni_logger.audit.run`` says when).
* A reader that goes away (``| head``) ends the command quietly: ``BrokenPipeError`` is caught, and
  stdout is pointed at ``/dev/null`` so the final flush cannot fail again.
* Progress is drawn on stderr only when stderr is a terminal and only once a scan has taken a
  second, so scripts and pipes never see it.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from typing import IO, TYPE_CHECKING, Any

from cni_logger.audit import record
from cni_logger.audit.record import Record
from cni_logger.audit.timeparse import human_duration, short, to_epoch

if TYPE_CHECKING:
    from cni_logger.audit.timeline import Attachment

FOUND, NOTHING, USAGE, QUALIFIED, NO_EVIDENCE = 0, 1, 2, 3, 4
PROG = "cni-logger"
SHORT_ID = 12
"""Container ids are shown this long unless ``--no-trunc`` (as ``docker ps`` shows them)."""


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

    def json(self, value: Any) -> None:
        """One compact JSON line (non-ASCII kept as UTF-8)."""
        self.text(json.dumps(value, ensure_ascii=False, separators=(",", ":")))

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


def container(cid: str, full: bool) -> str:
    return cid if full else cid[:SHORT_ID]


def pod_label(namespace: str | None, pod: str | None) -> str:
    """``namespace/pod``, or just the pod (or Podman container) name."""
    return f"{namespace}/{pod}" if namespace and pod else pod or ""


# -- the answers ------------------------------------------------------------------------------------

EVENT_COLUMNS = (("TIME", 24), ("COMMAND", 7), ("OUTCOME", 7), ("MS", 7), ("NETWORK", 18), ("IFNAME", 6),
                 ("CONTAINER", 12), ("POD", 24), ("ADDRESSES", 0))


class EventPrinter:
    """Events (``events``, ``follow``) as table rows, or as their original lines (``--json``)."""

    def __init__(self, out: Out, *, as_json: bool, full_ids: bool) -> None:
        self.out = out
        self.as_json = as_json
        self.full_ids = full_ids
        self.table: Table | None = None

    def __call__(self, rec: Record) -> None:
        if self.as_json:
            self.out.raw(rec.line + b"\n")
            return
        if self.table is None:
            self.table = Table(self.out, EVENT_COLUMNS)
        doc = rec.doc
        self.table.row([short(rec.timestamp) or "-", rec.command or "-", rec.outcome or "-",
                        milliseconds(rec.duration), rec.network or "-", rec.ifname or "-",
                        container(rec.container_id, self.full_ids) or "-",
                        pod_label(record.namespace(doc), record.pod(doc)) or "-",
                        ",".join(record.addresses(doc)) or "-"])


def timeline(out: Out, attachments: Iterable[Attachment], *, as_json: bool) -> None:
    """Each attachment: a heading, its steps as a table, then the periods it was attached."""
    for number, attachment in enumerate(attachments):
        if as_json:
            out.json(attachment.to_json())
            continue
        if number:
            out.text("")
        pod = pod_label(attachment.namespace, attachment.pod)
        out.text(f"container {attachment.container_id}  network {attachment.network or '-'}  "
                 f"ifname {attachment.ifname or '-'}" + (f"  pod {pod}" if pod else ""))
        table = Table(out, (("TIME", 24), ("COMMAND", 7), ("OUTCOME", 7), ("MS", 7), ("ADDRESSES", 18),
                            ("INTERFACES", 0)), indent="  ")
        for step in attachment.steps:
            interfaces = " ".join(f"{i.get('name', '?')}={i.get('mac', '?')}" + ("(ctr)" if i.get("sandbox") else "")
                                  for i in step.interfaces)
            note = f"  error: {step.error}" if step.error else ""
            table.row([short(step.timestamp), step.command, step.outcome, milliseconds(step.duration_ns),
                       ",".join(step.cidrs) or "-", (interfaces or "-") + note])
        for attached, detached in attachment.periods():
            if detached is None:
                out.text(f"  attached {short(attached)}, still attached at the end of the trail")
            else:
                length = human_duration(to_epoch(detached) - to_epoch(attached))
                out.text(f"  attached {short(attached)}, detached {short(detached)} ({length})")


def _since(holder: dict[str, Any]) -> str:
    """When a holder got the address: the ADD, or ``<=`` the first evidence when the ADD is not in the trail."""
    return short(holder["from"]) if holder["from"] else f"<={short(holder['seen'])}"


def holders(out: Out, found: Iterable[dict[str, Any]], *, as_json: bool, full_ids: bool) -> None:
    """``who-had``: one row (or JSON line) per holder of the address."""
    table = Table(out, (("FROM", 26), ("UNTIL", 24), ("NETWORK", 18), ("IFNAME", 6), ("CONTAINER", 12),
                        ("POD", 24), ("ENDED BY", 10), ("NOTE", 0)))
    for holder in found:
        if as_json:
            out.json(holder)
            continue
        table.row([_since(holder), short(holder["until"]) if holder["until"] else "(still held)",
                   holder["network"] or "-", holder["ifname"] or "-", container(holder["container_id"], full_ids),
                   pod_label(holder["namespace"], holder["pod"]) or "-", holder["ended_by"] or "-", _note(holder)])


def _note(row: dict[str, Any]) -> str:
    """What the trail cannot vouch for in a row: ``possibly`` first (who-had --at), then each note."""
    notes = list(row.get("notes") or [])
    if row.get("certainty") == "possibly":
        notes.insert(0, "POSSIBLY")
    return "; ".join(notes) or "-"


NEVER_DELETED, DEL_WITHOUT_ADD = "never-deleted", "del-without-add"
"""The two kinds of ``leaks``."""
SUPERSEDED, CLEANUP_DEL = "superseded", "cleanup-del"
"""What ``leaks`` lists apart, as not leaks: an attachment whose address another one was given (its DEL
was lost), and a DEL without ADD nor cached result (the clean-up after an ADD that failed)."""


def leaks(out: Out, found: Iterable[dict[str, Any]], *, as_json: bool, full_ids: bool) -> None:
    """``leaks``: one row (or JSON line) per attachment never deleted or DEL without ADD."""
    table = Table(out, (("KIND", 15), ("SINCE", 26), ("AGE", 8), ("NETWORK", 18), ("IFNAME", 6), ("CONTAINER", 12),
                        ("POD", 24), ("ADDRESSES", 18), ("NOTE", 0)))
    for leak in found:
        if as_json:
            out.json(leak)
            continue
        age = leak["age_seconds"]
        orphan = leak["kind"] == DEL_WITHOUT_ADD
        table.row([leak["kind"], short(leak["seen"]) if orphan else _since(leak),
                   "-" if age is None else human_duration(age), leak["network"] or "-", leak["ifname"] or "-",
                   container(leak["container_id"], full_ids), pod_label(leak["namespace"], leak["pod"]) or "-",
                   ",".join(leak["addresses"]) or "-", _note(leak)])


def stats(out: Out, report: dict[str, Any], *, as_json: bool, percentiles: Sequence[int]) -> None:
    """``stats``: the totals, then counts per command, outcome and network, then latency percentiles."""
    if as_json:
        out.json(report)
        return
    span = f"  ({short(report['first'])} .. {short(report['last'])})" if report["first"] else ""
    out.text(f"events: {report['events']}{span}")
    for title, key in (("command", "commands"), ("outcome", "outcomes"), ("network", "networks")):
        out.text("")
        table = Table(out, ((title.upper(), 24), ("EVENTS", 0)))
        for name, count in report[key].items():
            table.row([name, str(count)])
    out.text("")
    table = Table(out, (("LATENCY (ms)", 14), ("COUNT", 8), *((f"P{p}", 9) for p in percentiles),
                        ("MAX", 9), ("MEAN", 0)))
    for name, summary in report["latency_ms"].items():
        if summary["count"]:
            table.row([name, str(summary["count"]), *(f"{summary[f'p{p}']:.1f}" for p in percentiles),
                       f"{summary['max']:.1f}", f"{summary['mean']:.1f}"])
