"""What each audit subcommand does with its parsed arguments: scan, answer, exit status.

Each question computes its answer here and hands it to ``output``, which prints it (a table, or
JSON lines with ``--json``); the exit status follows ``grep``'s conventions (``Session.finish``),
extended so that an answer the trail cannot fully vouch for says so in its status too:

    0 found (every answer certain; a      1 nothing found, and the trail covers the question
      proven conflict is certain too)
    2 usage error or unreadable input    3 a qualified answer (possibly X, an unknown start or end,
                                           others possibly unseen), or --strict with anything
                                           damaged, skipped or missing in the input
    4 no evidence: nothing found, but the trail cannot cover the question (before it, or events
      may be lost between the question and the last evidence before it: a damaged stretch, a
      possible gap, the logger out of a chain or unable to write; or, for an address no event
      names, before the trail's oldest inventory)

What the scan found wanting (``reader.Scan.evidence``) is reported on stderr, stretch by stretch, and so
are the outages its coverage events record (``coverage``).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

from cni_logger.audit import output, record, sources
from cni_logger.audit.alive import RESULTS_CACHE, RUNNING, UNKNOWN, Liveness, netns_of
from cni_logger.audit.attempts import HINT, Attempts, Failed, failures
from cni_logger.audit.evidence import Evidence
from cni_logger.audit.formats import plural
from cni_logger.audit.intervals import HELD, Interval, Tracker, doubtful, qualifications
from cni_logger.audit.output import (
    CLEANUP_DEL,
    DEL_WITHOUT_ADD,
    FAILED_ATTEMPT,
    FOUND,
    NEVER_DELETED,
    NO_EVIDENCE,
    NO_OUTCOME,
    NOTHING,
    POSSIBLY_DELETED,
    QUALIFIED,
    SUPERSEDED,
    UNRECORDED_DEL,
    USAGE,
    Out,
)
from cni_logger.audit.query import Filter, address_test, on_host
from cni_logger.audit.reader import Scan
from cni_logger.audit.record import Record
from cni_logger.audit.timeparse import from_epoch, spoken, to_epoch
from cni_logger.filesink import DEFAULT_LOG_FILE

T = TypeVar("T")
EVIDENT_ENDS = frozenset({"DEL", "superseded", "inventory"})
"""How an interval ends at a moment when the trail shows who held its address (``_last_evidence``)."""
SHOWN_STRETCHES = 20
"""Stretches described one per line on stderr; past that, a count (``stats --json`` lists them all)."""


class Session:
    """One command run: its name, the scan over the trails it was given, and the problems met."""

    def __init__(self, name: str, args: argparse.Namespace) -> None:
        self.name = name
        self.args = args
        trails, problems = sources.resolve(args.log_file or [DEFAULT_LOG_FILE],
                                           warn=lambda message: output.error(name, message))
        for problem in problems:
            output.error(name, problem)
        self.failed = bool(problems)
        progress = output.Progress(sources.total_size(trails)) if sys.stderr.isatty() else None
        self.scan = Scan(trails, progress=progress, warn=lambda message: output.error(name, message))
        self.out = Out(headers=not getattr(args, "no_headers", False))
        self.limit: int | None = getattr(args, "limit", None)
        self.shown = self.total = 0
        self.noun = ""
        """``--limit``: answers printed and found, and what they are (``limited``)."""
        self.cut = ""
        """``--limit`` on ``stats`` and ``report``, whose tables and lists each keep their first N rows: what was left
        out, said on stderr by ``finish`` ("": nothing)."""
        self.nothing: str | None = "no events match"
        self.verb = "searched"
        """What an empty answer (nothing found, status 1) says on stderr, as ``kubectl``'s "No resources found"
        does: stdout stays empty for scripts. ``None``: the question has said it itself."""

    def searched(self, verb: str = "searched") -> str:
        """How much of the trail an empty answer looked through: ``searched 2 events in 1 file``."""
        scan = self.scan
        events = max(scan.lines_read - scan.skipped, 0)
        return f"{verb} {plural(events, 'event')} in {plural(scan.files_read, 'file')}"

    def limited(self, answers: Iterable[T], noun: str) -> Iterator[T]:
        """``--limit N``: the first N answers (across every call), the others counted but not printed, so that the
        exit status and what stderr says about the trail are those of the whole answer; ``finish`` says on stderr
        that the output was limited."""
        self.noun = noun
        for answer in answers:
            self.total += 1
            if self.limit is None or self.shown < self.limit:
                self.shown += 1
                yield answer

    @property
    def usable(self) -> bool:
        return bool(self.scan.trails)

    @property
    def evidence(self) -> Evidence:
        return self.scan.evidence

    def finish(self, found: bool | int) -> int:
        """Report what was skipped, where; the exit status (see the module docstring).

        ``found``: whether the question found something, or the status it settled on itself.
        """
        if self.scan.progress is not None:
            self.scan.progress.clear()
        self.out.flush()
        if self.total > self.shown:
            output.error(self.name, f"output limited to the first {self.shown} of {plural(self.total, self.noun)} "
                                    f"(--limit {self.limit})")
        if self.cut:
            output.error(self.name, self.cut)
        report_damage(self.name, self.scan.evidence, self.scan.skipped)
        if self.failed:
            return USAGE
        status = found if isinstance(found, int) and not isinstance(found, bool) else FOUND if found else NOTHING
        if status == NOTHING and self.nothing is not None:
            output.error(self.name, f"{self.nothing} ({self.searched(self.verb)})")
        if getattr(self.args, "strict", False) and status in (FOUND, NOTHING) and (
                self.scan.evidence.incomplete or self.scan.skipped):
            return QUALIFIED
        return status


def report_damage(name: str, found: Evidence, skipped: int) -> None:
    """Each damaged stretch and possible gap (file, lines, time range), each outage, then the totals, on stderr."""
    for stretch in found.stretches[:SHOWN_STRETCHES]:
        output.error(name, stretch.describe())
    outages = found.coverage.outages
    for outage in outages[:SHOWN_STRETCHES]:
        output.error(name, f"outage: {outage.describe()}; events there are not in the trail")
    if len(outages) > SHOWN_STRETCHES:
        more = plural(len(outages) - SHOWN_STRETCHES, "more outage")
        output.error(name, f"... and {more} (stats --json lists them all)")
    if len(found.stretches) > SHOWN_STRETCHES:
        more = plural(len(found.stretches) - SHOWN_STRETCHES, "more stretch", "more stretches")
        output.error(name, f"... and {more} (stats --json lists them all)")
    if skipped:
        output.error(name, f"skipped {plural(skipped, 'line')} (not events: damaged or foreign)")
    if found.duplicates:
        output.error(name, f"ignored {plural(found.duplicates, 'duplicate event')} (an event.id seen before)")


def _session(name: str, args: argparse.Namespace, body: Callable[[Session], bool] | Callable[[Session], int]) -> int:
    def run() -> int:
        session = Session(name, args)
        if not session.usable:
            return USAGE
        return session.finish(body(session))

    return output.guarded(run)


# -- events -----------------------------------------------------------------------------------------


def _on_host(records: Iterator[Record], args: argparse.Namespace) -> Iterator[Record]:
    """The records of the nodes ``--host`` names (all without it): each node's attachments are then told as its
    own trail would tell them."""
    wanted = on_host(getattr(args, "host", "") or "")
    if wanted is None:
        return records
    return (rec for rec in records if wanted(rec))


def _filter(args: argparse.Namespace) -> Filter:
    return Filter(container=args.container, pod=args.pod, namespace=args.namespace, network=args.network,
                  commands=frozenset(args.commands), outcome=args.outcome or "", ip=args.ip or "", host=args.host or "",
                  since=args.since or "", until=args.until or "", use_prefilter=not args.no_prefilter)


def _no_events(args: argparse.Namespace) -> str:
    """What ``events`` and ``stats`` say when nothing matched: with filters, or on an empty trail."""
    filtered = any((args.container, args.pod, args.namespace, args.network, args.commands, args.outcome, args.ip,
                    args.host, args.since, args.until))
    return "no events match" if filtered else "the trail has no events"


def _selected(scan: Scan, query: Filter, lines: Iterator[bytes] | None = None) -> Iterator[Record]:
    """The records ``query`` selects, each decoded (and so checked) in full."""
    prefilter = query.prefilter
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
        session.nothing = _no_events(args)
        printer = _printer(session.out, args)
        for rec in session.limited(_selected(session.scan, _filter(args)), "event"):
            printer(rec)
        return session.total > 0

    return _session("events", args, body)


# -- timeline ---------------------------------------------------------------------------------------


def timeline(args: argparse.Namespace) -> int:
    from cni_logger.audit import timeline as tl

    def body(session: Session) -> bool:
        pod = tl.Pod(args.pod, args.namespace) if args.pod else None
        prefilter = pod.prefilter() if pod is not None else tl.prefilter(args.container)
        # Every record of the chosen nodes, for the periods (``intervals.Tracker``: the rule who-had and leaks
        # follow); the prefilter only chooses the lines summarised as steps.
        attachments = tl.collect(_on_host(session.scan.records(decode=False), args), args.container,
                                 None if pod is None else pod.wants, line_filter=prefilter, evidence=session.evidence)
        containers = {a.container_id for a in attachments}
        if len(containers) > 1 and pod is None:
            output.error("timeline", f"{args.container!r} matches {len(containers)} containers; all are shown")
        output.timeline(session.out, session.limited(attachments, "attachment"), fmt=args.format)
        session.nothing = "no ADD, CHECK or DEL of " + (f"pod {args.pod!r}" if pod is not None else
                                                         f"a container whose id starts with {args.container!r}")
        return bool(attachments)

    return _session("timeline", args, body)


# -- who-had ----------------------------------------------------------------------------------------


def _holder(interval: Interval, found: Evidence | None = None, **extra: Any) -> dict[str, Any]:
    """What is known of an interval's holder, from its first and last event (decoded, then let go), and
    what the trail cannot vouch for (``notes``)."""
    records = [interval.opened] + ([interval.closing] if interval.closing is not None else [])
    docs = [rec.doc for rec in records]
    for rec in records:
        rec.forget()  # answers may hold thousands of intervals: keep their lines, not decoded events
    network, container_id, ifname = interval.key
    holder = {
        **extra, "host": interval.host or next((record.host(d) for d in docs if record.host(d)), None),
        "network": network, "container_id": container_id, "ifname": ifname,
        "pod": next((record.pod(d) for d in docs if record.pod(d)), None),
        "namespace": next((record.namespace(d) for d in docs if record.namespace(d)), None),
        "from": interval.start, "seen": interval.seen, "until": interval.end, "ended_by": interval.closed_by or None,
        "addresses": next((record.addresses(d) for d in docs if record.addresses(d)), []),
    }
    holder.update(qualifications(interval, found))
    return holder


def who_had(args: argparse.Namespace) -> int:
    if "/" in args.ip:
        return _session("who-had", args, lambda session: _who_had_subnet(session, args))

    def body(session: Session) -> int:
        tracker = Tracker(args.ip)
        prefilter = None if args.no_prefilter else tracker.prefilter(address_test(args.ip))
        kept: list[Interval] = []
        for rec in _on_host(session.scan.records(prefilter), args):
            for closed in tracker.feed(rec):
                if closed.clock_step:
                    session.scan.warn(f"the clock was stepped back while {closed.key[1]} ({closed.key[2]}) held "
                                      f"the address: {closed.clock_step}; shown from an unknown start to the "
                                      "later time")
                kept.append(closed)
        kept += tracker.open.values()
        kept.sort(key=lambda i: (i.seen, i.key))
        found = session.evidence
        session.nothing = None if args.at is not None else f"nobody held {args.ip} in the trail"
        if args.at is None:
            rows = [_holder(i, found, address=args.ip) for i in kept]
            status = (QUALIFIED if any(doubtful(row["notes"]) for row in rows) else FOUND) if rows else \
                NO_EVIDENCE if _unseen_anywhere(session.name, args, found) else NOTHING
        elif _in_the_future(session.name, args, found):
            rows, status = [], NO_EVIDENCE
        else:
            certain = [(i, i.certainty(args.at, found)) for i in kept]
            rows = [_holder(i, found, address=args.ip, certainty=c) for i, c in certain if c is not None]
            status = _verdict(session.name, args, rows, found, named=bool(kept),
                              since=_last_evidence(kept, args.at))
        output.holders(session.out, session.limited(rows, "holder"), fmt=args.format, full_ids=args.no_trunc)
        return status

    return _session("who-had", args, body)


def _last_evidence(intervals: list[Interval], at: str) -> str:
    """The latest moment at or before ``at`` when the trail shows who held the address ("": none): a holder's ADD,
    CHECK or DEL, the ADD that superseded one, or a complete inventory that no longer listed it. Not a GC, nor a
    re-ADD of the holder without the address: the holder had let it go by then, but when, and to whom, is
    unknown. After that moment an unseen ADD may have handed the address out, where events may be lost."""
    return max((t for i in intervals for t in (i.seen, i.last_seen, i.end if i.closed_by in EVIDENT_ENDS else None)
                if t is not None and t <= at), default="")


def _in_the_future(name: str, args: argparse.Namespace, found: Evidence) -> bool:
    """``who-had --at`` a time still to come, and later than the trail's last event (a node's clock may be ahead of
    this one's: its events vouch for their times): whoever holds the address at the end of the trail may let it
    go, and the trail cannot vouch for events it does not hold yet. Said on stderr; the answer is no evidence."""
    now = from_epoch(time.time())
    if args.at is None or args.at <= now or (found.end and args.at <= found.end):
        return False
    output.error(name, f"no evidence about {args.ip} at {spoken(args.at)}: it is in the future (now is "
                       f"{spoken(now)}; the trail's last event is at {spoken(found.end) if found.end else 'none'})")
    return True


def _who_had_subnet(session: Session, args: argparse.Namespace) -> int:
    """``who-had CIDR``: every holding of an address in the subnet, as it ends (memory: the open ones only);
    with ``--at``, the holdings then, by address. The verdict follows ``who-had IP``'s rules: a row with
    notes (or, with ``--at``, a possible holder or a conflict) qualifies the answer."""
    from cni_logger.audit.occupancy import Holding, Occupancy, parse_network, sorted_holdings

    found = session.evidence
    session.nothing = None if args.at is not None else f"nobody held {args.ip} in the trail"
    occupancy = Occupancy(parse_network(args.ip), found=found, at=args.at)
    rows = 0
    qualified = False

    def holdings() -> Iterator[Holding]:
        nonlocal rows, qualified
        kept: list[Holding] = []
        for rec in _on_host(session.scan.records(decode=False), args):
            ended = occupancy.feed(rec)
            if ended:
                if args.at is None:
                    rows += len(ended)
                    qualified = qualified or any(doubtful(h.notes) for h in ended)
                    yield from ended
                else:
                    kept += [h for h in ended if h.certainty is not None]
        parked, still = occupancy.finish()
        last = parked + still if args.at is None else \
            sorted_holdings(kept + [h for h in parked + still if h.certainty is not None])
        rows += len(last)
        qualified = qualified or any(doubtful(h.notes) for h in last)
        yield from last

    if args.at is not None:  # the holders then: few, and all known only at the end of the trail
        answers = [h.to_json() for h in holdings()]
        if _in_the_future(session.name, args, found):
            return NO_EVIDENCE
        output.holders(session.out, session.limited(answers, "holding"), fmt=args.format, full_ids=args.no_trunc,
                       subnet=True)
        return _verdict(session.name, args, answers, found)
    output.holders(session.out, session.limited((h.to_json() for h in holdings()), "holding"), fmt=args.format,
                   full_ids=args.no_trunc, subnet=True)
    if rows:
        return QUALIFIED if qualified else FOUND
    return NO_EVIDENCE if _unseen_anywhere(session.name, args, found) else NOTHING


def _unseen_anywhere(name: str, args: argparse.Namespace, found: Evidence) -> bool:
    """``who-had`` without ``--at`` found nobody: can the trail say so (``False``), or may holders be missing from
    it (no event at all, a stretch where events may be lost, an outage: said on stderr)?"""
    if not found.start:  # an empty file, an export with nothing in it: it covers no time at all
        output.error(name, f"no evidence about {args.ip}: the trail has no events")
        return True
    if found.coverage.outages:
        output.error(name, f"no evidence about {args.ip} while the logger was out of a chain (see the outages)")
        return True
    if any(s.lost for s in found.stretches):
        output.error(name, f"no evidence about {args.ip}: nobody is seen holding it, but events may be lost in the "
                           "stretches listed")
        return True
    return False


def _verdict(name: str, args: argparse.Namespace, rows: list[dict[str, Any]], found: Evidence, *,
             named: bool = False, since: str = "") -> int:
    """``who-had --at``: held (0; a proven conflict too), possibly held (3), nobody (1) or no evidence (4).

    ``named``: some event of the trail names the address (``who-had IP``; a subnet's addresses are never all
    named). ``since``: the address's last evidence before ``--at`` (``who-had IP``; "" for a subnet). A holder
    may be missing from the answer where events may be lost after that evidence and before ``--at`` (an ADD in a
    damaged stretch or a possible gap: ``Evidence.lost_between``), while the logger was out of a chain, or, for
    a subnet, before the trail's oldest inventory (``Evidence.unwatched``); then the answer says so and is
    qualified (3), or no evidence (4) when nobody was found. A certain holder of one address is the whole answer:
    an IPAM hands an address to one attachment at a time, so nobody else can have been given it unseen.

    A conflict (two attachments both proven to hold the address then) is a certain answer, and the most
    important one: it is said first, on stderr, and needs no NOTE to be believed."""
    subnet = "/" in args.ip
    if rows:
        if all(row["certainty"] == HELD for row in rows):
            _say_conflicts(name, args, rows)
            why = _unseen(args, found, since, named=False) if subnet else ""
            if not why:
                return FOUND
            output.error(name, f"others may have held addresses of {args.ip} at {args.at} unseen: {why}")
            return QUALIFIED
        output.error(name, f"{args.ip} at {args.at}: the trail cannot tell for certain (see NOTE)")
        why = _unseen(args, found, since, named)
        if why:  # an attachment whose every event is lost there would not be listed at all
            output.error(name, f"others may have held {args.ip} at {args.at} unseen: {why}")
        return QUALIFIED
    why = _unseen(args, found, since, named)
    if why:
        output.error(name, f"no evidence about {args.ip} at {args.at}: {why}")
        return NO_EVIDENCE
    output.error(name, f"nobody held {args.ip} at {args.at} (the trail covers it: it starts at {found.start}, and "
                       f"its last event is at {found.end})")
    return NOTHING


def _unseen(args: argparse.Namespace, found: Evidence, since: str, named: bool) -> str:
    """Why a holder of the address (of an address of the subnet) at ``--at`` may be missing from the trail ("":
    it cannot)."""
    why = found.uncovered(args.at) or found.unwatched(args.at, named)
    if why:
        return why
    stretch = found.lost_between(since, args.at)
    if stretch is None:
        return ""
    after = f"after its last event ({since})" if since else "before it"
    return f"an ADD may be lost {after}, in a {stretch.kind} stretch: {stretch.describe()}"


def _say_conflicts(name: str, args: argparse.Namespace, rows: list[dict[str, Any]]) -> None:
    """Each address held by several attachments at once at ``--at``, all of them proven: one line each."""
    together: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for row in rows:  # one address of one network on one host (rows name their host once they carry one)
        together.setdefault((row["network"], row.get("host") or "", row["address"]), []).append(row)
    for (network, _, address), holding in together.items():
        if len(holding) > 1 and any(row["conflict"] for row in holding):
            names = ", ".join(f"{output.container(row['container_id'], args.no_trunc)} "
                              f"({output.pod_label(row['namespace'], row['pod']) or row['ifname']})" for row in holding)
            output.error(name, f"conflict: {address} was held by {len(holding)} attachments at once at {args.at} "
                               f"on {network or 'its network'}: {names}")


# -- leaks ------------------------------------------------------------------------------------------


def _leak(interval: Interval, now: float, found: Evidence, liveness: Liveness | None = None) -> dict[str, Any]:
    """An attachment never deleted (with its age), a DEL without ADD (with what it answered), or one of the
    look-alikes listed apart: a superseded attachment (its DEL lost) and the clean-up DEL of a failed ADD.

    ``state`` (``alive``): of an attachment still open, whether it is running or leaked, as far as this node can
    look (``liveness``); ``None`` for the other kinds."""
    if interval.superseded_by is not None:
        return _stated(_holder(interval, found, kind=SUPERSEDED, age_seconds=None))
    if interval.closed_by == "inventory":
        return _stated(_holder(interval, found, kind=UNRECORDED_DEL, age_seconds=None))
    if not interval.orphan:
        age = now - to_epoch(interval.start or interval.seen)
        kind = POSSIBLY_DELETED if interval.end is None and found.coverage.outages and \
            interval.unwatched(found, None) is not None else NEVER_DELETED
        state = ("", "")
        if interval.end is None and liveness is not None:
            network, container_id, ifname = interval.key
            state = liveness.state(interval.host, network, container_id, ifname, netns_of(interval.opened.doc),
                                   interval.seen)
        return _stated(_holder(interval, found, kind=kind, age_seconds=round(age, 3)), *state)
    cached = record.cached_result(interval.opened.doc)
    leak = _holder(interval, found, kind=DEL_WITHOUT_ADD if cached else CLEANUP_DEL, age_seconds=None)
    leak["del_outcome"] = interval.opened.outcome
    leak["cached_result"] = cached
    if not cached:
        leak["notes"] = ["no ADD and no cached result: the runtime's clean-up after an ADD that failed before "
                         "the logger ran (or its ADD is not in the trail and its cache was lost)"]
    interval.opened.forget()
    return _stated(leak)


def _stated(row: dict[str, Any], state: str = "", why: str = "") -> dict[str, Any]:
    """Every leaks row has ``state`` and ``state_reason`` (CSV's columns are the first row's keys)."""
    row["state"], row["state_reason"] = state or None, why or None
    return row


def _attempt_leak(failed: Failed, kind: str, now: float) -> dict[str, Any]:
    """Bracket mode: a failed attempt with the DEL that cleaned up, or an attempt with no outcome at all."""
    age = None if kind == FAILED_ATTEMPT else round(now - to_epoch(failed.attempt.timestamp), 3)
    return _stated(failed.to_json(kind=kind, age_seconds=age))


def leaks(args: argparse.Namespace) -> int:
    def body(session: Session) -> int:
        tracker = Tracker()
        pairing = Attempts(infer=False)  # clean-up DELs: the tracker's DELs without ADD
        orphans: list[Interval] = []
        superseded: list[Interval] = []
        unrecorded: list[Interval] = []
        failures: list[Failed] = []
        for rec in _on_host(session.scan.records(decode=False), args):
            pairing.feed(rec)
            concluded = pairing.concluded
            if concluded is not None:
                failures.append(concluded)  # its clean-up DEL is listed with it, not as a DEL without ADD
            for closed in tracker.feed(rec):
                if closed.orphan and not (concluded is not None and closed.closing is concluded.cleanup):
                    orphans.append(closed)
                elif closed.superseded_by is not None:
                    superseded.append(closed)
                elif closed.closed_by == "inventory":
                    unrecorded.append(closed)
        if not session.evidence.start:  # an empty file, an export with nothing in it: it covers no time at all
            session.nothing = None
            output.error("leaks", "no evidence about leaks: the trail has no events")
            return NO_EVIDENCE
        now = time.time()
        cutoff = from_epoch(now - args.older_than)
        liveness = Liveness(args.results_cache or RESULTS_CACHE)
        still_open = [i for i in tracker.open.values() if (i.start or i.seen) <= cutoff]
        found = sorted([*still_open, *orphans], key=lambda i: (i.seen, i.key))
        rows = [(i.seen, _leak(i, now, session.evidence, liveness)) for i in found]
        rows += [(f.attempt.timestamp, _attempt_leak(f, NO_OUTCOME, now)) for f in pairing.unresolved()
                 if f.attempt.timestamp <= cutoff]
        rows.sort(key=lambda pair: pair[0])
        for warning in liveness.warnings():
            output.error("leaks", warning)
        real = [row for _, row in rows if row["kind"] not in (CLEANUP_DEL, POSSIBLY_DELETED) and
                row["state"] != RUNNING]
        older = f" added at least {args.older_than:g}s ago" if args.older_than else ""
        session.nothing = f"no leaks: every ADD{older} has its DEL and every DEL its ADD"
        running = liveness.counts.get(RUNNING, 0)
        if running == 1:
            session.nothing = ("no leaks: 1 attachment still open is running (its network namespace and libcni's "
                               "cached result are still there)")
        elif running:
            session.nothing = (f"no leaks: {running} attachments still open are running (their network namespaces "
                               "and libcni's cached results are still there)")
        # Listed apart, as not leaks: attachments still running (this node sees their network namespace and
        # cached result), clean-up DELs after an ADD that failed before the logger, holders whose address another
        # attachment was given (their DEL was lost), attachments still open that may have been deleted while the
        # logger was out of their chain, ones a complete inventory no longer listed (their DEL not recorded), and
        # bracket mode's failed attempts with the DEL that cleaned up after them.
        listed = {id(row) for row in real}
        apart = [row for _, row in rows if id(row) not in listed]
        apart += [_leak(i, now, session.evidence) for i in superseded if not i.conflict or i.end is None]
        apart += [_leak(i, now, session.evidence) for i in unrecorded]
        apart += [_attempt_leak(f, FAILED_ATTEMPT, now) for f in failures]
        if apart:
            session.nothing += f"; {plural(len(apart), 'row')} listed apart, not leaks"
        if args.format != "table":  # one stream of rows: ``kind`` and ``state`` tell them apart
            output.leaks(session.out, session.limited(real + apart, "row"), fmt=args.format, full_ids=args.no_trunc)
            return _leaks_status(real)
        output.leaks(session.out, session.limited(real, "row"), fmt=args.format, full_ids=args.no_trunc)
        shown = list(session.limited(apart, "row"))  # counted for --limit's message even when none is shown
        if shown:
            if real:
                session.out.text("")
            session.out.text(output.apart_heading(apart))
            output.leaks(session.out, shown, fmt=args.format, full_ids=args.no_trunc)
        return _leaks_status(real)

    return _session("leaks", args, body)


def _leaks_status(real: list[dict[str, Any]]) -> int:
    """0 when a leak is certain (an attachment this node saw leaked, a DEL without ADD, an attempt without outcome),
    3 when the only ones listed may be running (``unknown``: another node's, or the node could not look), 1 when
    there is none (attachments still running are not leaks). A trail without any event is no evidence (4, as
    ``who-had`` answers there): it covers no time, so "no leaks" would be an answer it cannot vouch for."""
    if any(row["state"] != UNKNOWN for row in real):
        return FOUND
    if real:
        output.error("leaks", f"{plural(len(real), 'attachment')} still open, running or leaked: this node cannot "
                              "tell (see STATE)")
        return QUALIFIED
    return NOTHING


# -- stats ------------------------------------------------------------------------------------------


def stats(args: argparse.Namespace) -> int:
    from cni_logger.audit.stats import PERCENTILES, Stats

    def body(session: Session) -> bool:
        query = _filter(args)
        session.nothing = _no_events(args)
        totals = Stats()
        pairing = Attempts()  # bracket mode: attempt entries' events are counted there, not as invocations
        coverage: dict[str, int] = {}  # coverage events, by action: counted apart, never as invocations
        if query.needs_doc:
            for rec in _selected(session.scan, query):
                if rec.coverage:
                    coverage[rec.coverage] = coverage.get(rec.coverage, 0) + 1
                    pairing.feed(rec)  # an inventory's attachment is evidence, as a CHECK is
                elif not pairing.feed(rec):
                    totals.add(rec)
                rec.forget()
        else:
            records = session.scan.records(query.prefilter, decode=False)
            for rec in records if query.every_head else filter(query.matches_head, records):
                if rec.coverage:
                    coverage[rec.coverage] = coverage.get(rec.coverage, 0) + 1
                    pairing.feed(rec)
                elif not pairing.feed(rec):
                    totals.add(rec)
        summary = totals.to_json()
        summary["evidence"] = session.evidence.to_json()
        seen = session.evidence.coverage.to_json()
        summary["coverage"] = {"events": sum(coverage.values()), "actions": coverage,
                               "outages": seen["outages"]["listed"], "dropped_events": seen["dropped"]["events"],
                               "inventories": seen["inventories"]["count"], "heartbeats": seen["heartbeats"]}
        if pairing.events:
            summary["attempts"] = pairing.to_json()
        summary["failed"] = failures(totals.by_outcome(), pairing)
        if session.limit is not None:
            session.cut = _top_counts(summary, session.limit)
        output.stats(session.out, summary, fmt=args.format, percentiles=PERCENTILES)
        if totals.events and not pairing.events:
            output.error("stats", HINT)  # only the inference: failed ADDs may be missing, failed CHECKs are
        return totals.events + pairing.events + sum(coverage.values()) > 0

    return _session("stats", args, body)


def _top_counts(summary: dict[str, Any], limit: int) -> str:
    """``stats --limit N``: each count table (per command, outcome, network; largest first) keeps its first N rows,
    in every format; what was left out, for stderr ("": nothing). The totals and the latency stay whole."""
    left: list[str] = []
    for key, noun in (("commands", "command"), ("outcomes", "outcome"), ("networks", "network")):
        counts: dict[str, int] = summary[key]
        if len(counts) > limit:
            left.append(plural(len(counts) - limit, noun))
            summary[key] = dict(list(counts.items())[:limit])
    if not left:
        return ""
    return f"output limited to the first {limit} rows of each table (--limit {limit}): {', '.join(left)} not shown"


# -- report ---------------------------------------------------------------------------------------


def report(args: argparse.Namespace) -> int:
    from cni_logger.audit import report as summary
    from cni_logger.audit.stats import PERCENTILES

    if args.html:
        from cni_logger.audit import page

        why = page.problem(args.html)
        if why:
            output.error("report", why)
            return USAGE

    def body(session: Session) -> int:
        window = summary.Window(args.since or "", args.until or "")
        session.nothing, session.verb = ("no events in the window" if args.since or args.until else
                                         "the trail has no events"), "read"
        liveness = Liveness(args.results_cache or RESULTS_CACHE)
        built = summary.build(session.scan, window, gap_seconds=args.gap, max_bars=args.max_bars,
                              max_addresses=args.max_addresses, liveness=liveness, host=args.host or "",
                              list_limit=session.limit or summary.LIST_LIMIT)
        for warning in liveness.warnings():
            output.error("report", warning)
        data = built.to_json()
        if session.limit is not None:
            session.cut = summary.unlisted(data, session.limit)
        if args.html:
            try:
                page.write(args.html, built, data)
            except OSError as exc:
                output.error("report", f"cannot write the page to {args.html}: {exc.strerror or exc}")
                return USAGE
        if args.format == "json":
            session.out.json(data)
        elif args.format == "table":
            output.report(session.out, data, percentiles=PERCENTILES, html=args.html)
        else:
            output.report_counts(session.out, data, fmt=args.format)
        return FOUND if built.events_read > 0 else NOTHING

    return _session("report", args, body)


# -- follow -----------------------------------------------------------------------------------------


def follow(args: argparse.Namespace) -> int:
    from cni_logger.audit import follow as tail

    def run() -> int:
        if "-" in (args.log_file or []):
            output.error("follow", "follow reads node files as they grow; standard input (an export) cannot be "
                                   "followed: give it to events, who-had, leaks, timeline, stats or report")
            return USAGE
        paths, problems = sources.live_paths(args.log_file or [DEFAULT_LOG_FILE])
        for problem in problems:
            output.error("follow", problem)
        if problems:
            return USAGE
        scan = Scan([])
        query = _filter(args)
        out = Out(flush_each=True, headers=not args.no_headers)
        printer = _printer(out, args)
        printed = 0
        limit = args.max_events or args.limit  # --limit: the same, for follow

        def on_line(line: bytes) -> bool:
            nonlocal printed
            for rec in _selected(scan, query, iter([line])):
                if rec.event_id and scan.duplicate(rec):
                    continue  # the sink wrote it again to the live file (its first file was gone): printed once
                printer(rec)
                printed += 1
            return limit is None or printed < limit

        why = tail.follow(paths, on_line, interval=min(max(args.interval, 0.01), 5.0), timeout=args.timeout,
                          from_start=args.from_start, on_drop=scan.count_skipped)
        if scan.skipped:
            output.error("follow", f"skipped {plural(scan.skipped, 'line')} (not events: damaged or foreign)")
        if why == "timeout" and not printed:
            wanted = "events match" if _no_events(args) == "no events match" else "new events"
            output.error("follow", f"no {wanted} in {args.timeout:g}s")
        if args.strict and scan.skipped:
            return QUALIFIED
        return NOTHING if why == "timeout" and not printed else FOUND

    return output.guarded(run)
