"""``cni-logger report``: one pass over the trail, everything an auditor asks first, for a time window.

The sections, each computed by the same code as the question it summarises:

* **trail**: the files read (size, oldest first), the span of events, lines skipped as damage, the
  *damaged stretches* and *gaps* (a backup missing, or possibly missing) exactly as every other command
  reports them on stderr (``reader.Scan.evidence``: file, lines, the events around them, whose events
  may be lost), duplicates ignored, and *quiet periods*, the report's own notion: no event at all for
  at least ``--gap`` anywhere in the trail (logging off, a node down, or simply no pod churn). A
  quiet period is not evidence of loss; a gap is (a number missing from the backups' sequence, or a
  pause across a file boundary far longer than the files' own pace), and the hosts (``host.name``) whose
  events fall in the window;
* **networks**: per network, the addresses held in the window, the holdings, the peak of
  simultaneous holdings, conflicts and what is still held (``occupancy``, as ``who-had CIDR``); with several
  hosts, per network and host (``Report.networks``);
* **conflicts**: a superseded holder seen holding its address again (``intervals``' notion, as
  ``who-had``; first ``LIST_LIMIT``);
* **leaks**: attachments never deleted (``state``: running, leaked or unknown, as ``leaks`` tells them on the
  trail's own node; the running ones are listed apart under ``running``, not as leaks) and DELs without ADD,
  then, listed apart as ``leaks`` lists them, superseded attachments (their DEL lost), clean-up DELs (no ADD,
  no cached result), attachments possibly deleted while the logger was out of their chain, and ones a
  complete inventory no longer listed (their DEL not recorded);
* **coverage**: the trail's own account of it (``coverage``, whole trail): outages (network, host, from,
  until, why), events the plugin could not write, the inventories seen and the heartbeats' span;
* **failures**: failed invocations in the window (first ``LIST_LIMIT``, all counted);
* **failed_adds**: every ADD known to have failed in the window: an ADD event that failed, bracket mode's failed
  attempts (``attempt-failed``), and, the logger last, the ones inferred from their clean-up DEL (``cleanup-del``,
  the ``leaks`` section's clean-up DELs); ``bracket`` says whether attempts were recorded (else only the inference
  is available, and failed ADDs the runtime never cleaned up are missing);
* **attempts** (bracket mode only): ADD attempts and how they ended, the failed ones with the DEL that
  cleaned up after them (not listed as DELs without ADD), and the chain's latency (``attempts``);
* **latency**: counts and percentiles (``stats``).

The whole trail is read (what is still held at its end decides the leaks); only what falls in
``[--since, --until]`` is counted. Memory is bounded: open attachments, one set of addresses per
network, capped lists, and for the HTML picture (``page``) at most ``max_bars`` holdings, the ones
that ended last (a ring), across at most ``max_addresses`` address rows.

Every section is a plain dict (``Report.to_json``), so what the trail cannot vouch for flows into
text, JSON and HTML alike: a holding carries ``who-had``'s ``notes`` (``intervals.qualifications``),
a superseded end is ``ended_by: superseded``, a start the trail does not show is ``from: null``.
"""

from __future__ import annotations

import os
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from cni_logger.audit import record, sources
from cni_logger.audit.alive import LEAKED, RUNNING, UNKNOWN, Liveness, netns_of
from cni_logger.audit.attempts import ADD_FAILED, ATTEMPT_FAILED, Attempts
from cni_logger.audit.attempts import CLEANUP_DEL as INFERRED
from cni_logger.audit.evidence import Evidence
from cni_logger.audit.formats import plural
from cni_logger.audit.intervals import Interval
from cni_logger.audit.occupancy import Holding, Occupancy, address_key, line_fields
from cni_logger.audit.output import (
    CLEANUP_DEL,
    DEL_WITHOUT_ADD,
    NEVER_DELETED,
    POSSIBLY_DELETED,
    SUPERSEDED,
    UNRECORDED_DEL,
)
from cni_logger.audit.query import on_host
from cni_logger.audit.reader import Scan
from cni_logger.audit.record import Record
from cni_logger.audit.stats import Stats
from cni_logger.audit.timeparse import to_epoch

LIST_LIMIT = 200
"""Conflicts, failures, leaks, quiet periods, damaged stretches and possible gaps listed (all are counted); ``--limit
N`` lists N of each instead."""
MAX_BARS = 5000
MAX_ADDRESSES = 512


@dataclass
class Window:
    since: str = ""
    until: str = ""

    def __contains__(self, stamp: str) -> bool:
        return (not self.since or stamp >= self.since) and (not self.until or stamp < self.until)


@dataclass
class NetworkUse:
    addresses: set[str] = field(default_factory=set)
    holdings: int = 0
    open: int = 0
    peak: int = 0
    conflicts: int = 0
    still_held: int = 0


class Capped:
    """A list that keeps its first ``limit`` items and counts the rest."""

    def __init__(self, limit: int = LIST_LIMIT) -> None:
        self.limit = limit
        self.items: list[dict[str, Any]] = []
        self.count = 0

    def add(self, item: dict[str, Any]) -> None:
        self.count += 1
        if len(self.items) < self.limit:
            self.items.append(item)

    def to_json(self) -> dict[str, Any]:
        return {"count": self.count, "listed": self.items}


def failed_add(rec: Record, how: str, failed: Record | None) -> dict[str, Any]:
    """An item of ``failed_adds``: ``rec`` is the attempt (bracket mode), the clean-up DEL (the logger last) or the
    ADD event that failed; ``failed`` the event whose error says why, if there is one."""
    host, _, namespace, pod = record.placed(rec)
    error = record.error_message(failed.doc) if failed is not None else ""
    item = {"time": rec.timestamp, "host": host or None, "network": rec.network, "container": rec.container_id,
            "pod": pod or None, "namespace": namespace or None, "ifname": rec.ifname, "how": how,
            "error": error or None}
    rec.forget()
    return item


def trail_files(trails: list[sources.Trail]) -> list[dict[str, Any]]:
    """The files of each trail, oldest first, with their sizes on disk (as found before the scan)."""
    found: list[dict[str, Any]] = []
    for trail in trails:
        for path in [v for stem in sources.backups(trail) for v in (stem, stem + ".gz")] + [trail.live]:
            try:
                found.append({"path": path, "bytes": os.stat(path).st_size})
            except OSError:
                continue
    return found


class Builder:
    """Accumulates the report from records in trail order."""

    def __init__(self, window: Window, *, gap_seconds: float, max_bars: int = MAX_BARS,
                 max_addresses: int = MAX_ADDRESSES, found: Evidence | None = None,
                 liveness: Liveness | None = None, list_limit: int = LIST_LIMIT) -> None:
        self.window = window
        self.list_limit = list_limit
        """Rows each list keeps (``Capped``): ``LIST_LIMIT``, or ``--limit``."""
        self.liveness = liveness
        """Tells the attachments still open at the end running from leaked (``alive``); ``None``: not asked."""
        self.states: dict[tuple[str, str, str, str], tuple[str, str]] = {}
        """``finish``: (state, why) of each attachment still open, by ``Interval.slot`` (its node included)."""
        self.gap_seconds = gap_seconds
        self.max_bars = max_bars
        self.max_addresses = max_addresses
        self.occupancy = Occupancy(keep_orphans=True, found=found)
        self.stats = Stats()
        self.attempts = Attempts(infer=False)  # failed ADDs inferred from the tracker's DELs without ADD
        """Bracket mode: the attempt entries' events, paired with their outcomes (in the window)."""
        self.failed_attempts = Capped(list_limit)
        self.failed_adds = Capped(list_limit)
        """Every ADD known to have failed (``failed_adds``): events that say so, bracket mode's failed attempts, and
        the ones inferred from their clean-up DEL (``cleanups``)."""
        self.networks: dict[tuple[str, str], NetworkUse] = {}
        """Occupancy per (network, host): an address is one holder's at a time on one network of one node, and merged
        trails of several nodes share network names and ranges (``Report.networks``)."""
        self.conflicts = Capped(list_limit)
        self.failures = Capped(list_limit)
        self.orphans = Capped(list_limit)
        self.cleanups = Capped(list_limit)
        self.superseded = Capped(list_limit)
        self.unrecorded = Capped(list_limit)
        """Holdings a complete inventory no longer listed (their DEL not recorded): listed apart, as not leaks."""
        self.coverage_events = 0
        self.hosts: dict[str, int] = {}
        """Events in the window per node (``host.name``): whose trails the report covers."""
        self.quiet = Capped(list_limit)
        self.bars: deque[Holding] = deque(maxlen=max(max_bars, 0) or None)
        self.bars_dropped = 0
        self.first = ""
        self.last = ""
        self._previous = ""
        self._entered = False

    def _network(self, name: str, host: str) -> NetworkUse:
        use = self.networks.get((name, host))
        if use is None:
            use = self.networks[name, host] = NetworkUse()
        return use

    def feed(self, rec: Record) -> None:
        """One record, in trail order."""
        stamp = rec.timestamp
        inside = False
        if stamp:
            if stamp > self._previous:
                self._times(stamp)
            since, until = self.window.since, self.window.until  # ``stamp in self.window``, without a call
            inside = (not since or stamp >= since) and (not until or stamp < until)
        cleanup = None
        if inside:
            if not self._entered:  # what was held when the window opened counts towards its peak
                self._entered = True
                for use in self.networks.values():
                    use.peak = max(use.peak, use.open)
            host = rec.node
            self.hosts[host] = self.hosts.get(host, 0) + 1
            if rec.coverage:  # the trail's own coverage (``coverage``): never an invocation, success or failure
                self.coverage_events += 1
            else:
                if not self.attempts.feed(rec):
                    self.stats.add(rec)
                failed = self.attempts.concluded
                if failed is not None:
                    cleanup = failed.cleanup
                    if failed.concluded_by != "ADD":  # else the outcome's own failed ADD event is the one listed
                        self.failed_adds.add(failed_add(failed.attempt, ATTEMPT_FAILED,
                                                        failed.attempt if failed.concluded_by == "attempt" else None))
                    self.failed_attempts.add(failed.to_json())
                if not rec.ok:
                    if rec.command == "ADD" and not rec.attempt:
                        self.failed_adds.add(failed_add(rec, ADD_FAILED, rec))
                    self._failure(rec)
        occupancy = self.occupancy
        for holding in occupancy.feed(rec):
            self._ended(holding)
        for holding in occupancy.left:
            self._network(holding.network, holding.host).open -= 1
        if occupancy.orphans:
            for orphan in occupancy.orphans:
                if orphan.seen in self.window and (cleanup is None or orphan.closing is not cleanup):
                    self._orphan(orphan)
            occupancy.orphans.clear()
        for holding in occupancy.opened:
            use = self._network(holding.network, holding.host)
            use.open += 1
            if inside:
                use.peak = max(use.peak, use.open)
        for holding, other, at in occupancy.found_conflicts:
            if at in self.window:
                self._conflict(holding, other, at)

    def _ended(self, holding: Holding) -> None:
        """A holding handed out by occupancy (ended, or superseded and settled)."""
        if holding.overlaps(self.window.since, self.window.until):
            self._count(holding)
            if holding.ended_by == "superseded" and not holding.conflict:
                self.superseded.add({"kind": SUPERSEDED, **holding.to_json()})
            elif holding.ended_by == "inventory":
                self.unrecorded.add({"kind": UNRECORDED_DEL, **holding.to_json()})

    def _orphan(self, orphan: Interval) -> None:
        """A DEL without ADD: with a cached result, or the clean-up DEL of a failed ADD (as ``leaks`` tells them)."""
        addresses, namespace, pod = line_fields(orphan.opened)
        cached = record.cached_result(orphan.opened.doc)
        if not cached:
            self.failed_adds.add(failed_add(orphan.opened, INFERRED, None))
        orphan.opened.forget()
        (self.orphans if cached else self.cleanups).add({
            "kind": DEL_WITHOUT_ADD if cached else CLEANUP_DEL, "seen": orphan.seen, "host": orphan.host or None,
            "network": orphan.key[0],
            "container_id": orphan.key[1], "ifname": orphan.key[2], "pod": pod or None,
            "namespace": namespace or None, "addresses": addresses, "cached_result": cached})

    def _times(self, stamp: str) -> None:
        """The span, and a quiet period when this event comes ``gap_seconds`` or more after the one before.

        ``feed`` calls it only for a time later than any before (concurrent writers leave neighbouring times a
        few milliseconds out of order: an earlier one changes neither)."""
        previous = self._previous
        if not previous:
            self.first = self._previous = self.last = stamp
            return
        if self.gap_seconds < 60 or stamp[:16] != previous[:16]:  # in the same minute: less than the gap apart
            seconds, before = to_epoch(stamp), to_epoch(previous)
            if seconds - before >= self.gap_seconds:
                self.quiet.add({"from": previous, "until": stamp, "seconds": round(seconds - before, 3)})
        self._previous = self.last = stamp

    def _failure(self, rec: Record) -> None:
        doc = rec.doc
        self.failures.add({"@timestamp": rec.timestamp, "command": rec.command, "host": record.host(doc) or None,
                           "network": rec.network,
                           "container_id": rec.container_id, "ifname": rec.ifname, "pod": record.pod(doc) or None,
                           "namespace": record.namespace(doc) or None, "error": record.error_message(doc) or None})
        rec.forget()

    def _conflict(self, holding: Holding, other: str, stamp: str) -> None:
        """``holding`` was superseded by ``other``'s ADD, yet showed it still held the address at ``stamp``."""
        self._network(holding.network, holding.host).conflicts += 1
        self.conflicts.add({"address": holding.address, "at": stamp, "host": holding.host or None,
                            "network": holding.network,
                            "container_id": holding.container_id, "pod": holding.pod or None,
                            "namespace": holding.namespace or None, "other_container_id": other})

    def _count(self, holding: Holding) -> None:
        use = self._network(holding.network, holding.host)
        use.holdings += 1
        use.addresses.add(holding.address)
        if self.bars.maxlen is not None and len(self.bars) == self.bars.maxlen:
            self.bars_dropped += 1
        if self.max_bars > 0:
            self.bars.append(holding)
        else:
            self.bars_dropped += 1

    def finish(self) -> list[Holding]:
        """Account for the end of the trail; the holdings still held (the never-deleted leaks)."""
        if self.liveness is not None:
            for slot, interval in self.occupancy.tracker.open.items():
                self.states[slot] = self.liveness.state(interval.host, *interval.key, netns_of(interval.opened.doc),
                                                        interval.seen)
                interval.opened.forget()
        parked, held = self.occupancy.finish()
        for holding in parked:
            self._ended(holding)
        still = [h for h in held if h.overlaps(self.window.since, self.window.until)]
        for holding in still:
            self._count(holding)
            self._network(holding.network, holding.host).still_held += 1
        return still


def build(scan: Scan, window: Window, *, gap_seconds: float, max_bars: int = MAX_BARS,
          max_addresses: int = MAX_ADDRESSES, liveness: Liveness | None = None, host: str = "",
          list_limit: int = LIST_LIMIT) -> Report:
    """Read the whole trail once and assemble the report (of the nodes ``host`` names, a glob: all without it;
    ``list_limit`` rows listed in each list)."""
    builder = Builder(window, gap_seconds=gap_seconds, max_bars=max_bars, max_addresses=max_addresses,
                      found=scan.evidence, liveness=liveness, list_limit=list_limit)
    wanted = on_host(host)
    for rec in scan.records(decode=False):
        if wanted is None or wanted(rec):
            builder.feed(rec)
    still = builder.finish()
    return Report(builder, still, trail_files(scan.trails), scan)


class Report:
    """The assembled answers: ``to_json`` for text, JSON and HTML alike, and the bars for the picture."""

    def __init__(self, builder: Builder, still: list[Holding], files: list[dict[str, Any]], scan: Scan) -> None:
        self.builder = builder
        window = builder.window
        self.window = {"since": window.since or None, "until": window.until or None}
        self.files = files
        self.events_read = builder.stats.events
        self.skipped = scan.skipped
        self.warnings = list(scan.warnings)
        self.evidence = scan.evidence
        self.damaged, self.possible_gaps = Capped(builder.list_limit), Capped(builder.list_limit)
        for stretch in scan.evidence.stretches:
            (self.possible_gaps if stretch.kind == "gap" else self.damaged).add(stretch.to_json())
        self.leaks, self.possibly_deleted, self.running = (Capped(builder.list_limit) for _ in range(3))
        self.states = {RUNNING: 0, LEAKED: 0, UNKNOWN: 0}
        """Attachments still open (not possibly deleted) by state; ``unknown`` too when this node could not look."""
        for holding in still:
            state, why = builder.states.get((holding.network, holding.container_id, holding.ifname, holding.host),
                                            ("", ""))
            stated = {"state": state or None, "state_reason": why or None}
            if holding.unwatched:  # the logger was out of its chain since its last evidence: maybe deleted then
                self.possibly_deleted.add({"kind": POSSIBLY_DELETED, **holding.to_json(), **stated})
                continue
            self.states[state if state in self.states else UNKNOWN] += 1
            if state == RUNNING:  # this node sees it running: not a leak, not an alarm
                self.running.add({"kind": NEVER_DELETED, **holding.to_json(), **stated})
            else:
                self.leaks.add({"kind": NEVER_DELETED, **holding.to_json(), **stated})
        self.bars, self.rows, self.bars_not_drawn, self.rows_not_drawn = self._picture(builder)

    def networks(self) -> dict[str, dict[str, Any]]:
        """Occupancy per network, as one node's trail reads it (by network name); with several hosts, per network
        *and host* (``NETWORK on HOST``, each naming its ``network`` and ``host``): the same network name and range
        on two nodes are two sets of addresses, whose holdings, peaks and addresses never add up."""
        used = sorted((key, use) for key, use in self.builder.networks.items() if use.holdings)
        several = len({host for (_, host), _ in used}) > 1
        found: dict[str, dict[str, Any]] = {}
        for (name, host), use in used:
            totals = {"addresses": len(use.addresses), "holdings": use.holdings, "peak": use.peak,
                      "conflicts": use.conflicts, "still_held": use.still_held}
            if several:
                found[f"{name} on {host or '(no host)'}"] = {"network": name, "host": host or None, **totals}
            else:
                found[name] = totals
        return found

    @staticmethod
    def _picture(builder: Builder) -> tuple[list[Holding], list[str], int, int]:
        """The holdings to draw and their address rows, within the bounds."""
        addresses = sorted({h.address for h in builder.bars}, key=address_key)
        rows = addresses[: builder.max_addresses]
        shown = set(rows)
        bars = [h for h in builder.bars if h.address in shown]
        not_drawn = builder.bars_dropped + len(builder.bars) - len(bars)
        return bars, rows, not_drawn, len(addresses) - len(rows)

    def to_json(self) -> dict[str, Any]:
        b = self.builder
        stats = b.stats.to_json()
        return {
            "window": self.window,
            "hosts": dict(sorted((name, count) for name, count in b.hosts.items() if name)),
            "trail": {"files": self.files, "first": b.first or None, "last": b.last or None,
                      "events_in_window": stats["events"], "first_in_window": stats["first"],
                      "last_in_window": stats["last"], "skipped_lines": self.skipped,
                      "damaged": self.damaged.to_json(), "possible_gaps": self.possible_gaps.to_json(),
                      "duplicates_ignored": self.evidence.duplicates,
                      "quiet_periods": {**b.quiet.to_json(), "min_seconds": b.gap_seconds},
                      "hosts": sorted(h for h in b.hosts if h),
                      "warnings": self.warnings},
            "networks": self.networks(),
            "conflicts": b.conflicts.to_json(),
            "leaks": {"never_deleted": self.leaks.to_json(), "del_without_add": b.orphans.to_json(),
                      "superseded": b.superseded.to_json(), "cleanup_del": b.cleanups.to_json(),
                      "possibly_deleted": self.possibly_deleted.to_json(), "unrecorded_del": b.unrecorded.to_json(),
                      "running": self.running.to_json()},
            "still_open": self.states,
            "coverage": {**self.evidence.coverage.to_json(), "events_in_window": b.coverage_events},
            "failures": b.failures.to_json(),
            **({"attempts": {**b.attempts.to_json(), "failed_attempts": b.failed_attempts.to_json()}}
               if b.attempts.events else {}),
            "failed_adds": {"count": b.failed_adds.count, "inferred": b.cleanups.count,
                            "bracket": b.attempts.events > 0, "items": b.failed_adds.items},
            "stats": stats,
            "picture": {"bars": len(self.bars), "bars_not_drawn": self.bars_not_drawn, "rows": len(self.rows),
                        "rows_not_drawn": self.rows_not_drawn, "max_bars": b.max_bars,
                        "max_addresses": b.max_addresses},
        }


def unlisted(data: dict[str, Any], limit: int) -> str:
    """``report --limit N``: what its lists left out (each lists its first N, all counted), for stderr; "": none."""
    sections = [data["trail"]["damaged"], data["trail"]["possible_gaps"], data["trail"]["quiet_periods"],
                data["conflicts"], *data["leaks"].values(), data["failures"]]
    left = sum(section["count"] - len(section["listed"]) for section in sections)
    failed = data.get("failed_adds")
    if failed is not None:
        left += failed["count"] - len(failed["items"])
    attempts = data.get("attempts")
    if attempts:
        left += attempts["failed_attempts"]["count"] - len(attempts["failed_attempts"]["listed"])
    if not left:
        return ""
    return f"output limited to the first {limit} rows of each list (--limit {limit}): {plural(left, 'row')} not listed"
