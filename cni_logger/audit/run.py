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
from cni_logger.audit.attempts import Attempts, Failed
from cni_logger.audit.intervals import Interval, Tracker
from cni_logger.audit.output import (
    DEL_WITHOUT_ADD,
    FAILED_ATTEMPT,
    FOUND,
    NEVER_DELETED,
    NO_OUTCOME,
    NOTHING,
    USAGE,
    Out,
)
from cni_logger.audit.query import Filter, address_spellings
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
    return output.EventPrinter(out, fmt=args.format, full_ids=args.no_trunc)


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
        pod = tl.Pod(args.pod) if args.pod else None
        prefilter = pod.prefilter() if pod is not None else tl.prefilter(args.container)
        attachments = tl.collect((r for r in session.scan.records(prefilter) if r.command in tl.COMMANDS),
                                 args.container, None if pod is None else pod.wants)
        containers = {a.container_id for a in attachments}
        if len(containers) > 1 and pod is None:
            output.error("timeline", f"{args.container!r} matches {len(containers)} containers; all are shown")
        output.timeline(session.out, attachments, fmt=args.format)
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
    if "/" in args.ip:
        return _session("who-had", args, lambda session: _who_had_subnet(session, args))

    def body(session: Session) -> bool:
        tracker = Tracker(args.ip)
        prefilter = None if args.no_prefilter else tracker.prefilter(address_spellings(args.ip))
        kept: list[Interval] = []
        for rec in session.scan.records(prefilter):
            for closed in tracker.feed(rec):
                if args.at is None or closed.covers(args.at):
                    kept.append(closed)
        kept += [i for i in tracker.open.values() if args.at is None or i.covers(args.at)]
        kept.sort(key=lambda i: (i.seen, i.key))
        output.holders(session.out, (_holder(i, address=args.ip) for i in kept), fmt=args.format,
                       full_ids=args.no_trunc)
        return bool(kept)

    return _session("who-had", args, body)


def _who_had_subnet(session: Session, args: argparse.Namespace) -> bool:
    """``who-had CIDR``: every holding of an address in the subnet, as it ends (memory: the open ones only);
    with ``--at``, the holdings then, by address."""
    from cni_logger.audit.occupancy import Holding, Occupancy, parse_network, sorted_holdings

    occupancy = Occupancy(parse_network(args.ip))
    found = 0

    def holdings() -> Iterator[Holding]:
        nonlocal found
        kept: list[Holding] = []
        for rec in session.scan.records(decode=False):
            ended = occupancy.feed(rec)
            if ended:
                if args.at is None:
                    found += len(ended)
                    yield from ended
                else:
                    kept += [h for h in ended if h.covers(args.at)]
        still = occupancy.still_held()
        last = still if args.at is None else sorted_holdings(kept + [h for h in still if h.covers(args.at)])
        found += len(last)
        yield from last

    output.holders(session.out, (h.to_json() for h in holdings()), fmt=args.format, full_ids=args.no_trunc,
                   subnet=True)
    return found > 0


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


def _attempt_leak(failed: Failed, kind: str, now: float) -> dict[str, Any]:
    """Bracket mode: a failed attempt with the DEL that cleaned up, or an attempt with no outcome at all."""
    age = None if kind == FAILED_ATTEMPT else round(now - to_epoch(failed.attempt.timestamp), 3)
    return failed.to_json(kind=kind, age_seconds=age)


def leaks(args: argparse.Namespace) -> int:
    def body(session: Session) -> bool:
        tracker = Tracker()
        pairing = Attempts()
        orphans: list[Interval] = []
        failures: list[Failed] = []
        for rec in session.scan.records(decode=False):
            pairing.feed(rec)
            concluded = pairing.concluded
            if concluded is not None:
                failures.append(concluded)  # its clean-up DEL is listed with it, not as a DEL without ADD
            for closed in tracker.feed(rec):
                if closed.orphan and not (concluded is not None and closed.closing is concluded.cleanup):
                    orphans.append(closed)
        now = time.time()
        cutoff = from_epoch(now - args.older_than)
        still_open = [i for i in tracker.open.values() if (i.start or i.seen) <= cutoff]
        found = sorted([*still_open, *orphans], key=lambda i: (i.seen, i.key))
        answers = [(i.seen, _leak(i, now)) for i in found]
        answers += [(f.attempt.timestamp, _attempt_leak(f, FAILED_ATTEMPT, now)) for f in failures]
        answers += [(f.attempt.timestamp, _attempt_leak(f, NO_OUTCOME, now)) for f in pairing.unresolved()
                    if f.attempt.timestamp <= cutoff]
        answers.sort(key=lambda pair: pair[0])
        output.leaks(session.out, (a for _, a in answers), fmt=args.format, full_ids=args.no_trunc)
        return bool(answers)

    return _session("leaks", args, body)


# -- stats ------------------------------------------------------------------------------------------


def stats(args: argparse.Namespace) -> int:
    from cni_logger.audit.stats import PERCENTILES, Stats

    def body(session: Session) -> bool:
        query = _filter(args)
        totals = Stats()
        pairing = Attempts()  # bracket mode: attempt entries' events are counted there, not as invocations
        if query.needs_doc:
            for rec in _selected(session.scan, query):
                if not pairing.feed(rec):
                    totals.add(rec)
                rec.forget()
        else:
            for rec in session.scan.records(query.prefilter(), decode=False):
                if query.matches_head(rec) and not pairing.feed(rec):
                    totals.add(rec)
        answer = totals.to_json()
        if pairing.events:
            answer["attempts"] = pairing.to_json()
        output.stats(session.out, answer, fmt=args.format, percentiles=PERCENTILES)
        return totals.events + pairing.events > 0

    return _session("stats", args, body)


# -- report ---------------------------------------------------------------------------------------


def report(args: argparse.Namespace) -> int:
    from cni_logger.audit import report as summary
    from cni_logger.audit.stats import PERCENTILES

    def body(session: Session) -> bool:
        window = summary.Window(args.since or "", args.until or "")
        built = summary.build(session.scan, window, gap_seconds=args.gap, max_bars=args.max_bars,
                              max_addresses=args.max_addresses)
        data = built.to_json()
        if args.html:
            from cni_logger.audit import page

            page.write(args.html, built, data)
        if args.json:
            session.out.json(data)
        else:
            output.report(session.out, data, percentiles=PERCENTILES, html=args.html)
        return built.events_read > 0

    return _session("report", args, body)


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
