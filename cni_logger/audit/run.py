"""What each audit subcommand does with its parsed arguments: scan, answer, exit status.

Each question computes its answer here and hands it to ``output``, which prints it (a table, or
JSON lines with ``--json``); the exit status follows ``grep``'s conventions (``Session.finish``).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

from cni_logger.audit import output, record, sources
from cni_logger.audit.intervals import Interval, Tracker
from cni_logger.audit.output import DEL_WITHOUT_ADD, FOUND, NEVER_DELETED, NOTHING, USAGE, Out
from cni_logger.audit.query import Filter, address_test
from cni_logger.audit.reader import Scan
from cni_logger.audit.record import Record
from cni_logger.audit.timeparse import from_epoch, to_epoch
from cni_logger.filesink import DEFAULT_LOG_FILE


class Session:
    """One command run: its name, the scan over the trails it was given, and the problems met."""

    def __init__(self, name: str, args: argparse.Namespace) -> None:
        self.name = name
        self.args = args
        trails, problems = sources.resolve(args.log_file or [DEFAULT_LOG_FILE])
        for problem in problems:
            output.error(name, problem)
        self.failed = bool(problems)
        progress = output.Progress(sources.total_size(trails)) if sys.stderr.isatty() else None
        self.scan = Scan(trails, progress=progress, warn=lambda message: output.error(name, message))
        self.out = Out()

    @property
    def usable(self) -> bool:
        return bool(self.scan.trails)

    def finish(self, found: bool) -> int:
        """Report what was skipped; the exit status: 2 on errors (like grep), else 0 found / 1 not."""
        if self.scan.progress is not None:
            self.scan.progress.clear()
        self.out.flush()
        if self.scan.skipped:
            output.error(self.name, f"skipped {self.scan.skipped} lines (not events: damaged or foreign)")
        if self.failed:
            return USAGE
        return FOUND if found else NOTHING


def _session(name: str, args: argparse.Namespace, body: Callable[[Session], bool]) -> int:
    def run() -> int:
        session = Session(name, args)
        if not session.usable:
            return USAGE
        return session.finish(body(session))

    return output.guarded(run)


# -- events -----------------------------------------------------------------------------------------


def _filter(args: argparse.Namespace) -> Filter:
    return Filter(container=args.container, pod=args.pod, namespace=args.namespace, network=args.network,
                  commands=frozenset(args.commands), outcome=args.outcome or "", ip=args.ip or "",
                  since=args.since or "", until=args.until or "", use_prefilter=not args.no_prefilter)


def _selected(scan: Scan, query: Filter, lines: Iterator[bytes] | None = None) -> Iterator[Record]:
    """The records ``query`` selects, each decoded (and so checked) in full."""
    prefilter = query.prefilter()
    if lines is None:
        records: Iterator[Record] = scan.records(prefilter, decode=False)
    else:
        records = (r for r in (scan.classify(line, prefilter, decode=False) for line in lines) if r is not None)
    for rec in records:
        if query.matches_head(rec) and scan.confirm(rec) and query.matches_doc(rec):
            yield rec


def _printer(out: Out, args: argparse.Namespace) -> output.EventPrinter:
    return output.EventPrinter(out, as_json=args.json, full_ids=args.no_trunc)


def events(args: argparse.Namespace) -> int:
    def body(session: Session) -> bool:
        printer = _printer(session.out, args)
        found = False
        for rec in _selected(session.scan, _filter(args)):
            printer(rec)
            found = True
        return found

    return _session("events", args, body)


# -- timeline ---------------------------------------------------------------------------------------


def timeline(args: argparse.Namespace) -> int:
    from cni_logger.audit import timeline as tl

    def body(session: Session) -> bool:
        prefilter = tl.prefilter(args.container)
        attachments = tl.collect((r for r in session.scan.records(prefilter) if r.command in tl.COMMANDS),
                                 args.container)
        containers = {a.container_id for a in attachments}
        if len(containers) > 1:
            output.error("timeline", f"{args.container!r} matches {len(containers)} containers; all are shown")
        output.timeline(session.out, attachments, as_json=args.json)
        return bool(attachments)

    return _session("timeline", args, body)


# -- who-had ----------------------------------------------------------------------------------------


def _holder(interval: Interval, **extra: Any) -> dict[str, Any]:
    """What is known of an interval's holder, from its first and last event (decoded, then let go)."""
    records = [interval.opened] + ([interval.closing] if interval.closing is not None else [])
    docs = [rec.doc for rec in records]
    for rec in records:
        rec.forget()  # answers may hold thousands of intervals: keep their lines, not decoded events
    network, container_id, ifname = interval.key
    return {
        **extra, "network": network, "container_id": container_id, "ifname": ifname,
        "pod": next((record.pod(d) for d in docs if record.pod(d)), None),
        "namespace": next((record.namespace(d) for d in docs if record.namespace(d)), None),
        "from": interval.start, "seen": interval.seen, "until": interval.end, "ended_by": interval.closed_by or None,
        "addresses": next((record.addresses(d) for d in docs if record.addresses(d)), []),
    }


def who_had(args: argparse.Namespace) -> int:
    def body(session: Session) -> bool:
        tracker = Tracker(args.ip)
        prefilter = None if args.no_prefilter else tracker.prefilter(address_test(args.ip))
        kept: list[Interval] = []
        for rec in session.scan.records(prefilter):
            for closed in tracker.feed(rec):
                if closed.clock_step:
                    session.scan.warn(f"the clock was stepped back while {closed.key[1]} ({closed.key[2]}) held "
                                      f"the address: {closed.clock_step}; shown from an unknown start to the "
                                      "later time")
                if args.at is None or closed.covers(args.at):
                    kept.append(closed)
        kept += [i for i in tracker.open.values() if args.at is None or i.covers(args.at)]
        kept.sort(key=lambda i: (i.seen, i.key))
        output.holders(session.out, (_holder(i, address=args.ip) for i in kept), as_json=args.json,
                       full_ids=args.no_trunc)
        return bool(kept)

    return _session("who-had", args, body)


# -- leaks ------------------------------------------------------------------------------------------


def _leak(interval: Interval, now: float) -> dict[str, Any]:
    """An attachment never deleted (with its age), or a DEL without ADD (with what it answered)."""
    if not interval.orphan:
        age = now - to_epoch(interval.start or interval.seen)
        return _holder(interval, kind=NEVER_DELETED, age_seconds=round(age, 3))
    leak = _holder(interval, kind=DEL_WITHOUT_ADD, age_seconds=None)
    leak["del_outcome"] = interval.opened.outcome
    cni = interval.opened.doc.get("cni")
    leak["cached_result"] = isinstance(cni, dict) and "prev_result" in cni
    interval.opened.forget()
    return leak


def leaks(args: argparse.Namespace) -> int:
    def body(session: Session) -> bool:
        tracker = Tracker()
        orphans: list[Interval] = []
        for rec in session.scan.records(decode=False):
            for closed in tracker.feed(rec):
                if closed.orphan:
                    orphans.append(closed)
        now = time.time()
        cutoff = from_epoch(now - args.older_than)
        still_open = [i for i in tracker.open.values() if (i.start or i.seen) <= cutoff]
        found = sorted([*still_open, *orphans], key=lambda i: (i.seen, i.key))
        output.leaks(session.out, (_leak(i, now) for i in found), as_json=args.json, full_ids=args.no_trunc)
        return bool(found)

    return _session("leaks", args, body)


# -- stats ------------------------------------------------------------------------------------------


def stats(args: argparse.Namespace) -> int:
    from cni_logger.audit.stats import PERCENTILES, Stats

    def body(session: Session) -> bool:
        query = _filter(args)
        totals = Stats()
        if query.needs_doc:
            for rec in _selected(session.scan, query):
                totals.add(rec.forget())
        else:
            for rec in session.scan.records(query.prefilter(), decode=False):
                if query.matches_head(rec):
                    totals.add(rec)
        output.stats(session.out, totals.to_json(), as_json=args.json, percentiles=PERCENTILES)
        return totals.events > 0

    return _session("stats", args, body)


# -- follow -----------------------------------------------------------------------------------------


def follow(args: argparse.Namespace) -> int:
    from cni_logger.audit import follow as tail

    def run() -> int:
        paths, problems = sources.live_paths(args.log_file or [DEFAULT_LOG_FILE])
        for problem in problems:
            output.error("follow", problem)
        if problems:
            return USAGE
        scan = Scan([])
        query = _filter(args)
        out = Out(flush_each=True)
        printer = _printer(out, args)
        printed = 0
        limit = args.max_events

        def on_line(line: bytes) -> bool:
            nonlocal printed
            for rec in _selected(scan, query, iter([line])):
                printer(rec)
                printed += 1
            return limit is None or printed < limit

        why = tail.follow(paths, on_line, interval=min(max(args.interval, 0.01), 5.0), timeout=args.timeout,
                          from_start=args.from_start, on_drop=scan.count_skipped)
        if scan.skipped:
            output.error("follow", f"skipped {scan.skipped} lines (not events: damaged or foreign)")
        return NOTHING if why == "timeout" and not printed else FOUND

    return output.guarded(run)
