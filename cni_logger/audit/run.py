"""What each audit subcommand does with its parsed arguments: scan, answer, print, exit status."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

from cni_logger.audit import output, record, sources
from cni_logger.audit.intervals import Interval, Tracker
from cni_logger.audit.output import FOUND, NOTHING, USAGE, Out, Table, milliseconds
from cni_logger.audit.query import Filter, address_spellings
from cni_logger.audit.reader import Scan
from cni_logger.audit.record import Record
from cni_logger.audit.timeparse import from_epoch, human_duration, short, to_epoch
from cni_logger.filesink import DEFAULT_LOG_FILE

SHORT_ID = 12


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


def _container(cid: str, args: argparse.Namespace) -> str:
    return cid if getattr(args, "no_trunc", False) else cid[:SHORT_ID]


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


EVENT_COLUMNS = (("TIME", 24), ("COMMAND", 7), ("OUTCOME", 7), ("MS", 7), ("NETWORK", 18), ("IFNAME", 6),
                 ("CONTAINER", 12), ("POD", 24), ("ADDRESSES", 0))


class EventPrinter:
    """Events as table rows, or as their original lines (``--json``)."""

    def __init__(self, out: Out, args: argparse.Namespace) -> None:
        self.out = out
        self.args = args
        self.table: Table | None = None

    def __call__(self, rec: Record) -> None:
        if self.args.json:
            self.out.raw(rec.line + b"\n")
            return
        if self.table is None:
            self.table = Table(self.out, EVENT_COLUMNS)
        doc = rec.doc
        self.table.row([short(rec.timestamp) or "-", rec.command or "-", rec.outcome or "-",
                        milliseconds(rec.duration), rec.network or "-", rec.ifname or "-",
                        _container(rec.container_id, self.args) or "-", record.pod_label(doc) or "-",
                        ",".join(record.addresses(doc)) or "-"])


def events(args: argparse.Namespace) -> int:
    def body(session: Session) -> bool:
        printer = EventPrinter(session.out, args)
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
        out = session.out
        for number, attachment in enumerate(attachments):
            if args.json:
                out.text(json.dumps(attachment.to_json(), ensure_ascii=False, separators=(",", ":")))
                continue
            if number:
                out.text("")
            pod = f"{attachment.namespace}/{attachment.pod}" if attachment.namespace else attachment.pod
            out.text(f"container {attachment.container_id}  network {attachment.network or '-'}  "
                     f"ifname {attachment.ifname or '-'}" + (f"  pod {pod}" if pod else ""))
            table = Table(out, (("TIME", 24), ("COMMAND", 7), ("OUTCOME", 7), ("MS", 7), ("ADDRESSES", 18),
                                ("INTERFACES", 0)), indent="  ")
            for step in attachment.steps:
                interfaces = " ".join(f"{i.get('name', '?')}={i.get('mac', '?')}" + ("(ctr)" if i.get("sandbox")
                                                                                       else "")
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
        return bool(attachments)

    return _session("timeline", args, body)


# -- who-had ----------------------------------------------------------------------------------------


def _interval_json(interval: Interval, **extra: Any) -> dict[str, Any]:
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


def _since_text(interval: Interval) -> str:
    return short(interval.start) if interval.start else f"<={short(interval.seen)}"


def who_had(args: argparse.Namespace) -> int:
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
        _print_holders(session.out, args, kept)
        return bool(kept)

    return _session("who-had", args, body)


def _print_holders(out: Out, args: argparse.Namespace, holders: list[Interval]) -> None:
    if args.json:
        for interval in holders:
            out.text(json.dumps(_interval_json(interval, address=args.ip), ensure_ascii=False,
                                separators=(",", ":")))
        return
    table = Table(out, (("FROM", 26), ("UNTIL", 24), ("NETWORK", 18), ("IFNAME", 6), ("CONTAINER", 12),
                        ("POD", 24), ("ENDED BY", 0)))
    for interval in holders:
        info = _interval_json(interval)
        pod = f"{info['namespace']}/{info['pod']}" if info["namespace"] and info["pod"] else info["pod"]
        table.row([_since_text(interval), short(interval.end) if interval.end else "(still held)",
                   info["network"] or "-", info["ifname"] or "-", _container(info["container_id"], args), pod or "-",
                   interval.closed_by or "-"])


# -- leaks ------------------------------------------------------------------------------------------


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
        _print_leaks(session.out, args, found, now)
        return bool(found)

    return _session("leaks", args, body)


def _print_leaks(out: Out, args: argparse.Namespace, found: list[Interval], now: float) -> None:
    table = None if args.json else Table(out, (
        ("KIND", 15), ("SINCE", 26), ("AGE", 8), ("NETWORK", 18), ("IFNAME", 6), ("CONTAINER", 12), ("POD", 24),
        ("ADDRESSES", 0)))
    for interval in found:
        kind = "del-without-add" if interval.orphan else "never-deleted"
        age = None if interval.orphan else now - to_epoch(interval.start or interval.seen)
        info = _interval_json(interval, kind=kind, age_seconds=None if age is None else round(age, 3))
        if interval.orphan:
            info["del_outcome"] = interval.opened.outcome
            cni = interval.opened.doc.get("cni")
            info["cached_result"] = isinstance(cni, dict) and "prev_result" in cni
            interval.opened.forget()
        if table is None:
            out.text(json.dumps(info, ensure_ascii=False, separators=(",", ":")))
            continue
        pod = f"{info['namespace']}/{info['pod']}" if info["namespace"] and info["pod"] else info["pod"]
        since = short(interval.seen) if interval.orphan else _since_text(interval)
        table.row([kind, since, "-" if age is None else human_duration(age), info["network"] or "-",
                   info["ifname"] or "-", _container(info["container_id"], args), pod or "-",
                   ",".join(info["addresses"]) or "-"])


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
        report = totals.to_json()
        out = session.out
        if args.json:
            out.text(json.dumps(report, ensure_ascii=False, separators=(",", ":")))
            return totals.events > 0
        span = f"  ({short(report['first'])} .. {short(report['last'])})" if report["first"] else ""
        out.text(f"events: {totals.events}{span}")
        for title, key in (("command", "commands"), ("outcome", "outcomes"), ("network", "networks")):
            out.text("")
            table = Table(out, ((title.upper(), 24), ("EVENTS", 0)))
            for name, count in report[key].items():
                table.row([name, str(count)])
        out.text("")
        table = Table(out, (("LATENCY (ms)", 14), ("COUNT", 8), *((f"P{p}", 9) for p in PERCENTILES),
                            ("MAX", 9), ("MEAN", 0)))
        for name, summary in report["latency_ms"].items():
            if summary["count"]:
                table.row([name, str(summary["count"]), *(f"{summary[f'p{p}']:.1f}" for p in PERCENTILES),
                           f"{summary['max']:.1f}", f"{summary['mean']:.1f}"])
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
        printer = EventPrinter(out, args)
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
