"""Exports of the shipped events, read back as the node's own trail: every command answers from them alike.

Cluster-wide questions are asked where the logs are shipped. What comes back from there is the plugin's
events in another wrapping, and this module unwraps it, line by line, whatever the mix:

* NDJSON of Elasticsearch ``_source`` documents (the ingest pipeline in ``deploy/elasticsearch`` adds
  ``event.ingested`` and ``data_stream.*``, a shipper ``agent``, ``input``, ``log.file``, ``@metadata``...;
  and a pipeline re-serialises the document, so its keys come back in any order);
* Elasticsearch hits (``{"_index":..,"_source":{..}}``) and search responses (``{"hits":{"hits":[..]}}``),
  one per line, or one whole (pretty-printed) response as the whole input;
* a log shipper's file output: the plugin's line as a string under ``message`` (or ``log``), the event's
  fields decoded at the root with the shipper's own beside them, or Fluent Bit's ``TAG: [TIME, {record}]``
  (its parser drops ``@timestamp`` from the record: ``TIME`` is the event's time then);
* ``kubectl logs`` output: lines possibly prefixed by an RFC 3339 time (``--timestamps``) and
  ``[pod/NAME/CONTAINER]`` (``--prefix``); the plugin's own lines pass through unchanged.

Each event is written back as the plugin writes it (``plugin_line``): the plugin's keys in the plugin's order
(``cni_logger.events``: top level per its ``_TOP_LEVEL_ORDER``, the objects it lays out with their keys in
the order its processors add them), what shippers and pipelines added dropped, compact UTF-8 JSON. The
reader's fast paths (``record.head_from_line``, ``record.sliced_placed``, the prefilters) rely on that
order, so an export gives the answers its node files give. What the plugin masked stays masked (values are
not touched; a pipeline's own masking stays too). A document that is not a plugin event (no ``event``
object with the plugin's ``event.dataset``) or a line that is not JSON is kept as it came, where it came, for
the reader to skip and count as it does in a node file.

The events are spooled into one temporary file per host, sorted by time (stable: equal times keep the
export's order), which the reader then reads and merges like node trails (``sources.resolve``). Sorting is an
external merge sort, bounded in memory: up to ``CHUNK_BYTES`` of lines are held, and each time that fills, every
host's lines are sorted and written out as a *run* (a temporary file); at the end the runs of each host are
merged (``heapq.merge``, at most ``MERGE_WIDTH`` files open at once) into its trail. An export smaller than one
chunk is sorted in memory, as before, and both paths write the same bytes. Why not a bounded window (sorting
only the last N lines)? Nothing bounds how far an export's order is from time order: a search's hits come in
shard and index order, a scroll of several indices or nodes interleaves whole stretches, a shipper's file
output follows its own flushes; a window would mis-order silently, and the trackers read in time order. A node
file is never sorted, so never held. Detection is by content (``exported``), never by file name: a file whose
first recognisable line is the plugin's own is a node trail.
"""

from __future__ import annotations

import io
import json
import os
import re
from collections.abc import Callable, Iterator
from typing import IO, Any

from cni_logger.audit.record import COVERAGE_DATASET, is_canonical_line
from cni_logger.audit.timeparse import from_epoch, normalize

AUDIT_DATASET = "cni.audit"
TOP_LEVEL = ("@timestamp", "message", "log", "ecs", "event", "error", "container", "orchestrator", "network", "host",
             "process", "trace", "related", "cni")
"""``cni_logger.events._TOP_LEVEL_ORDER``: the keys the plugin writes at the top level, in its order."""
_LAID_OUT: dict[str, tuple[str, ...]] = {
    "log": ("level", "logger"),
    "ecs": ("version",),
    "event": ("kind", "category", "type", "action", "outcome", "duration", "id", "module", "dataset", "code",
              "reason"),
    "error": ("code", "message", "type"),
    "container": ("id",),
    "network": ("name",),
    "host": ("name", "hostname"),
    "process": ("pid", "parent"),
    "trace": ("id",),
    "related": ("ip",),
}
"""The objects the plugin lays out itself, with every key it writes in them, in its order: anything else in them
was added on the way (``event.ingested``, ``log.file``, ``host.os``...) and is dropped."""
_RESOURCE = ("type", "name", "id", "ip")
_ORCHESTRATOR = ("type", "namespace", "resource")
_CNI_FIRST = ("command", "container_id", "netns", "ifname", "role", "path", "args", "version", "plugin_type", "config",
              "prev_result", "valid_attachments", "warnings")
"""``cni``'s keys in the order ``events.add_cni_fields`` writes them; others (``truncated``, ``coverage``, a
coverage event's own) follow in the order they came."""
_RESULT = ("cni_version", "interfaces", "ips", "routes", "dns")
"""``cni.prev_result`` as ``events.summarize_result`` writes it; its items in the order of the fields of libcni's
result types (Go marshals struct fields in declaration order): what the runtime's cached result holds."""
_RESULT_ITEMS: dict[str, tuple[str, ...]] = {
    "interfaces": ("name", "mac", "mtu", "sandbox", "socketPath", "pciID"),
    "ips": ("interface", "address", "gateway"),
    "routes": ("dst", "gw", "mtu", "advmss", "priority", "table", "scope"),
}
_DNS = ("nameservers", "domain", "search", "options")
_ATTACHMENT = ("containerID", "ifname")
_KUBECTL_TIME = re.compile(rb"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:\d\d)) ")
_KUBECTL_PREFIX = re.compile(rb"^\[[^\]\s]+/[^\]\s]+(?:/[^\]\s]+)?\] ")
_FLUENT_BIT = re.compile(rb"^[A-Za-z0-9_.\-]+: \[")
PEEK = 1 << 16
"""Bytes of a named file looked at to tell an export from a node trail."""
CHUNK_BYTES = 64 << 20
"""Lines of an export held in memory at once (their length, plus ``LINE_OVERHEAD`` each), before they are sorted and
written out as runs (``Spool``)."""
LINE_OVERHEAD = 100
"""What holding one line costs beyond its bytes (the tuple, the time string, the count), roughly, in bytes."""
MERGE_WIDTH = 64
"""Runs merged at once (files open at once); more are merged in rounds."""


def _ordered(value: Any, order: tuple[str, ...], *, keep_rest: bool) -> Any:
    if not isinstance(value, dict):
        return value
    out = {k: value[k] for k in order if k in value}
    if keep_rest:
        out.update((k, v) for k, v in value.items() if k not in out)
    return out


def plugin_event(doc: Any) -> bool:
    """Is this decoded document one of the plugin's events (an invocation's or a coverage event)? Its
    ``event.dataset`` says so (or, without one, ``event.module`` ``cni`` and a ``cni`` object)."""
    if not isinstance(doc, dict):
        return False
    event = doc.get("event")
    if not isinstance(event, dict):
        return False
    dataset = event.get("dataset")
    if dataset is None:
        return event.get("module") == "cni" and isinstance(doc.get("cni"), dict)
    return dataset in (AUDIT_DATASET, COVERAGE_DATASET)


def plugin_line(doc: dict[str, Any]) -> bytes:
    """The event as the plugin writes it: its keys in its order, what was added on the way dropped."""
    out: dict[str, Any] = {}
    for key in TOP_LEVEL:
        if key not in doc:
            continue
        value = doc[key]
        if key == "@timestamp" and isinstance(value, str):
            value = normalize(value) or value
        elif key in _LAID_OUT:
            value = _ordered(value, _LAID_OUT[key], keep_rest=False)
        elif key == "orchestrator" and isinstance(value, dict):
            value = _ordered(value, _ORCHESTRATOR, keep_rest=True)
            if "resource" in value:
                value["resource"] = _ordered(value["resource"], _RESOURCE, keep_rest=True)
        elif key == "cni":
            value = _cni(value)
        out[key] = value
    return json.dumps(out, ensure_ascii=False, separators=(",", ":")).replace("\n", "\\n").encode("utf-8",
                                                                                                  "surrogateescape")


def _cni(value: Any) -> Any:
    """``cni`` in the plugin's order, with the runtime's cached result and GC list in libcni's."""
    cni = _ordered(value, _CNI_FIRST, keep_rest=True)
    if not isinstance(cni, dict):
        return cni
    result = cni.get("prev_result")
    if isinstance(result, dict):
        result = _ordered(result, _RESULT, keep_rest=True)
        for key, order in _RESULT_ITEMS.items():
            if isinstance(result.get(key), list):
                result[key] = [_ordered(item, order, keep_rest=True) for item in result[key]]
        if "dns" in result:
            result["dns"] = _ordered(result["dns"], _DNS, keep_rest=True)
        cni["prev_result"] = result
    if isinstance(cni.get("valid_attachments"), list):
        cni["valid_attachments"] = [_ordered(item, _ATTACHMENT, keep_rest=True) for item in cni["valid_attachments"]]
    return cni


def _json(data: bytes) -> Any:
    try:
        return json.loads(data)
    except (ValueError, RecursionError):
        return None


def unwrap(value: Any, stamp: str = "") -> Iterator[Any]:
    """The documents a decoded export item holds: plugin events (dicts), or what cannot be one, as it came.

    ``stamp``: the time the wrapping gives (Fluent Bit's, kubectl's), for an event whose own was dropped."""
    if isinstance(value, list):
        for item in value:
            yield from unwrap(item, stamp)
        return
    if not isinstance(value, dict):
        yield value
        return
    if plugin_event(value):
        if stamp and not isinstance(value.get("@timestamp"), str):
            value = {"@timestamp": stamp, **value}
        yield value
        return
    hits = value.get("hits")
    if isinstance(hits, dict) and isinstance(hits.get("hits"), list):
        yield from unwrap(hits["hits"], stamp)
        return
    if isinstance(value.get("_source"), dict):
        yield from unwrap(value["_source"], stamp)
        return
    for key in ("message", "log"):
        text = value.get(key)
        if isinstance(text, str) and text.lstrip().startswith("{"):
            inner = _json(text.encode("utf-8", "surrogateescape"))
            if inner is not None:
                yield from unwrap(inner, stamp or _date(value))
                return
            yield text.encode("utf-8", "surrogateescape")  # the plugin's line, cut short: damage, as in its file
            return
    yield value


def _date(record: dict[str, Any]) -> str:
    """A shipper's own time of a record (Fluent Bit's ``date``, epoch seconds), canonical, or ""."""
    date = record.get("date")
    if isinstance(date, (int, float)) and not isinstance(date, bool):
        try:
            return from_epoch(float(date))
        except (ValueError, OverflowError, OSError):
            return ""
    return ""


def unwrap_line(line: bytes) -> Iterator[Any]:
    """One line of an export: its documents (``unwrap``), the plugin's own line as bytes, or the line as it came."""
    stamp = ""
    found = _KUBECTL_TIME.match(line)
    if found:
        stamp = normalize(found[1].decode("ascii")) or ""
        line = line[found.end():]
    found = _KUBECTL_PREFIX.match(line)
    if found:
        line = line[found.end():]
    if _own(line):
        yield line
        return
    if _FLUENT_BIT.match(line):
        record = _json(line[line.index(b": [") + 2:])
        if isinstance(record, list) and len(record) == 2 and isinstance(record[1], dict):
            moment = record[0]
            when = from_epoch(float(moment)) if isinstance(moment, (int, float)) and not isinstance(moment, bool) \
                else stamp
            yield from unwrap(record[1], when)
            return
    decoded = _json(line) if line.lstrip()[:1] in (b"{", b"[") else None
    if decoded is None:
        yield line
        return
    yield from unwrap(decoded, stamp)


def _own(line: bytes) -> bool:
    """A line of the plugin's own, as it wrote it (its shape, and its dataset)."""
    return is_canonical_line(line) and (_AUDIT_MARK in line or _COVERAGE_MARK in line)


_AUDIT_MARK = b'"dataset":"cni.audit"'
_COVERAGE_MARK = b'"dataset":"cni.coverage"'


def _recognised(line: bytes) -> bool | None:
    """What a line says about its file: ``False`` the plugin's own (a node trail), ``True`` an export, ``None``
    nothing (blank, damaged, foreign)."""
    if _own(line):
        return False
    if _KUBECTL_TIME.match(line) or _KUBECTL_PREFIX.match(line) or _FLUENT_BIT.match(line):
        return True
    decoded = _json(line)
    if isinstance(decoded, (dict, list)):
        return any(isinstance(d, dict) and plugin_event(d) for d in unwrap(decoded)) or None
    return None


def exported(path: str) -> bool:
    """Does the file hold an export rather than a node trail? Told by its content: the first line that says
    anything; else a whole pretty-printed document (its first line is the start of one, not JSON by itself).
    Anything else stays a node trail, read as before (another writer's spacing, damage, foreign lines)."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(PEEK)
    except OSError:
        return False  # the reader meets the error again, and says so
    if head.startswith(b"\x1f\x8b"):
        return False  # the plugin's compressed backups (an export is read uncompressed)
    lines = head.split(b"\n")
    for line in lines[:-1] if len(lines) > 1 else lines:
        said = _recognised(line.rstrip(b"\r"))
        if said is not None:
            return said
    first = next((line.strip() for line in lines if line.strip()), b"")
    return first[:1] in (b"{", b"[") and _json(first) is None and len(lines) > 2


Item = tuple[str, int, bytes]
"""(time, position in the export, line): the sort key and what is written."""


class Spool:
    """The events of exports, one group per host, written out sorted by time as temporary trails (in memory up to
    ``chunk_bytes``, then as runs on disk merged at the end: the module docstring)."""

    def __init__(self, chunk_bytes: int | None = None, merge_width: int | None = None) -> None:
        self.groups: dict[str, list[Item]] = {}
        self._count = 0
        self._last: tuple[str, str] = ("", "")
        """The host and time of the last event: a line that is not one stays right after it."""
        self.directory = ""
        self.chunk_bytes = max(CHUNK_BYTES if chunk_bytes is None else chunk_bytes, 1)
        self.merge_width = max(MERGE_WIDTH if merge_width is None else merge_width, 2)
        self.held = 0
        """What the lines in ``groups`` cost in memory, roughly (``LINE_OVERHEAD``)."""
        self.runs: dict[str, list[str]] = {}
        """Each host's runs on disk, each sorted, in the order written (their lines' positions increase)."""
        self.spilled = 0
        """Runs written in all (whether the disk path ran)."""

    def add(self, item: Any) -> None:
        if isinstance(item, bytes):
            line, host, stamp = item, "", ""
            if _own(item):
                doc = _json(item)
                host, stamp = _host(doc), item[15:42].decode("ascii", "replace")
            else:
                host, stamp = self._last
        elif isinstance(item, dict) and plugin_event(item):
            line = plugin_line(item)
            host = _host(item)
            stamp = line[15:42].decode("ascii", "replace") if line.startswith(b'{"@timestamp":"') else self._last[1]
        else:  # not the plugin's: under a key of its own, so that the reader skips and counts it as foreign JSON
            line = json.dumps({"not_a_plugin_event": item}, ensure_ascii=False, separators=(",", ":")).encode(
                "utf-8", "surrogateescape")
            host, stamp = self._last
        if not line.strip():
            return
        self._last = (host, stamp)
        self._count += 1
        self.groups.setdefault(host, []).append((stamp, self._count, line))
        self.held += len(line) + LINE_OVERHEAD
        if self.held >= self.chunk_bytes:
            self._spill()

    def _private(self) -> str:
        """The private temporary directory of the trails and runs (made once, removed at exit)."""
        if not self.directory:
            import atexit
            import shutil
            import tempfile

            self.directory = tempfile.mkdtemp(prefix="cni-logger-export-")
            atexit.register(shutil.rmtree, self.directory, True)
        return self.directory

    def _spill(self) -> None:
        """Every host's lines held, sorted, each written out as a run; memory held back to nothing."""
        for host, items in self.groups.items():
            items.sort(key=lambda item: (item[0], item[1]))
            self.runs.setdefault(host, []).append(self._run(items))
        self.groups, self.held = {}, 0

    def _run(self, items: Iterator[Item] | list[Item]) -> str:
        """A run file of sorted items, each a header line ``TIME_BYTES POSITION LINE_BYTES`` then the time and the
        line, as they are: any time and any line (even one holding a newline, as a message cut short may) read back
        exactly."""
        self.spilled += 1
        path = os.path.join(self._private(), f"run-{self.spilled}")
        with open(path, "wb") as out:
            for stamp, count, line in items:
                raw = stamp.encode("utf-8", "surrogateescape")
                out.write(b"%d %d %d\n" % (len(raw), count, len(line)) + raw + line)
        return path

    @staticmethod
    def _items(path: str) -> Iterator[Item]:
        """A run read back, item by item (then removed: each run is read once)."""
        with open(path, "rb") as handle:
            for header in iter(handle.readline, b""):
                size, count, length = (int(n) for n in header.split())
                data = handle.read(size + length)
                yield data[:size].decode("utf-8", "surrogateescape"), count, data[size:]
        os.unlink(path)

    def _merged(self, runs: list[str]) -> Iterator[Item]:
        """The runs of one host as one sorted stream, merging ``merge_width`` at a time (rounds of runs first)."""
        import heapq

        def key(item: Item) -> tuple[str, int]:
            return item[0], item[1]

        while len(runs) > self.merge_width:
            batch, runs = runs[:self.merge_width], runs[self.merge_width:]
            runs.append(self._run(heapq.merge(*(self._items(r) for r in batch), key=key)))
        return heapq.merge(*(self._items(r) for r in runs), key=key)

    def read(self, stream: IO[bytes]) -> None:
        """Every item of one export."""
        magic = stream.peek(2)[:2] if isinstance(stream, io.BufferedReader) else b""
        if magic == b"\x1f\x8b":
            import gzip

            stream = gzip.GzipFile(fileobj=stream)  # type: ignore[assignment]
        pending: list[bytes] = []
        first = True
        for raw in stream:
            line = raw.rstrip(b"\r\n")
            if first and line.strip():
                first = False
                if line.lstrip()[:1] in (b"{", b"[") and _json(line) is None:
                    pending.append(raw)  # the start of a whole (pretty-printed) document: decoded at the end
                    continue
            if pending:
                pending.append(raw)
                continue
            if line.strip():
                for item in unwrap_line(line):
                    self.add(item)
        if pending:
            whole = _json(b"".join(pending))
            for item in unwrap(whole) if whole is not None else (p.rstrip(b"\r\n") for p in pending):
                self.add(item)

    def write(self, label: str) -> list[str]:
        """The groups as files (``<label>.<host>.log``) in a private temporary directory, removed at exit: sorted in
        memory, or, once runs were written, the rest written as runs too and each host's runs merged."""
        directory = self._private()
        if self.runs and self.groups:
            self._spill()
        paths = []
        if not self.groups and not self.runs:
            self.groups[""] = []  # an empty export is an empty trail: "the trail has no events", not silence
        for host in sorted({*self.groups, *self.runs}):
            items: Iterator[Item] | list[Item]
            if host in self.runs:
                items = self._merged(self.runs[host])
            else:
                items = self.groups[host]
                items.sort(key=lambda item: (item[0], item[1]))
            name = re.sub(r"[^A-Za-z0-9_.\-]", "_", f"{label}.{host}" if host else label)
            path = os.path.join(directory, f"{name}.log")
            number = 1
            while os.path.exists(path):
                number += 1
                path = os.path.join(directory, f"{name}-{number}.log")
            with open(path, "wb") as out:
                for _, _, line in items:
                    out.write(line + b"\n")
            paths.append(path)
        self.groups, self.runs, self.held, self._count, self._last = {}, {}, 0, 0, ("", "")
        return paths


def _host(doc: Any) -> str:
    host = doc.get("host") if isinstance(doc, dict) else None
    name = host.get("name") if isinstance(host, dict) else None
    return name if isinstance(name, str) else ""


def spool(path: str, spooler: Spool, warn: Callable[[str], None]) -> list[str]:
    """An export (a file, or ``-`` for stdin) as temporary trails, one per host; their paths."""
    import gzip
    import sys

    label = "stdin" if path == "-" else os.path.basename(path)
    try:
        if path == "-":
            spooler.read(sys.stdin.buffer)
        else:
            with open(path, "rb") as handle:
                spooler.read(handle)
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        warn(f"{path}: {getattr(exc, 'strerror', None) or exc}; read up to there")
    return spooler.write(label)
