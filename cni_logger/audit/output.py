"""Printing the answers, with the output conventions of ordinary Unix tools.

The questions (``cni_logger.audit.run``) compute answers: records, attachments, holder and leak
summaries, a stats report. This module prints them in the ``--format`` asked for (``formats``): a
table for people (the default), JSON lines for machines (``--json`` is the same; an event is its
original line), CSV or TSV with one row per answer; nothing here reads the trail. Every
human-readable line goes through ``Out.text``, which shows control characters as escapes.

Conventions: results on stdout, everything else on stderr. ``--no-headers`` leaves out tables' and
CSV/TSV's header lines (``Out.headers``); ``--limit N`` prints the first N answers and says on stderr
how many there were (``run.Session.limited``); counts are worded by ``formats.plural`` ("1 file").

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
import re
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from typing import IO, TYPE_CHECKING, Any

from cni_logger.audit import record
from cni_logger.audit.attempts import HINT
from cni_logger.audit.formats import Cell, Delimited, plural, visible
from cni_logger.audit.record import Record
from cni_logger.audit.timeparse import epoch, human_duration, short, to_epoch

if TYPE_CHECKING:
    from cni_logger.audit.timeline import Attachment, Period

FOUND, NOTHING, USAGE, QUALIFIED, NO_EVIDENCE = 0, 1, 2, 3, 4
PROG = "cni-logger"
SHORT_ID = 12
"""Hex container ids are shown this long unless ``--no-trunc`` (as ``docker ps`` shows them)."""
LONG_ID = 32
"""Other ids (``cnitool-`` + 20 hex, Podman names, test ids) are shown whole up to this length."""


class Out:
    """stdout as bytes: table rows, text, JSON and CSV lines alike, written through one buffer.

    A ``Table`` may hold its first rows back to size its columns; any other output, and ``flush``,
    lets them out first, so the order of what is written never changes.
    """

    BUFFER = 1 << 16
    """Bytes gathered before one write: stdout may be unbuffered (``PYTHONUNBUFFERED``, ``python -u``), and a
    system call per row would cost more than computing the row."""

    def __init__(self, stream: IO[bytes] | None = None, *, flush_each: bool = False, headers: bool = True) -> None:
        self.stream = stream if stream is not None else sys.stdout.buffer
        self.flush_each = flush_each
        self.headers = headers
        """``--no-headers``: tables and CSV/TSV without their header line (as ``kubectl get --no-headers``)."""
        self.held: list[Table] = []
        self._pending: list[bytes] = []
        self._size = 0

    def raw(self, data: bytes) -> None:
        if self.held:
            self.release()
        if self.flush_each:
            self.stream.write(data)
            self.stream.flush()
            return
        self._pending.append(data)
        self._size += len(data)
        if self._size >= self.BUFFER:
            self._write_pending()

    def _write_pending(self) -> None:
        pending, self._pending, self._size = self._pending, [], 0
        if pending:
            self.stream.write(b"".join(pending))

    def text(self, line: str) -> None:
        """A line for people: control characters and bidi overrides shown as escapes (``formats.visible``)."""
        self.raw(visible(line).encode("utf-8", "replace") + b"\n")

    def json(self, value: Any) -> None:
        """One compact JSON line (non-ASCII kept as UTF-8), exact: not escaped for terminals."""
        self.raw(json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8", "replace") + b"\n")

    def release(self) -> None:
        """Write the rows tables are holding back."""
        tables, self.held = self.held, []
        for table in tables:
            table.start()

    def flush(self) -> None:
        self.release()
        self._write_pending()
        self.stream.flush()


def error(command: str, message: str) -> None:
    """One line on stderr, prefixed like other tools prefix theirs (escaped: it may quote the trail)."""
    sys.stderr.write(visible(f"{PROG} {command}: {message}") + "\n")
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
    """Aligned columns, sized to fit the first ``SAMPLE`` rows, then streamed row by row.

    Each column is at least its given width and at most ``MAX_WIDTH`` wide (wider values overflow,
    keeping the next columns readable by the two-space gap); the first rows are held until ``SAMPLE``
    have come or anything else is written (``Out.release``). With ``sample=0`` (``follow``: rows must
    appear as they happen) the given widths are used from the start. Cells are escaped by ``Out.text``.

    The header comes with the first row, so a question without answers prints nothing at all.
    """

    SAMPLE = 100
    MAX_WIDTH = 64

    def __init__(self, out: Out, columns: Sequence[tuple[str, int]], indent: str = "", *,
                 sample: int | None = None) -> None:
        self.out = out
        self.widths = [width for _, width in columns]
        self.indent = indent
        self.header: list[str] | None = [name for name, _ in columns]
        self.sample = (0 if out.flush_each else self.SAMPLE) if sample is None else sample
        self.pending: list[list[str]] = []

    def row(self, values: Sequence[str]) -> None:
        if self.header is not None:
            self.pending.append([visible(v) for v in values])
            if len(self.pending) == 1:
                self.out.held.append(self)
            if len(self.pending) >= self.sample:
                self.out.held.remove(self)
                self.start()
            return
        self._write(values)

    def start(self) -> None:
        """Size the columns to the header and the rows held, and write them."""
        if self.header is None:
            return
        header, self.header = self.header, None
        rows, self.pending = [header, *self.pending], []
        for column in range(len(self.widths)):
            longest = max((len(r[column]) for r in rows if column < len(r) - 1), default=0)
            self.widths[column] = max(self.widths[column], min(longest, self.MAX_WIDTH))
        for row in rows if self.out.headers else rows[1:]:
            self._write(row)

    def _write(self, values: Sequence[str]) -> None:
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


_HEX = re.compile("[0-9a-f]+")
"""A hex id (one match: a table asks it of every row's container)."""


def container(cid: str, full: bool) -> str:
    """A container id for a table: a hex id to 12 characters (``docker ps``), others whole up to 32."""
    if full or len(cid) <= SHORT_ID:
        return cid
    if _HEX.fullmatch(cid):
        return cid[:SHORT_ID]
    return cid if len(cid) <= LONG_ID else cid[:LONG_ID - 1] + "~"


def pod_label(namespace: str | None, pod: str | None) -> str:
    """``namespace/pod``, or just the pod (or Podman container) name."""
    return f"{namespace}/{pod}" if namespace and pod else pod or ""


# -- the answers ------------------------------------------------------------------------------------


def flat(value: Any) -> Cell:
    """A JSON value as one CSV/TSV cell: lists joined by spaces, objects as compact JSON."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None or isinstance(value, (str, int, float)):
        return value
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return " ".join(value)
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


class Records:
    """Answers that are flat JSON objects (holders, leaks): JSON lines, or CSV/TSV with a column per key.

    The columns are the first answer's keys, with ``<key>_epoch`` after each time in ``times``; keys a
    later answer adds (an optional qualification) are not columns, keys it lacks are empty cells.
    """

    def __init__(self, out: Out, fmt: str, times: Sequence[str] = ()) -> None:
        self.out = out
        self.fmt = fmt
        self.times = times
        self.keys: list[str] | None = None
        self.writer: Delimited | None = None

    def __call__(self, answer: dict[str, Any]) -> None:
        if self.fmt == "json":
            self.out.json(answer)
            return
        if self.keys is None:
            self.keys = list(answer)
            columns = [c for k in self.keys for c in ((k, f"{k}_epoch") if k in self.times else (k,))]
            self.writer = Delimited(self.out, self.fmt, columns)
        assert self.writer is not None
        cells: list[Cell] = []
        for key in self.keys:
            cells.append(flat(answer.get(key)))
            if key in self.times:
                value = answer.get(key)
                cells.append(epoch(value) if isinstance(value, str) else None)
        self.writer.row(cells)


HOST = ("HOST", 12)
"""The node's column (``host.name``), in every table of attachments and events: always there, so that columns stay
where scripts expect them whether a trail is one node's or several merged (the same network names and address ranges
are on every node; without it two nodes' rows look like duplicates)."""
EVENT_COLUMNS = (("TIME", 24), ("COMMAND", 7), ("OUTCOME", 7), ("MS", 7), HOST, ("NETWORK", 18), ("IFNAME", 6),
                 ("CONTAINER", 12), ("POD", 24), ("ADDRESSES", 0))
EVENT_FIELDS = ("time", "epoch", "command", "outcome", "duration_ms", "host", "network", "ifname", "container_id",
                "namespace", "pod", "addresses", "error", "event_id")


class EventPrinter:
    """Events (``events``, ``follow``) as table rows, CSV/TSV rows, or their original lines (JSON)."""

    def __init__(self, out: Out, *, fmt: str, full_ids: bool) -> None:
        self.out = out
        self.fmt = fmt
        self.full_ids = full_ids
        self.table: Table | None = None
        self.writer: Delimited | None = None

    def __call__(self, rec: Record) -> None:
        if self.fmt == "json":
            self.out.raw(rec.line + b"\n")
            return
        doc = rec.doc
        if self.fmt != "table":
            if self.writer is None:
                self.writer = Delimited(self.out, self.fmt, EVENT_FIELDS)
            event = doc.get("event")
            event_id = event.get("id") if isinstance(event, dict) else None
            self.writer.row([rec.timestamp, epoch(rec.timestamp), rec.coverage or rec.command,
                             "" if rec.coverage else rec.outcome,
                             None if rec.duration is None else round(rec.duration / 1e6, 3),
                             record.host(doc) or None, rec.network,
                             rec.ifname, rec.container_id, record.namespace(doc), record.pod(doc),
                             " ".join(record.addresses(doc)), record.error_message(doc) or _coverage_text(rec),
                             event_id if isinstance(event_id, str) else None])
            return
        if self.table is None:
            self.table = Table(self.out, EVENT_COLUMNS)
        if rec.coverage:  # a line of its own kind: the action for the command, what it says for the addresses
            self.table.row([short(rec.timestamp) or "-", rec.coverage, "-", "-", record.host(doc) or "-",
                            rec.network or "-", rec.ifname or "-",
                            container(rec.container_id, self.full_ids) if rec.container_id else "-",
                            pod_label(record.namespace(doc), record.pod(doc)) or "-",
                            ",".join(record.addresses(doc)) or _coverage_text(rec) or "-"])
            return
        self.table.row([short(rec.timestamp) or "-", rec.command or "-", rec.outcome or "-",
                        milliseconds(rec.duration), record.host(doc) or "-", rec.network or "-", rec.ifname or "-",
                        container(rec.container_id, self.full_ids),
                        pod_label(record.namespace(doc), record.pod(doc)) or "-",
                        ",".join(record.addresses(doc)) or "-"])


def _coverage_text(rec: Record) -> str:
    """What a coverage event (other than an inventory's attachment) says, in its own words: its message."""
    if not rec.coverage:
        return ""
    message = rec.doc.get("message")
    return message if isinstance(message, str) else ""


TIMELINE_FIELDS = ("container_id", "host", "network", "ifname", "namespace", "pod", "time", "epoch", "command",
                   "outcome", "duration_ms", "addresses", "interfaces", "error")


def _interfaces(step_interfaces: Iterable[dict[str, str]]) -> str:
    return " ".join(f"{i.get('name', '?')}={i.get('mac', '?')}" + ("(ctr)" if i.get("sandbox") else "")
                    for i in step_interfaces)


def timeline(out: Out, attachments: Iterable[Attachment], *, fmt: str) -> None:
    """Each attachment: a heading, its steps as a table, then the periods it was attached.

    JSON: one object per attachment (times also as epoch seconds); CSV/TSV: one row per step.
    """
    writer = Delimited(out, fmt, TIMELINE_FIELDS) if fmt in ("csv", "tsv") else None
    for number, attachment in enumerate(attachments):
        if fmt == "json":
            out.json(attachment.to_json())
            continue
        if writer is not None:
            for step in attachment.steps:
                writer.row([attachment.container_id, attachment.host or None, attachment.network, attachment.ifname,
                            attachment.namespace or None, attachment.pod or None, step.timestamp,
                            epoch(step.timestamp), step.command, step.outcome,
                            None if step.duration_ns is None else round(step.duration_ns / 1e6, 3),
                            " ".join(step.cidrs), _interfaces(step.interfaces), step.error or None])
            continue
        if number:
            out.text("")
        pod = pod_label(attachment.namespace, attachment.pod)
        out.text(f"container {attachment.container_id}  network {attachment.network or '-'}  "
                 f"ifname {attachment.ifname or '-'}" + (f"  pod {pod}" if pod else "")
                 + f"  host {attachment.host or '-'}")
        table = Table(out, (("TIME", 24), ("EPOCH", 17), ("COMMAND", 7), ("OUTCOME", 7), ("MS", 7),
                            ("ADDRESSES", 18), ("INTERFACES", 0)), indent="  ")
        for step in attachment.steps:
            note = step.note()
            note = (f"  ({note})" if note else "") + (f"  error: {step.error}" if step.error else "")
            table.row([short(step.timestamp), _epoch_text(step.timestamp), step.command, step.chain_outcome,
                       milliseconds(step.duration_ns), ",".join(step.cidrs) or "-",
                       (_interfaces(step.interfaces) or "-") + note])
        for period in attachment.periods():
            out.text("  " + _period(period))


def _period(period: Period) -> str:
    """One period of a timeline (``timeline.Period``), in the words who-had and leaks use for its interval."""
    attached = short(period.attached) if period.attached else f"<={short(period.seen)} (its ADD is not in the trail)"
    notes = [n for n in period.notes if not n.startswith("start unknown")]
    if period.detached is None:
        text = f"attached {attached}, still attached at the end of the trail"
    elif period.ended_by in ("DEL", "GC"):
        length = f" ({human_duration(to_epoch(period.detached) - to_epoch(period.attached))})" if period.attached \
            else ""
        text = f"attached {attached}, detached {short(period.detached)}" + \
            (" by GC" if period.ended_by == "GC" else "") + length
    else:
        ended = _ENDINGS.get(period.ended_by, f"ended by {period.ended_by} at")
        text = f"attached {attached}, {ended} {short(period.detached)}"
    return text + "".join(f"; {note}" for note in notes)


_ENDINGS = {"superseded": "superseded at", "ADD": "ADDed again without a DEL at",
            "inventory": "no longer listed by an inventory at"}
"""A period whose DEL is missing: how its end is known (the notes say what is not)."""


def _epoch_text(stamp: str) -> str:
    seconds = epoch(stamp)
    return "-" if seconds is None else f"{seconds:.3f}"


def _since(holder: dict[str, Any]) -> str:
    """When a holder got the address: the ADD, or ``<=`` the first evidence when the ADD is not in the trail."""
    return short(holder["from"]) if holder["from"] else f"<={short(holder['seen'])}"


HOLDER_TIMES = ("from", "seen", "until")


def holders(out: Out, found: Iterable[dict[str, Any]], *, fmt: str, full_ids: bool, subnet: bool = False) -> None:
    """``who-had``: one row (or JSON line, or CSV/TSV row) per holder of the address.

    With ``subnet`` (``who-had CIDR``) the table starts with the address and marks holders that
    overlap another holder of the same address (``conflict``, set by the question). ``NOTE`` says what
    the trail cannot vouch for in a row (``POSSIBLY`` first, then each note).
    """
    if fmt != "table":
        write = Records(out, fmt, HOLDER_TIMES)
        for holder in found:
            write(holder)
        return
    columns = (("FROM", 26), ("UNTIL", 24), HOST, ("NETWORK", 18), ("IFNAME", 6), ("CONTAINER", 12),
               ("POD", 24), ("ENDED BY", 10), ("NOTE", 0))
    table = Table(out, ((("ADDRESS", 15), *columns[:-1], ("NOTE", 24), ("CONFLICT", 0)) if subnet else columns))
    for holder in found:
        cells = [_since(holder), short(holder["until"]) if holder["until"] else "(still held)",
                 holder.get("host") or "-", holder["network"] or "-", holder["ifname"] or "-",
                 container(holder["container_id"], full_ids),
                 pod_label(holder["namespace"], holder["pod"]) or "-", holder["ended_by"] or "-",
                 _note(holder, full_ids)]
        if subnet:
            conflicts = holder.get("conflicts_with") or []
            cells = [holder["address"], *cells, ("with " + ",".join(container(c, full_ids) for c in conflicts))
                     if conflicts else "-"]
        table.row(cells)


_LONG_HEX = re.compile(r"(?<![0-9A-Za-z_.-])[0-9a-f]{13,}(?![0-9A-Za-z_.-])")
"""A hex container id in a note's words, to be shown as the CONTAINER column shows it (``container``)."""


def _note(row: dict[str, Any], full_ids: bool = False) -> str:
    """What the trail cannot vouch for in a row: ``possibly`` first (who-had --at), then each note; the container
    ids in it as long as the CONTAINER column has them."""
    notes = list(row.get("notes") or [])
    if row.get("certainty") == "possibly":
        notes.insert(0, "POSSIBLY")
    if not notes:
        return "-"  # most rows: no note to shorten ids in
    text = "; ".join(notes) or "-"
    return text if full_ids else _LONG_HEX.sub(lambda m: container(m.group(0), False), text)


NEVER_DELETED, DEL_WITHOUT_ADD = "never-deleted", "del-without-add"
"""The two kinds of ``leaks``."""
SUPERSEDED, CLEANUP_DEL = "superseded", "cleanup-del"
"""What ``leaks`` lists apart, as not leaks: an attachment whose address another one was given (its DEL
was lost), and a DEL without ADD nor cached result (the clean-up after an ADD that failed)."""
POSSIBLY_DELETED, UNRECORDED_DEL = "possibly-deleted", "unrecorded-del"
"""What ``leaks`` also lists apart, from the trail's coverage events: an attachment still open whose network's chain
the logger was out of after its last evidence (it may have been deleted then, unrecorded), and one a complete
inventory of its host no longer listed (its DEL was not recorded; it ended between its last evidence and the
inventory)."""
FAILED_ATTEMPT, NO_OUTCOME = "failed-attempt", "no-outcome"
"""Bracket mode's kinds of ``leaks``: an attempt whose chain failed, with the DEL that cleaned up after it
(``until``); an attempt with neither outcome nor DEL by the end of the trail."""


def leaks(out: Out, found: Iterable[dict[str, Any]], *, fmt: str, full_ids: bool) -> None:
    """``leaks``: one row (or JSON line, or CSV/TSV row) per attachment never deleted or DEL without ADD
    (and in bracket mode per failed attempt, the CLEANUP column saying when its DEL came)."""
    if fmt != "table":
        write = Records(out, fmt, HOLDER_TIMES)
        for leak in found:
            write(leak)
        return
    table = Table(out, (("KIND", 15), ("STATE", 7), ("SINCE", 26), ("AGE", 8), HOST, ("NETWORK", 18), ("IFNAME", 6),
                        ("CONTAINER", 12), ("POD", 24), ("ADDRESSES", 18), ("NOTE", 0)))
    for leak in found:
        age = leak["age_seconds"]
        orphan = leak["kind"] == DEL_WITHOUT_ADD
        last = ",".join(leak["addresses"]) or "-"
        if leak["kind"] == FAILED_ATTEMPT:
            last = f"cleaned up by DEL {short(leak['until'])}" if leak["until"] else f"ended by {leak['ended_by']}"
        note = _note(leak, full_ids)
        if leak.get("state_reason"):
            note = leak["state_reason"] if note == "-" else f"{note}; {leak['state_reason']}"
        table.row([leak["kind"], leak.get("state") or "-", short(leak["seen"]) if orphan else _since(leak),
                   "-" if age is None else human_duration(age), leak.get("host") or "-", leak["network"] or "-",
                   leak["ifname"] or "-",
                   container(leak["container_id"], full_ids), pod_label(leak["namespace"], leak["pod"]) or "-",
                   last, note])


APART = ((CLEANUP_DEL, "clean-up DEL of a failed ADD", "clean-up DELs of failed ADDs"),
         (SUPERSEDED, "superseded (its DEL lost)", "superseded (their DEL lost)"),
         (POSSIBLY_DELETED, "possibly deleted while the logger was out", "possibly deleted while the logger was out"),
         (UNRECORDED_DEL, "DEL not recorded", "DELs not recorded"),
         (FAILED_ATTEMPT, "failed ADD attempt", "failed ADD attempts"))
"""What ``leaks`` lists apart, by kind, as its heading names them (one, several), after the running ones."""


def apart_heading(rows: Sequence[dict[str, Any]]) -> str:
    """The heading of ``leaks``' second block: ``not leaks, listed apart: 1 still running, 2 clean-up DELs ...``."""
    counts = [(sum(1 for r in rows if r.get("state") == "running"), "still running", "still running")]
    counts += [(sum(1 for r in rows if r["kind"] == kind and r.get("state") != "running"), one, many)
               for kind, one, many in APART]
    return "not leaks, listed apart: " + ", ".join(f"{n} {one if n == 1 else many}" for n, one, many in counts if n)


STATS_FIELDS = ("group", "name", "count", "p50_ms", "p90_ms", "p99_ms", "max_ms", "mean_ms")


def stats(out: Out, report: dict[str, Any], *, fmt: str, percentiles: Sequence[int]) -> None:
    """``stats``: the totals, then counts per command, outcome and network, then latency percentiles.

    CSV/TSV: one row per count (group ``events``, ``command``, ``outcome``, ``network``; the latency
    cells empty) and one per latency summary (group ``latency``).
    """
    if fmt == "json":
        out.json(report)
        return
    if fmt != "table":
        writer = Delimited(out, fmt, ("group", "name", "count", *(f"p{p}_ms" for p in percentiles), "max_ms",
                                      "mean_ms"))
        blank = [None] * (len(percentiles) + 2)
        writer.row(["events", "all", report["events"], *blank])
        for name, count in (report.get("coverage") or {}).get("actions", {}).items():
            writer.row(["coverage", name, count, *blank])
        for group, key in (("command", "commands"), ("outcome", "outcomes"), ("network", "networks")):
            for name, count in report[key].items():
                writer.row([group, name, count, *blank])
        for name, summary in report["latency_ms"].items():
            if summary["count"]:
                writer.row(["latency", name, summary["count"], *(summary[f"p{p}"] for p in percentiles),
                            summary["max"], summary["mean"]])
        for name, count in (report.get("failed") or {}).get("by_command", {}).items():
            writer.row(["failed", name, count, *blank])
        attempts = report.get("attempts")
        if attempts:
            for name in ATTEMPT_COUNTS:
                writer.row(["attempts", name, attempts[name], *blank])
            chain = attempts["chain_latency_ms"]
            if chain["count"]:
                writer.row(["latency", CHAIN, chain["count"], *(chain[f"p{p}"] for p in percentiles), chain["max"],
                            chain["mean"]])
        return
    span = f"  ({short(report['first'])} .. {short(report['last'])})" if report["first"] else ""
    out.text(f"events: {report['events']}{span}")
    coverage = report.get("coverage") or {}
    if coverage.get("events"):
        out.text(f"coverage events: {coverage['events']} ("
                 + ", ".join(f"{k} {v}" for k, v in coverage["actions"].items()) + "; not invocations)")
        for outage in coverage["outages"]:
            out.text(f"  outage: {outage['network']} on {outage['host']} from {short(outage['from'])} to "
                     f"{_opt(outage['until']) if outage['until'] else '(end of trail)'} ({outage['reason']})")
    for title, key in (("command", "commands"), ("outcome", "outcomes"), ("network", "networks")):
        out.text("")
        table = Table(out, ((title.upper(), 24), ("EVENTS", 0)))
        for name, count in report[key].items():
            table.row([name, str(count)])
    out.text("")
    failed = report.get("failed")
    if failed is not None:
        for line in failed_lines(failed):
            out.text(line)
        out.text("")
    attempts = report.get("attempts")
    latency = report["latency_ms"]
    if attempts:
        out.text(attempts_line(attempts))
        out.text("")
        latency = {**latency, CHAIN: attempts["chain_latency_ms"]}
    latency_table(out, latency, percentiles)


ATTEMPT_COUNTS = ("attempts", "succeeded", "failed", "cleaned_up", "no_outcome", "events")
CHAIN = "chain"
"""Bracket mode's latency row: from an attempt's start to its outcome's start (every plugin in between)."""


def failed_lines(failed: dict[str, Any]) -> list[str]:
    """``stats``: the invocations known to have failed, by command, and how each count is known
    (``attempts.failures``): events that say so, ADDs inferred from their clean-up DEL, bracket mode's attempts."""
    by_command = failed["by_command"]
    lines = [f"failed invocations: {failed['total']}"
             + (" (" + ", ".join(f"{k} {v}" for k, v in by_command.items()) + ")" if by_command else "")]
    for command, count in by_command.items():
        how = []
        if failed["recorded"].get(command):
            how.append(f"{failed['recorded'][command]} recorded as failed")
        if command == "ADD" and failed["inferred_adds"]:
            how.append(f"{failed['inferred_adds']} inferred from the runtime's clean-up DEL (no ADD, no cached result)")
        attempts = failed["failed_attempts"].get(command, 0)
        if attempts:
            how.append(f"{attempts} {'attempt' if attempts == 1 else 'attempts'} that failed before the outcome entry")
        lines.append(f"  {command} {count}: " + "; ".join(how))
    return lines


def attempts_line(attempts: dict[str, Any]) -> str:
    """Bracket mode in one line: how many ADDs were attempted and how they ended."""
    checks = attempts.get("checks") or {}
    return (f"ADD attempts (bracket mode): {attempts['attempts']}: succeeded {attempts['succeeded']}, "
            f"failed {attempts['failed']} (cleaned up by a DEL: {attempts['cleaned_up']}), "
            f"no outcome yet {attempts['no_outcome']}"
            + (f"; CHECK attempts: {checks['attempts']}: succeeded {checks['succeeded']}, failed {checks['failed']}"
               if checks.get("attempts") else ""))


def latency_table(out: Out, latency: dict[str, dict[str, Any]], percentiles: Sequence[int], indent: str = "") -> None:
    """Latency percentiles per command, in milliseconds (``stats`` and ``report``)."""
    table = Table(out, (("LATENCY (ms)", 14), ("COUNT", 8), *((f"P{p}", 9) for p in percentiles),
                        ("MAX", 9), ("MEAN", 0)), indent=indent)
    for name, summary in latency.items():
        if summary["count"]:
            table.row([name, str(summary["count"]), *(f"{summary[f'p{p}']:.1f}" for p in percentiles),
                       f"{summary['max']:.1f}", f"{summary['mean']:.1f}"])


def _listed(out: Out, title: str, section: dict[str, Any], columns: Sequence[tuple[str, int]],
            cells: Callable[[dict[str, Any]], list[str]]) -> None:
    """A report section: ``title: N`` (with how many are listed, if not all), then its table."""
    shown = len(section["listed"])
    more = f" (first {shown} listed)" if shown < section["count"] else ""
    out.text("")
    out.text(f"{title}: {section['count']}{more}")
    table = Table(out, columns, indent="  ")
    for item in section["listed"]:
        table.row(cells(item))


def plural_events(count: int) -> str:
    return f"{count} event" if count == 1 else f"{count} events"


def _opt(stamp: str | None) -> str:
    return short(stamp) if stamp else "-"


_ORPHAN_COLUMNS = (("AT", 24), HOST, ("NETWORK", 18), ("IFNAME", 6), ("CONTAINER", 12), ("POD", 0))
"""The report's DELs without ADD and clean-up DELs: one kind of row."""


def _orphan_row(orphan: dict[str, Any]) -> list[str]:
    return [short(orphan["seen"]), orphan.get("host") or "-", orphan["network"] or "-", orphan["ifname"] or "-",
            container(orphan["container_id"], False), pod_label(orphan["namespace"], orphan["pod"]) or "-"]


def _coverage_section(out: Out, coverage: dict[str, Any]) -> None:
    """The report's coverage: outages (with why), events the plugin could not write, inventories, heartbeats."""
    _listed(out, "outages (the logger was out of a chain: nothing there is in the trail)", coverage["outages"],
            (("HOST", 16), ("NETWORK", 18), ("FROM", 24), ("UNTIL", 24), ("WHY", 0)),
            lambda o: [o["host"] or "-", o["network"] or "-", short(o["from"]),
                       _opt(o["until"]) if o["until"] else "(end of trail)",
                       o["reason"] + (f": {o['detail']}" if o["detail"] else "")])
    dropped = coverage["dropped"]
    if dropped["count"]:
        _listed(out, f"events the plugin could not write: {dropped['events']}, in", dropped,
                (("HOST", 16), ("FROM", 24), ("UNTIL", 24), ("EVENTS", 6), ("CONTAINERS", 0)),
                lambda d: [d["host"] or "-", short(d["first"]), short(d["last"]), str(d["dropped"]),
                           "anyone's" if d["containers"] is None else ",".join(d["containers"]) or "-"])
    inventories, heartbeats = coverage["inventories"], coverage["heartbeats"]
    out.text("")
    out.text(f"inventories: {inventories['count']}"
             + (f" ({short(inventories['first'])} .. {short(inventories['last'])})" if inventories["count"] else "")
             + f"; heartbeats: {heartbeats['count']}"
             + (f" ({short(heartbeats['first'])} .. {short(heartbeats['last'])})" if heartbeats["count"] else ""))


FAILED_ADD_HOW = {"attempt-failed": "attempt failed", "cleanup-del": "inferred (clean-up DEL)",
                  "add-failed": "ADD failed"}


def _failed_adds(out: Out, found: dict[str, Any]) -> None:
    """The report's failed ADDs (``report.Report``'s ``failed_adds``), and, when only the inference is available,
    the way to record every attempt."""
    items = found["items"]
    more = f" (first {len(items)} listed)" if len(items) < found["count"] else ""
    out.text("")
    out.text(f"failed ADDs: {found['count']}{more}" + (f"; {found['inferred']} inferred from the runtime's clean-up "
                                                        "DEL (no ADD, no cached result)" if found["inferred"] else ""))
    if not found["bracket"]:
        out.text(f"  note: {HINT}")
    table = Table(out, (("AT", 24), ("HOW", 23), HOST, ("NETWORK", 18), ("IFNAME", 6), ("CONTAINER", 12),
                        ("POD", 24), ("ERROR", 0)), indent="  ")
    for item in items:
        table.row([short(item["time"]), FAILED_ADD_HOW.get(item["how"], item["how"]), item["host"] or "-",
                   item["network"] or "-",
                   item["ifname"] or "-", container(item["container"], False),
                   pod_label(item["namespace"], item["pod"]) or "-", item["error"] or "-"])


def report(out: Out, data: dict[str, Any], *, percentiles: Sequence[int], html: str | None = None) -> None:
    """``report`` for a terminal: the trail, occupancy per network, then the lists and the latency."""
    trail, window = data["trail"], data["window"]
    span = "the whole trail" if not (window["since"] or window["until"]) else \
        f"{_opt(window['since'])} .. {_opt(window['until'])}"
    out.text(f"report for {span}")
    size = sum(f["bytes"] for f in trail["files"]) / 1e6
    out.text(f"trail: {plural(len(trail['files']), 'file')}, {size:.1f} MB on disk; "
             f"events {_opt(trail['first'])} .. {_opt(trail['last'])}")
    for item in trail["files"]:
        out.text(f"  {item['path']}  ({item['bytes']} bytes)")
    hosts = data.get("hosts") or {}
    if hosts:
        out.text("hosts: " + ", ".join(f"{name} ({plural_events(count)})" for name, count in hosts.items()))
    out.text(f"events in the window: {trail['events_in_window']}"
             + (f"  ({_opt(trail['first_in_window'])} .. {_opt(trail['last_in_window'])})"
                if trail["first_in_window"] else ""))
    out.text(f"damaged lines skipped: {trail['skipped_lines']}; duplicate events ignored: "
             f"{trail['duplicates_ignored']}")
    for warning in trail["warnings"]:
        out.text(f"  warning: {warning}")
    _listed(out, "damaged stretches (events may be missing there unless the lines are foreign)", trail["damaged"],
            (("KIND", 10), ("FILE", 24), ("AFTER", 24), ("BEFORE", 24), ("LINES", 5), ("EVENTS MAY BE MISSING", 0)),
            lambda d: [d["kind"], d["file"], _opt(d["after"]), _opt(d["before"]) if d["before"] else "(end of trail)",
                       str(d["lines"]), "no (foreign lines)" if not d["lost_events_possible"] else
                       "anyone's" if d["containers"] is None else ",".join(d["containers"])])
    _listed(out, "gaps (a backup missing from the sequence, or possibly missing)", trail["possible_gaps"],
            (("AFTER", 24), ("BEFORE", 24), ("WHY", 0)),
            lambda g: [_opt(g["after"]), _opt(g["before"]), f"{g['what']} ({g['file']})"])
    quiet = trail["quiet_periods"]
    _listed(out, f"quiet periods (no event for {human_duration(quiet['min_seconds'])} or more; not evidence of "
                 "loss)", quiet, (("FROM", 24), ("UNTIL", 24), ("LENGTH", 0)),
            lambda g: [short(g["from"]), short(g["until"]), human_duration(g["seconds"])])
    out.text("")
    per_host = any("host" in use for use in data["networks"].values())  # several hosts: per network and host
    out.text(f"address occupancy per network{' and host' if per_host else ''} (holdings that overlap the window)")
    table = Table(out, (("NETWORK", 18), *((HOST,) if per_host else ()), ("ADDRESSES", 9), ("HOLDINGS", 8),
                        ("PEAK", 5), ("CONFLICTS", 9), ("STILL HELD", 0)), indent="  ")
    for name, use in data["networks"].items():
        where = [use["network"] or "-", use["host"] or "-"] if per_host else [name or "-"]
        table.row([*where, str(use["addresses"]), str(use["holdings"]), str(use["peak"]), str(use["conflicts"]),
                   str(use["still_held"])])
    if not data["networks"]:
        out.text("  (no address was held)")
    _listed(out, "conflicts (an address held by two attachments at once)", data["conflicts"],
            (("AT", 24), ("ADDRESS", 15), HOST, ("NETWORK", 18), ("CONTAINER", 12), ("POD", 24), ("WHILE HELD BY", 0)),
            lambda c: [short(c["at"]), c["address"], c.get("host") or "-", c["network"] or "-",
                       container(c["container_id"], False),
                       pod_label(c["namespace"], c["pod"]) or "-", container(c["other_container_id"], False)])
    leaks_found = data["leaks"]
    _listed(out, "never deleted (still held at the end of the trail)", leaks_found["never_deleted"],
            (("STATE", 7), ("SINCE", 26), ("ADDRESS", 15), HOST, ("NETWORK", 18), ("IFNAME", 6), ("CONTAINER", 12),
             ("POD", 24), ("NOTE", 0)),
            lambda h: [h.get("state") or "-", _since(h), h["address"], h.get("host") or "-", h["network"] or "-",
                       h["ifname"] or "-",
                       container(h["container_id"], False), pod_label(h["namespace"], h["pod"]) or "-", _note(h)])
    if leaks_found.get("running", {}).get("count"):
        _listed(out, "still running (not leaks: their network namespace and libcni's cached result are there)",
                leaks_found["running"],
                (("SINCE", 26), ("ADDRESS", 15), HOST, ("NETWORK", 18), ("IFNAME", 6), ("CONTAINER", 12),
                 ("POD", 0)),
                lambda h: [_since(h), h["address"], h.get("host") or "-", h["network"] or "-", h["ifname"] or "-",
                           container(h["container_id"], False), pod_label(h["namespace"], h["pod"]) or "-"])
    _listed(out, "DELs without ADD", leaks_found["del_without_add"], _ORPHAN_COLUMNS, _orphan_row)
    _listed(out, "superseded (their DEL was lost; not leaks)", leaks_found["superseded"],
            (("SINCE", 26), ("UNTIL", 24), ("ADDRESS", 15), HOST, ("NETWORK", 18), ("CONTAINER", 12), ("NOTE", 0)),
            lambda h: [_since(h), _opt(h["until"]), h["address"], h.get("host") or "-", h["network"] or "-",
                       container(h["container_id"], False), _note(h)])
    _listed(out, "clean-up DELs (no ADD, no cached result; not leaks)", leaks_found["cleanup_del"], _ORPHAN_COLUMNS,
            _orphan_row)
    for title, key in (("possibly deleted while the logger was out (not leaks for certain)", "possibly_deleted"),
                       ("DEL not recorded (a complete inventory no longer listed them; not leaks)", "unrecorded_del")):
        if leaks_found.get(key, {}).get("count"):
            _listed(out, title, leaks_found[key],
                    (("SINCE", 26), ("UNTIL", 24), ("ADDRESS", 15), HOST, ("NETWORK", 18), ("CONTAINER", 12),
                     ("NOTE", 0)),
                    lambda h: [_since(h), _opt(h["until"]), h["address"], h.get("host") or "-", h["network"] or "-",
                               container(h["container_id"], False), _note(h)])
    coverage = data.get("coverage")
    if coverage and coverage["events"]:
        _coverage_section(out, coverage)
    _listed(out, "invocations recorded as failed", data["failures"],
            (("AT", 24), ("COMMAND", 7), HOST, ("NETWORK", 18), ("CONTAINER", 12), ("POD", 24), ("ERROR", 0)),
            lambda f: [short(f["@timestamp"]), f["command"] or "-", f.get("host") or "-", f["network"] or "-",
                       container(f["container_id"], False), pod_label(f["namespace"], f["pod"]) or "-",
                       f["error"] or "-"])
    failed_adds = data.get("failed_adds")
    if failed_adds is not None:
        _failed_adds(out, failed_adds)
    attempts = data.get("attempts")
    if attempts:
        out.text("")
        out.text(attempts_line(attempts))
        _listed(out, "failed ADD attempts", attempts["failed_attempts"],
                (("ATTEMPT AT", 24), HOST, ("NETWORK", 18), ("IFNAME", 6), ("CONTAINER", 12), ("POD", 24),
                 ("ENDED BY", 0)),
                lambda f: [short(f["from"]), f.get("host") or "-", f["network"] or "-", f["ifname"] or "-",
                           container(f["container_id"], False), pod_label(f["namespace"], f["pod"]) or "-",
                           f"DEL {short(f['until'])}" if f["until"] else f["ended_by"]])
    stats_found = data["stats"]
    out.text("")
    out.text("events per command: " + (", ".join(f"{k} {v}" for k, v in stats_found["commands"].items()) or "none")
             + "; per outcome: " + (", ".join(f"{k} {v}" for k, v in stats_found["outcomes"].items()) or "none"))
    latency = stats_found["latency_ms"]
    if attempts:
        latency = {**latency, CHAIN: attempts["chain_latency_ms"]}
    latency_table(out, latency, percentiles, indent="  ")
    if html:
        picture = data["picture"]
        out.text("")
        out.text(f"HTML report written to {html}: {plural(picture['bars'], 'holding')} drawn on "
                 f"{plural(picture['rows'], 'address row')}"
                 + (f"; {plural(picture['bars_not_drawn'], 'holding')} and "
                    f"{plural(picture['rows_not_drawn'], 'address', 'addresses')} not drawn"
                    if picture["bars_not_drawn"] or picture["rows_not_drawn"] else ""))


def report_counts(out: Out, data: dict[str, Any], *, fmt: str) -> None:
    """``report --format csv|tsv``: the report's counts, one row per section and count (``section,name,count``),
    for a spreadsheet or a monitoring script; the lists themselves are in ``--json`` and the other commands."""
    trail = data["trail"]
    rows: list[tuple[str, str, int]] = [
        ("trail", "files", len(trail["files"])), ("trail", "bytes", sum(f["bytes"] for f in trail["files"])),
        ("trail", "events_in_window", trail["events_in_window"]), ("trail", "skipped_lines", trail["skipped_lines"]),
        ("trail", "duplicates_ignored", trail["duplicates_ignored"]),
        ("trail", "damaged", trail["damaged"]["count"]), ("trail", "possible_gaps", trail["possible_gaps"]["count"]),
        ("trail", "quiet_periods", trail["quiet_periods"]["count"])]
    for name, use in data["networks"].items():
        rows += [(f"network {name}", key, use[key]) for key in ("addresses", "holdings", "peak", "conflicts",
                                                               "still_held")]
    rows.append(("conflicts", "conflicts", data["conflicts"]["count"]))
    rows += [("leaks", key, section["count"]) for key, section in data["leaks"].items()]
    failed = data.get("failed_adds")
    if failed:
        rows += [("failed_adds", "count", failed["count"]), ("failed_adds", "inferred", failed["inferred"])]
    rows.append(("failures", "failed_invocations", data["failures"]["count"]))
    coverage = data.get("coverage") or {}
    if coverage:
        rows += [("coverage", "outages", coverage["outages"]["count"]),
                 ("coverage", "events_not_written", coverage["dropped"]["events"])]
    attempts = data.get("attempts")
    if attempts:
        rows += [("attempts", name, attempts[name]) for name in ATTEMPT_COUNTS]
    stats_found = data["stats"]
    rows += [("command", name, count) for name, count in stats_found["commands"].items()]
    rows += [("outcome", name, count) for name, count in stats_found["outcomes"].items()]
    writer = Delimited(out, fmt, ("section", "name", "count"))
    for row in rows:
        writer.row(list(row))
