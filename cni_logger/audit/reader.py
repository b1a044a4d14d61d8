"""Event records from one or more trails, oldest first, in constant memory.

Lines are split from large binary pieces (see ``sources``); nothing but the current piece, one
partial line and whatever a question keeps is ever held. Several trails are merged by timestamp
(``heapq.merge``: one pending line per trail), which also orders logrotate-style files that are
given by glob. Within a trail lines stay in file order: concurrent writers append in completion
order, so neighbouring timestamps may be a few milliseconds out of order, never more.

Every line is classified, and what is not an event is *skipped and counted*, never fatal:

* a line of the plugin's canonical shape (``record.is_canonical_line``) may be passed over unread
  when the question's prefilter says it cannot matter; otherwise its fields are sliced or it is
  decoded;
* any other line (not JSON, JSON that is not an object with an ``event`` object, a cut-short write
  with or without the next event glued on, a last line without its newline) is decoded in full and
  counted as skipped unless it turns out to be an event after all (another writer's spacing, say);
* blank lines are ignored; a line longer than ``lines.MAX_LINE`` is dropped (and counted) without
  holding it.

Every skipped line, unreadable rest of a file, empty backup and possible gap between files is also
noted where it was (file, line numbers, the good events around it) in ``Scan.evidence``
(``cni_logger.audit.evidence``), so that answers can say what they could not see.

Coverage events (``docs/coverage-events.md``: the logger left or entered a chain, events it could not
write, inventories of the node's attachments) are events of their own kind (``Record.coverage``), yielded
like any other and noted in ``Scan.evidence.coverage`` as they pass (``coverage``). No slicing pattern
matches them (they have no ``cni.command``), so they are decoded; a prefilter that rejects a line lets it
through all the same when its message is not an invocation's (``record.may_be_coverage``: one comparison at a
fixed offset, made only for the lines the prefilter rejects), so that every question knows the trail's
coverage, whatever else it passes over.

Duplicates (the same ``event.id`` twice: a trail and a copy of it given together, or the plugin's own
second write after its file was rotated away under it) are yielded once and counted. Memory stays
bounded: the ids of the last ``DEDUPE_WINDOW`` / 2 events at least (and ``DEDUPE_WINDOW`` at most) are
remembered, in two generations, and that is enough
because duplicates arrive close together: copies merged by time are adjacent (equal timestamps sort
together), and the plugin's re-write follows its original within one invocation's stall. A duplicate
further apart than that is counted twice (``stats`` would over-count it), which no known writer causes.
"""

from __future__ import annotations

import heapq
import json
from collections.abc import Callable, Generator, Iterator

from cni_logger.audit import evidence, sources
from cni_logger.audit.evidence import Evidence, Stretch
from cni_logger.audit.lines import MAX_LINE, LineSplitter
from cni_logger.audit.output import Progress
from cni_logger.audit.record import (
    EVENT_START,
    MESSAGE_AT,
    PLUGIN_MESSAGE,
    Record,
    head_from_doc,
    head_from_line,
    is_canonical_line,
    may_be_coverage,
)
from cni_logger.audit.timeparse import is_canonical

Prefilter = Callable[[bytes], bool]
DEDUPE_WINDOW = 1 << 16
"""Event ids remembered to drop duplicates (~100 bytes each: about 7 MiB at most)."""


def _stamp(line: bytes) -> str:
    """The timestamp a line of the plugin's starts with, or ""."""
    if line.startswith(EVENT_START) and line[42:43] == b'"':
        stamp = line[15:42].decode("ascii", "replace")
        if is_canonical(stamp):  # rotten bytes (a damaged .gz inflates into anything) are no time
            return stamp
    return ""


class _Cursor:
    """Where one trail's reading is: file, line number, the lines of the current piece, open damage."""

    __slots__ = ("base", "chunk_before", "evidence", "lineno", "parts", "path", "pending", "skipped_at")

    def __init__(self, found: Evidence) -> None:
        self.evidence = found
        self.path = ""
        self.lineno = 0
        self.base = 0
        """Line number of ``parts[0]`` minus one."""
        self.parts: list[bytes] = []
        self.chunk_before = ""
        """The last stamped line's time before the current piece (this file or the trail's earlier ones)."""
        self.pending: list[Stretch] = []
        """Stretches no good event has followed yet: more damage extends the last, a good event ends them."""
        self.skipped_at = -1

    def good_before(self) -> str:
        """The time of the last stamped line before the current one (the good event before the damage)."""
        index = self.lineno - self.base - 2
        while index >= 0:
            stamp = _stamp(self.parts[index])
            if stamp:
                return stamp
            index -= 1
        return self.chunk_before

    def skip(self, line: bytes, parsed: bool, what: str) -> None:
        self.skipped_at = self.lineno
        stretch = self.pending[-1] if self.pending else None
        if stretch is None or stretch.kind != "damaged" or stretch.path != self.path:
            stretch = self.evidence.add(Stretch("damaged", self.path, self.lineno, self.lineno, self.good_before(),
                                                None, what=what))
            self.pending.append(stretch)
        elif what not in stretch.what:
            stretch.what += f"; {what}"
        stretch.add_line(line, self.lineno, parsed)

    def settle(self, stamp: str) -> None:
        for stretch in self.pending:
            stretch.before = stamp
        self.pending = []


class Scan:
    """One pass over the trails: yields records and counts what it skipped."""

    def __init__(self, trails: list[sources.Trail], *, progress: Progress | None = None,
                 warn: Callable[[str], None] | None = None) -> None:
        self.trails = trails
        self.progress = progress
        self.skipped = 0
        self.data_bytes = 0
        self.files_read = 0
        self.lines_read = 0
        """Files opened and lines read (of every kind): what an empty answer searched."""
        self.warnings: list[str] = []
        self._warn_sink = warn
        self.evidence = Evidence()
        self._cursors = [_Cursor(self.evidence) for _ in trails] or [_Cursor(self.evidence)]
        self._current = self._cursors[0]
        """The cursor of the trail whose line is being classified."""
        self._ids: set[str] = set()
        self._older_ids: set[str] = set()
        """The ids remembered: this generation's, and the one before (``DEDUPE_WINDOW`` / 2 each). A full generation
        replaces the older one whole: a set lookup and an add per event, where evicting the oldest id one at a time
        (a ring beside the set) cost as much again."""
        self.duplicates = 0

    def warn(self, message: str) -> None:
        if self.progress is not None:
            self.progress.clear()
        self.warnings.append(message)
        if self._warn_sink is not None:
            self._warn_sink(message)

    def count_skipped(self) -> None:
        """One more line that is not an event."""
        self.skipped += 1

    def _skip(self, line: bytes, parsed: bool = False) -> None:
        self.skipped += 1
        if self._current.path:
            what = ("complete JSON, not an event" if parsed else
                    "a cut-short or damaged event" if evidence._may_be_event(line) else "not JSON")
            self._current.skip(line, parsed, what)

    def duplicate(self, rec: Record) -> bool:
        """Has an event with this ``event.id`` been yielded already (within the window)?"""
        event_id = rec.event_id
        if not event_id:
            return False
        ids = self._ids
        if event_id in ids or event_id in self._older_ids:
            self.duplicates += 1
            self.evidence.duplicates += 1
            return True
        ids.add(event_id)
        if len(ids) >= DEDUPE_WINDOW // 2:
            self._older_ids, self._ids = ids, set()
        return False

    def _advance(self, nbytes: int) -> None:
        if self.progress is not None:
            self.progress.advance(nbytes)

    # -- lines ------------------------------------------------------------------------------------

    def lines(self) -> Iterator[bytes]:
        """Every line of every trail (without its newline), oldest first."""
        if len(self.trails) == 1:
            return self._trail_lines(self.trails[0], self._cursors[0])  # not a ``yield from``: one level less per line
        return self._merged_lines()

    def _merged_lines(self) -> Iterator[bytes]:
        cursors = self._cursors
        for _, line, index in heapq.merge(*(_keyed(self._trail_lines(trail, cursor), n)
                                            for n, (trail, cursor) in enumerate(zip(self.trails, cursors,
                                                                                    strict=True)))):
            self._current = cursors[index]
            yield line

    def _trail_lines(self, trail: sources.Trail, cursor: _Cursor) -> Iterator[bytes]:
        """The trail's lines, numbering them and ending open damage at the next good line.

        The files' pieces come whole from ``_trail_pieces``, and their lines are yielded here, in one generator:
        each level of generators a line passes through costs a resumption per line, and this loop runs once per
        line of the trail.
        """
        for parts in self._trail_pieces(trail, cursor):
            number = cursor.base
            for line in parts:
                number += 1
                cursor.lineno = number
                yield line
                if cursor.pending and cursor.skipped_at != number:
                    stamp = _stamp(line)
                    if stamp:
                        cursor.settle(stamp)

    def _trail_pieces(self, trail: sources.Trail, cursor: _Cursor) -> Iterator[list[bytes]]:
        """The lines of the trail's files, a piece at a time (``cursor.base`` numbers each piece's first line)."""
        previous: tuple[str, tuple[str, str, int]] | None = None
        numbered = 0  # the sequence number of the last backup read (0: none yet, or not numbered)
        missing: tuple[int, int] | None = None  # numbers absent since the last file with events: first, last
        for handle in sources.trail_files(trail, self.warn):
            number = sources.sequence_number(handle.path)
            if number and numbered and number > numbered + 1:
                missing = (missing[0] if missing else numbered + 1, number - 1)
            numbered = number
            try:
                span = yield from self._file_pieces(handle, cursor, backup=handle.path != trail.live)
            finally:
                handle.close()
            if span is None:
                continue
            if previous is not None:
                found = evidence.gap(previous[0], handle.path, previous[1], span, missing)
                if found is not None:
                    self.evidence.add(found)
            previous, missing = (handle.path, span), None
        cursor.pending = []  # what is still open reaches the end of the trail (``before`` stays None)

    def _file_pieces(self, handle: sources.OpenFile, cursor: _Cursor, *,
                     backup: bool) -> Generator[list[bytes], None, tuple[str, str, int] | None]:
        """The file's lines, a piece at a time, each read whole before the next is asked for; returns (first, last,
        lines) of its events, or ``None`` without any."""
        dropped = 0

        def on_drop() -> None:
            nonlocal dropped
            dropped += 1
            self.count_skipped()

        splitter = LineSplitter(on_drop)
        progress = self.progress
        cursor.path, cursor.lineno, cursor.base, cursor.parts, cursor.skipped_at = handle.path, 0, 0, [], -1
        first = last = ""
        count = size = 0
        before_file = cursor.chunk_before
        rotated = evidence.RotationSize() if backup and sources.sequence_number(handle.path) else None
        tail = b""
        """The file's last line so far: a backup's last event is the one whose append rotated it (``RotationSize``)."""
        unreadable = False

        def advance(parts: list[bytes]) -> None:
            cursor.chunk_before = _last_stamp(cursor.parts) or cursor.chunk_before
            cursor.base += len(cursor.parts)
            cursor.parts = parts

        def warn(message: str) -> None:
            nonlocal unreadable
            self.warn(message)
            if "ignored" in message:  # data after the end of a compressed stream: no event lost
                return
            unreadable = True
            cursor.pending.append(self.evidence.add(Stretch(
                "unreadable", handle.path, cursor.base + len(cursor.parts) + 1, 0,
                _last_stamp(cursor.parts) or cursor.chunk_before, None, containers=None, what=message)))

        for chunk in sources.pieces(handle, self._advance, warn):
            size += len(chunk)
            self.data_bytes += len(chunk)
            if progress is not None:
                progress.data = self.data_bytes
            before = dropped
            parts = splitter.feed(chunk)
            if parts:
                advance(parts)
                first = first or _first_stamp(parts)
                last = _last_stamp(parts) or last
                count += len(parts)
                tail = parts[-1]
                yield parts
            if dropped > before:  # the overlong line comes after the piece's lines, and is not among them
                advance([b"\0"])
                cursor.lineno = cursor.base + 1
                cursor.skip(b"\0", False, f"a line longer than {MAX_LINE} bytes")
        if splitter.rest:
            # No newline at the end: a write cut short, or one still in progress. The newline added
            # here keeps it from looking canonical, so it is decoded in full: kept only if complete.
            rest = [splitter.rest + b"\n"]
            advance(rest)
            count += 1
            yield rest
        advance([])
        if backup and size == 0:
            cursor.pending.append(self.evidence.add(Stretch(
                "empty", handle.path, 0, 0, cursor.chunk_before, None, containers=None,
                what="an empty backup (rotation never leaves one)")))
        elif rotated is not None and not unreadable:
            rotated.see((tail,))
            if rotated.short_of(size):
                cursor.pending.append(self.evidence.add(evidence.shrunk(handle.path, size, rotated.short_of(size),
                                                                        before_file)))
        self.files_read += 1
        self.lines_read += count
        if not first:
            return None
        self.evidence.saw(first)
        self.evidence.saw(last)
        return first, last, count

    # -- records ----------------------------------------------------------------------------------

    def records(self, prefilter: Prefilter | None = None, *, decode: bool = True) -> Iterator[Record]:
        """The event records, oldest first.

        ``prefilter(line)`` may reject canonical lines that cannot matter to the question (it must
        never reject one that could). ``decode=False`` slices the identifying fields from canonical
        lines instead of decoding them (``Record.doc`` still decodes on demand).
        """
        # classify() and duplicate(), inlined: this loop runs once per line of the trail.
        ids, older = self._ids, self._older_ids
        for line in self.lines():
            if line.startswith(EVENT_START) and line.endswith(b"}") and (line.find(b"@", 3) < 0 or
                                                                          line.find(EVENT_START, 1) < 0):
                # A rejected line is passed over unless it may be a coverage event (``record.may_be_coverage``,
                # inlined: one comparison at a fixed offset, and only for the lines the prefilter rejects).
                if prefilter is not None and not prefilter(line) and line.startswith(PLUGIN_MESSAGE, MESSAGE_AT):
                    continue
                if not decode:
                    record = head_from_line(line)
                    if record is not None:
                        event_id = record.event_id
                        if event_id:
                            if event_id in ids or event_id in older:
                                self.duplicates += 1
                                self.evidence.duplicates += 1
                                continue
                            ids.add(event_id)
                            if len(ids) >= DEDUPE_WINDOW // 2:
                                self._older_ids, self._ids = older, ids = ids, set()
                        yield record
                        continue
            elif not line.strip():
                continue
            record = self._decode(line)
            if record is not None and not (record.event_id and self.duplicate(record)):
                ids, older = self._ids, self._older_ids  # ``duplicate`` may have begun a generation
                if record.coverage:
                    self.evidence.note(record)
                yield record

    def confirm(self, rec: Record) -> bool:
        """Decode a record that was only sliced; one whose line does not decode is skipped and counted."""
        if rec.doc:
            return True
        self._skip(rec.line)
        return False

    def classify(self, line: bytes, prefilter: Prefilter | None = None, decode: bool = True) -> Record | None:
        """The record of one line, or ``None`` (passed over by the prefilter, blank, or skipped and counted)."""
        if is_canonical_line(line):
            if prefilter is not None and not prefilter(line) and not may_be_coverage(line):
                return None
            if not decode:
                record = head_from_line(line)
                if record is not None:
                    return record
        elif not line.strip():
            return None
        return self._decode(line)

    def _decode(self, line: bytes) -> Record | None:
        """Decode a line in full: its record, or ``None`` (skipped and counted) if it is not an event."""
        try:
            doc = json.loads(line)
        except (ValueError, RecursionError):
            self._skip(line)
            return None
        record = head_from_doc(line.removesuffix(b"\n"), doc)
        if record is None:
            self._skip(line, parsed=True)
        return record


def _keyed(lines: Iterator[bytes], index: int) -> Iterator[tuple[bytes, bytes, int]]:
    """(timestamp, line, trail) for merging; a line without a readable timestamp keeps its predecessor's."""
    key = b""
    for line in lines:
        if line.startswith(b'{"@timestamp":"') and line[42:43] == b'"':
            key = line[15:42]
        yield key, line, index


def _first_stamp(parts: list[bytes]) -> str:
    for line in parts:
        stamp = _stamp(line)
        if stamp:
            return stamp
    return ""


def _last_stamp(parts: list[bytes]) -> str:
    for line in reversed(parts):
        stamp = _stamp(line)
        if stamp:
            return stamp
    return ""
