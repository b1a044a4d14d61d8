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
"""

from __future__ import annotations

import heapq
import json
from collections.abc import Callable, Iterator

from cni_logger.audit import sources
from cni_logger.audit.lines import LineSplitter
from cni_logger.audit.output import Progress
from cni_logger.audit.record import EVENT_START, Record, head_from_doc, head_from_line, is_canonical_line

Prefilter = Callable[[bytes], bool]


class Scan:
    """One pass over the trails: yields records and counts what it skipped."""

    def __init__(self, trails: list[sources.Trail], *, progress: Progress | None = None,
                 warn: Callable[[str], None] | None = None) -> None:
        self.trails = trails
        self.progress = progress
        self.skipped = 0
        self.data_bytes = 0
        self.warnings: list[str] = []
        self._warn_sink = warn

    def warn(self, message: str) -> None:
        if self.progress is not None:
            self.progress.clear()
        self.warnings.append(message)
        if self._warn_sink is not None:
            self._warn_sink(message)

    def count_skipped(self) -> None:
        """One more line that is not an event."""
        self.skipped += 1

    def _advance(self, nbytes: int) -> None:
        if self.progress is not None:
            self.progress.advance(nbytes)

    # -- lines ------------------------------------------------------------------------------------

    def lines(self) -> Iterator[bytes]:
        """Every line of every trail (without its newline), oldest first."""
        if len(self.trails) == 1:
            yield from self._trail_lines(self.trails[0])
            return
        for _, line in heapq.merge(*(_keyed(self._trail_lines(trail)) for trail in self.trails)):
            yield line

    def _trail_lines(self, trail: sources.Trail) -> Iterator[bytes]:
        for handle in sources.trail_files(trail, self.warn):
            try:
                yield from self._file_lines(handle)
            finally:
                handle.close()

    def _file_lines(self, handle: sources.OpenFile) -> Iterator[bytes]:
        splitter = LineSplitter(self.count_skipped)
        progress = self.progress
        for chunk in sources.chunks(handle, self._advance, self.warn):
            self.data_bytes += len(chunk)
            if progress is not None:
                progress.data = self.data_bytes
            yield from splitter.feed(chunk)
        if splitter.rest:
            # No newline at the end: a write cut short, or one still in progress. The newline added
            # here keeps it from looking canonical, so it is decoded in full: kept only if complete.
            yield splitter.rest + b"\n"

    # -- records ----------------------------------------------------------------------------------

    def records(self, prefilter: Prefilter | None = None, *, decode: bool = True) -> Iterator[Record]:
        """The event records, oldest first.

        ``prefilter(line)`` may reject canonical lines that cannot matter to the question (it must
        never reject one that could). ``decode=False`` slices the identifying fields from canonical
        lines instead of decoding them (``Record.doc`` still decodes on demand).
        """
        # classify(), inlined: this loop runs once per line of the trail.
        for line in self.lines():
            if line.startswith(EVENT_START) and line.endswith(b"}") and line.find(EVENT_START, 1) < 0:
                if prefilter is not None and not prefilter(line):
                    continue
                if not decode:
                    record = head_from_line(line)
                    if record is not None:
                        yield record
                        continue
            elif not line.strip():
                continue
            record = self._decode(line)
            if record is not None:
                yield record

    def confirm(self, rec: Record) -> bool:
        """Decode a record that was only sliced; one whose line does not decode is skipped and counted."""
        if rec.doc:
            return True
        self.skipped += 1
        return False

    def classify(self, line: bytes, prefilter: Prefilter | None = None, decode: bool = True) -> Record | None:
        """The record of one line, or ``None`` (passed over by the prefilter, blank, or skipped and counted)."""
        if is_canonical_line(line):
            if prefilter is not None and not prefilter(line):
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
            self.skipped += 1
            return None
        record = head_from_doc(line.removesuffix(b"\n"), doc)
        if record is None:
            self.skipped += 1
        return record


def _keyed(lines: Iterator[bytes]) -> Iterator[tuple[bytes, bytes]]:
    """(timestamp, line) for merging; a line without a readable timestamp keeps its predecessor's."""
    key = b""
    for line in lines:
        if line.startswith(b'{"@timestamp":"') and line[42:43] == b'"':
            key = line[15:42]
        yield key, line
