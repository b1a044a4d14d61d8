"""What a trail cannot vouch for: damaged stretches, possible gaps, duplicates, and where it begins.

An answer from the trail is only as good as the trail. A scan (``reader.Scan``) notes here every
place where events may be missing, so that each answer is either right or says why it may not be:

* a **damaged stretch**: consecutive lines of one file that are not events (a cut-short write, junk,
  a line too long), or the rest of a file that cannot be read or inflated (a truncated ``.gz``), or
  a backup that is empty (rotation only ever renames a file that reached ``maxSize``), or one smaller than the
  ``maxSize`` in force when it was rotated (kind ``shrunk``: ``RotationSize``; restored from an older copy, or
  lines removed from it: its events may be missing anywhere in it, or after its end). Its time
  range runs from the last good event before it to the first good event after it in the same trail
  (``before`` is ``None`` while none has followed: the stretch reaches the end of the trail);
* a **gap** between two consecutive files of a trail: a backup missing from the middle of the trail
  (retention only ever removes the oldest). Backups are numbered in write order
  (``<file>.<sequence>.<stamp>``), so a number missing between two backups is a gap for certain; where
  numbers cannot tell (the older naming, or the newest backup before the live file), a gap is
  inferred from time (``gap``: a pause far longer than the files' own pace), and is only possible;
* **duplicates**: events seen twice (the same ``event.id``), counted by the reader and ignored;
* the trail's **coverage** events (``coverage``): outages of the logger (``Evidence.coverage``), and
  events the plugin could not write, which become a stretch of kind ``dropped`` (the containers it
  names, or anyone's when its list was cut short).

A damaged line is a *possible lost event* only if it could be one: a line that parses as JSON is
complete (foreign, never a cut-short event of the plugin), and a line with none of the plugin's
markers (``"@timestamp"``, ``"event"``, ``"cni"``, a NUL byte) is foreign text. Lost-event lines
often still name their container (the ``message`` comes second in every line, ``CNI DEL eth0 of
container X``): the stretch then concerns those containers only; otherwise anyone.

Memory: at most ``MAX_STRETCHES`` stretches are kept; past that, each new one is merged into the
last kept one (a wider stretch: answers get more cautious, never less).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from cni_logger.audit.timeparse import to_epoch
from cni_logger.settings import DEFAULT_MAX_SIZE_MB

if TYPE_CHECKING:
    from cni_logger.audit.coverage import Coverage
    from cni_logger.audit.record import Record

MAX_STRETCHES = 4096
GAP_FACTOR = 8.0
"""A pause across a file boundary this many times the neighbouring files' mean pause between events..."""
GAP_MIN_SECONDS = 1.0
"""...and at least this long, is reported as a possible gap (a missing backup)."""
_MARKERS = (b'"@timestamp"', b'"event"', b'"cni"', b"\0")
_NAMED = re.compile(rb'of container ([^"\\ ]+)|"container_id":"([^"\\]+)"')


@dataclass
class Stretch:
    """A stretch of a trail where events may be missing (``lost``) or foreign lines were met."""

    kind: str
    """``damaged`` (lines), ``unreadable`` (the rest of a file), ``empty`` (a backup), ``gap`` (between files),
    ``dropped`` (events the plugin could not write, by its own ``logger-dropped`` account: ``coverage``)."""
    path: str
    first_line: int
    last_line: int
    """0: to the end of the file (``unreadable``), or not about lines (``empty``, ``gap``)."""
    after: str
    """The last good event before it in its trail ("" when it is the trail's start)."""
    before: str | None
    """The first good event after it (``None``: none followed, it reaches the end of the trail)."""
    lines: int = 0
    lost: bool = True
    containers: set[str] | None = field(default_factory=set)
    """Containers the lost lines name; ``None`` when some lost line names none (anyone)."""
    what: str = ""

    def covers(self, at: str) -> bool:
        return self.after <= at and (self.before is None or at <= self.before)

    def concerns(self, container_id: str) -> bool:
        return self.lost and (self.containers is None or container_id in self.containers)

    def add_line(self, line: bytes, number: int, parsed: bool = False) -> None:
        """One more skipped line; ``parsed``: it was complete JSON (so foreign, not a cut-short event)."""
        if self.kind == "damaged":
            self.last_line = number
        self.lines += 1
        lost = not parsed and _may_be_event(line)
        if lost:
            if not self.lost:
                self.lost, self.containers = True, set()
            named = {(a or b).decode("utf-8", "replace") for a, b in _NAMED.findall(line[:4096])}
            if not named:
                self.containers = None
            elif self.containers is not None:
                self.containers |= named
        elif self.lines == 1:
            self.lost = False

    def to_json(self) -> dict[str, object]:
        return {"kind": self.kind, "file": self.path, "first_line": self.first_line or None,
                "last_line": self.last_line or None, "after": self.after or None, "before": self.before,
                "lines": self.lines, "lost_events_possible": self.lost,
                "containers": None if self.containers is None else sorted(self.containers), "what": self.what}

    def describe(self) -> str:
        if self.kind == "gap":
            where = self.path
        elif self.kind == "damaged":
            span = f"{self.first_line}" if self.first_line == self.last_line else f"{self.first_line}-{self.last_line}"
            where = f"{self.path} line{'s' if self.first_line != self.last_line else ''} {span}"
        elif self.kind == "unreadable":
            where = f"{self.path} from line {self.first_line} to its end"
        else:
            where = self.path
        times = f"{self.after or 'the start of the trail'} .. {self.before or 'the end of the trail'}"
        if self.lost:
            whose = "" if self.containers is None else f" of {', '.join(sorted(self.containers))}"
            effect = f"events{whose} may be missing"
        else:
            effect = "foreign lines, no event lost"
        return f"{self.kind}: {where} ({times}): {self.what}; {effect}"


MIB = 1024 * 1024
DEFAULT_MAX_BYTES = int(DEFAULT_MAX_SIZE_MB * MIB)


class RotationSize:
    """The size a backup must have reached: the plugin rotates its file only once an append took it to the
    appending entry's ``maxSize`` (``filesink.RotatingFile._rotate`` checks ``st_size >= max_bytes`` under its lock,
    right after that append, then renames the file whole). So the last event of a backup in the plugin's own
    naming is the one whose append crossed the size, and the backup is never smaller than that event's ``maxSize``
    (``cni.config.logOptions``, the entry's config as the plugin parsed it: ``settings``). Only the last line is
    read (``see``): a copy restored from before the file was full, or a backup with lines cut out, is short of it.

    Nothing is concluded when that event does not say its ``maxSize`` (a coverage event, whose writer has no
    config; an invocation whose config was shrunk away) or its entry rotates by other means (``rotation`` other
    than ``size``)."""

    __slots__ = ("known", "limit", "unknown")

    def __init__(self) -> None:
        self.limit = 0
        """The smallest ``maxSize`` seen, in bytes (0: none yet)."""
        self.unknown = False
        self.known: dict[bytes, int | None] = {}
        """``logOptions`` objects already read (a trail's entries have a handful)."""

    def _options(self, text: bytes) -> int | None:
        """``logOptions`` (the object's text, up to its first ``}``: it holds no other object) in bytes."""
        if text not in self.known:
            if len(self.known) >= 64:
                self.known.clear()
            self.known[text] = _max_bytes(text)
        return self.known[text]

    def see(self, lines: Iterable[bytes]) -> None:
        """The lines' ``maxSize``s (a backup's last line, in practice)."""
        if self.unknown:
            return
        for line in lines:
            config = line.rfind(b',"config":{')  # near the end of the line: only the cached result follows it
            if config >= 0:
                at = line.find(b'"logOptions":', config)
                limit = self._options(line[at + 13:line.find(b"}", at) + 1]) if at >= 0 else DEFAULT_MAX_BYTES
            elif b'"cni":{"command":' in line:
                limit = None  # an invocation whose config is not in its event (shrunk away)
            else:
                continue  # a coverage event, or not an event at all
            if limit is None:
                self.unknown = True
                return
            if not self.limit or limit < self.limit:
                self.limit = limit

    def short_of(self, size: int) -> int:
        """The ``maxSize`` (bytes) a backup of ``size`` bytes is short of; 0 when it is not (or nothing is known)."""
        return self.limit if not self.unknown and 0 < size < self.limit else 0


def _max_bytes(text: bytes) -> int | None:
    """``logOptions``' rotation size in bytes, as ``settings`` reads it; ``None``: not rotated by size (or unread)."""
    try:
        options = json.loads(text)
    except (ValueError, RecursionError):
        return None
    if not isinstance(options, dict) or options.get("rotation", "size") != "size":
        return None
    size = options.get("maxSize", DEFAULT_MAX_SIZE_MB)
    if isinstance(size, int | float) and not isinstance(size, bool) and 0 < size <= MIB:
        return max(int(size * MIB), 1)
    return DEFAULT_MAX_BYTES


def shrunk(path: str, size: int, limit: int, after: str) -> Stretch:
    """A backup of ``size`` bytes, short of the ``limit`` it was rotated at (``RotationSize``)."""
    return Stretch("shrunk", path, 0, 0, after, None, containers=None,
                   what=f"a backup of {size} bytes, smaller than the maxSize of {limit} bytes in force when it was "
                        "rotated: restored from an older copy, or lines removed from it")


def _may_be_event(line: bytes) -> bool:
    """Could this undecodable line have been an event of the plugin's (cut short, glued, rotten)?"""
    return any(marker in line for marker in _MARKERS)


def gap(path_a: str, path_b: str, a: tuple[str, str, int], b: tuple[str, str, int],
        missing: tuple[int, int] | None = None) -> Stretch | None:
    """A gap between consecutive files ``a`` then ``b`` ((first, last, lines) of their events), if any.

    ``missing``: the first and last sequence numbers absent between them (the backups are gone). Else
    the rule: the pause from ``a``'s last event to ``b``'s first is longer than ``GAP_FACTOR`` times the
    mean pause between events inside either file (and than ``GAP_MIN_SECONDS``). A rotation boundary is
    otherwise an ordinary pause between two events; a missing file hides a whole file's worth of them.
    """
    if missing is not None:
        first, last = missing
        names = f"backup {first:06d}" if first == last else f"backups {first:06d} to {last:06d}"
        return Stretch("gap", f"between {path_a} and {path_b}", 0, 0, a[1], b[0], containers=None,
                       what=f"{names} missing from the sequence: a backup is gone")
    try:
        pause = to_epoch(b[0]) - to_epoch(a[1])
        paces = [(to_epoch(last) - to_epoch(first)) / (count - 1) for first, last, count in (a, b) if count > 1]
    except ValueError:  # a time the calendar does not have (e.g. month 13): nothing to measure a pause by
        return None
    pace = max(paces, default=0.0)
    if pause <= max(GAP_FACTOR * pace, GAP_MIN_SECONDS):
        return None
    return Stretch("gap", f"between {path_a} and {path_b}", 0, 0, a[1], b[0], containers=None,
                   what=f"no event for {pause:.1f}s across a file boundary (mean pause nearby {pace:.2f}s): "
                        "a backup may be missing")


class Evidence:
    """Everything a scan found wanting, and the time the trail covers."""

    def __init__(self) -> None:
        from cni_logger.audit.coverage import Coverage

        self.stretches: list[Stretch] = []
        self.coverage: Coverage = Coverage()
        """The trail's own account of its coverage: outages, dropped events, inventories (``coverage``)."""
        self.duplicates = 0
        self.start = ""
        """The earliest event of any trail: before it, the trail says nothing."""
        self.end = ""
        """The latest event of any trail. Later times count as covered: nothing was written since (a trail
        that is no longer written to, such as a copy, is taken as complete up to the time asked)."""

    def add(self, stretch: Stretch) -> Stretch:
        if len(self.stretches) < MAX_STRETCHES:
            self.stretches.append(stretch)
            return stretch
        last = self.stretches[-1]  # merged: wider, and as cautious as the most cautious of the two
        last.kind, last.what = "damaged", "many damaged stretches merged"
        last.before = stretch.before
        last.lines += stretch.lines
        last.lost = last.lost or stretch.lost
        last.containers = None
        return last

    def saw(self, stamp: str) -> None:
        if stamp and (not self.start or stamp < self.start):
            self.start = stamp
        if stamp > self.end:
            self.end = stamp

    def note(self, rec: Record) -> None:
        """A coverage event, in trail order (``reader.Scan.records``); dropped events become a stretch."""
        stretch = self.coverage.note(rec)
        if stretch is not None:
            self.add(stretch)

    @property
    def incomplete(self) -> bool:
        """Anything at all to report (what ``--strict`` turns into exit status 3)."""
        return bool(self.stretches) or bool(self.coverage.outages)

    def unwatched(self, at: str, named: bool = True) -> str:
        """Why a holder of an address at ``at`` may be missing from the trail although it is whole there: the
        logger was out of a chain, or (``named`` false: no event names the address) ``at`` is before the
        trail's oldest inventory ("" when neither: ``coverage.Coverage.unwatched``)."""
        return self.coverage.unwatched(at, named)

    def uncovered(self, at: str) -> str:
        """Why the trail cannot say that nothing happened at ``at`` ("" when it can)."""
        if not self.start or at < self.start:
            return f"{at} is before the trail, which starts at {self.start or '(no events)'}"
        for stretch in self.stretches:
            if stretch.lost and stretch.covers(at):
                return f"{at} is in a {stretch.kind} stretch: {stretch.describe()}"
        return ""

    def lost_between(self, since: str, at: str) -> Stretch | None:
        """The first stretch where anyone's events may be lost after ``since`` and up to ``at``: an ADD there may
        have handed out an address whose last evidence before ``at`` is at ``since`` ("": none), unseen."""
        for stretch in self.stretches:
            if stretch.lost and stretch.after < at and (stretch.before is None or stretch.before > since):
                return stretch
        return None

    def lost_after(self, since: str, container_id: str, until: str | None = None) -> Stretch | None:
        """The first stretch after ``since`` (and before ``until``) where an event of the container may be lost."""
        for stretch in self.stretches:
            if stretch.concerns(container_id) and (stretch.before is None or stretch.before >= since) \
                    and (until is None or stretch.after <= until):
                return stretch
        return None

    def to_json(self) -> dict[str, object]:
        return {"start": self.start or None, "end": self.end or None, "duplicates_ignored": self.duplicates,
                "stretches": [s.to_json() for s in self.stretches],
                "outages": [o.to_json() for o in self.coverage.outages]}
