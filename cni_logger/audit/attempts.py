"""Bracket mode (``install --bracket``): each attempt paired with its outcome, and failed attempts found.

A bracketed chain has a logger entry first (``"role": "attempt"``) and last (``"role": "outcome"``).
On ADD the runtime runs the list in order, so the attempt entry records every ADD that *starts*, and
the outcome entry only the ones that got through every plugin in between: an ADD that failed earlier
in the chain (host-local out of addresses, a bridge that cannot be created) leaves an attempt without
an outcome. On DEL the runtime runs the list in reverse: the outcome entry records first, the attempt
entry last, so both DELs are in the trail.

Pairing is by attachment, (network, container id, interface), in trail order. An attempt ADD is
pending until, for the same attachment:

* a successful ADD by another entry (the outcome): the attempt **succeeded**; the chain's latency is
  the time from the attempt's start to the outcome's start (every plugin in between, and the attempt
  entry itself);
* a failed ADD by another entry (the outcome entry itself failed, e.g. strict audit), a DEL (the
  runtime cleaning up after the failure; the first of the two DELs concludes it, the second finds
  nothing pending), or another attempt (the runtime tried again): the attempt **failed**; a DEL that
  concluded it is its *clean-up*;
* nothing before the trail ends: **no outcome** (yet): an ADD still running, or a failure the runtime
  never cleaned up (cnitool, for one, sends no DEL after a failed ADD).

An attempt entry's own failure (strict audit with an unwritable log) stops the chain at once: that
attempt failed, concluded by itself. Events of the attempt entry are not attachments:
``Record.attempt`` tells the interval tracker (who-had, leaks, occupancy) and ``stats`` to leave them
out, so a bracketed trail answers those questions exactly as a trail with the logger last only.

CHECK is paired the same way: the runtime runs the list in order, so an attempt CHECK with no outcome CHECK after
it (before any other event of its attachment, or the trail's end) is a CHECK that failed earlier in the chain.

With the logger last only, a failure earlier in the chain leaves no event at all. What remains of a failed ADD is
the runtime's clean-up: a DEL with no ADD (nor any evidence of the attachment) before it and no cached result
(libcni caches a result only after an ADD succeeded). ``Attempts`` infers those failed ADDs too (``inferred``,
``cleanup``), by the rule ``intervals.Tracker`` gives its "DEL without ADD" (a repeated DEL, or a DEL after a
failed ADD the logger recorded, is none), so ``stats``, ``leaks`` and ``timeline`` count the same ones. A failed
CHECK leaves nothing to infer from: only bracket mode shows it (``HINT``).

Reading the role costs almost nothing: the plugin writes ``cni.role`` right after ``cni.ifname``, so
``record.head_from_line`` reads it with the head it slices (``head_from_doc`` from the decoded event).
"""

from __future__ import annotations

from typing import Any

from cni_logger.audit import record
from cni_logger.audit.coverage import ATTACHMENT
from cni_logger.audit.intervals import RECENT_LIMIT
from cni_logger.audit.record import ATTEMPT, Record
from cni_logger.audit.stats import Histogram
from cni_logger.audit.timeparse import is_canonical, to_epoch

Key = tuple[str, str, str]

HINT = ("with the logger last in the chain, an ADD or CHECK that fails before it leaves no event: failed ADDs are "
        "inferred from the runtime's clean-up DEL (no ADD, no cached result) and failed CHECKs are not seen; "
        "'cni-logger install --bracket' records every attempt")
"""What ``stats`` and ``report`` say when the trail has no attempt entries: only the inference is available."""
CLEANUP_DEL, ATTEMPT_FAILED, ADD_FAILED = "cleanup-del", "attempt-failed", "add-failed"
"""How a failed ADD is known (``how`` in the report's ``failed_adds``): inferred from its clean-up DEL (the logger
last), an attempt without outcome (bracket mode), or an ADD event whose outcome is a failure."""


def _seconds(stamp: str) -> float | None:
    return to_epoch(stamp) if stamp and is_canonical(stamp) else None


class Failed:
    """An attempt whose chain did not complete, and what concluded it."""

    __slots__ = ("attempt", "concluded_by", "ending")

    def __init__(self, attempt: Record, ending: Record | None, concluded_by: str) -> None:
        self.attempt = attempt
        self.ending = ending
        self.concluded_by = concluded_by
        """``DEL`` (a clean-up), ``retry`` (another attempt), ``ADD`` (a failed outcome), ``attempt`` (the
        attempt entry itself failed)."""

    @property
    def key(self) -> Key:
        return self.attempt.key

    @property
    def cleanup(self) -> Record | None:
        """The DEL that cleaned up after this attempt, if that is what concluded it."""
        return self.ending if self.concluded_by == "DEL" else None

    def to_json(self, **extra: Any) -> dict[str, Any]:
        docs = [r.doc for r in (self.attempt, self.ending) if r is not None]
        for rec in (self.attempt, self.ending):
            if rec is not None:
                rec.forget()
        network, container_id, ifname = self.key
        cleanup = self.cleanup
        return {**extra, "host": next((record.host(d) for d in docs if record.host(d)), None),
                "network": network, "container_id": container_id, "ifname": ifname,
                "pod": next((record.pod(d) for d in docs if record.pod(d)), None),
                "namespace": next((record.namespace(d) for d in docs if record.namespace(d)), None),
                "from": self.attempt.timestamp, "seen": self.attempt.timestamp,
                "until": cleanup.timestamp if cleanup is not None else None,
                "ended_by": self.concluded_by, "addresses": []}


class Attempts:
    """Feeds on records in trail order; counts attempts, their outcomes and the chain's latency.

    Memory: the pending attempts only (an attempt line each), which is what is in flight plus the
    failures nobody cleaned up.
    """

    def __init__(self, *, infer: bool = True) -> None:
        self.infer = infer
        """Whether to infer failed ADDs from clean-up DELs (``inferred``, ``cleanup``): a caller that follows the
        attachments itself (``report``, with ``intervals``' DELs without ADD) leaves it to them."""
        self.pending: dict[Key, Record] = {}
        self.events = 0
        """Events written by attempt entries (every command)."""
        self.attempts = 0
        self.succeeded = 0
        self.failed = 0
        self.cleaned_up = 0
        self.latency = Histogram()
        """Attempt start to outcome start, in nanoseconds, of the attempts that succeeded."""
        self.concluded: Failed | None = None
        """The failure the last ``feed`` concluded, if any."""
        self.resolved: Record | None = None
        """The attempt (ADD or CHECK) the last ``feed`` found succeeded, if any."""
        self.pending_checks: dict[Key, Record] = {}
        self.checks = 0
        self.checks_succeeded = 0
        self.checks_failed = 0
        self.failed_check: Record | None = None
        """The CHECK attempt the last ``feed`` concluded failed, if any."""
        self.state: dict[int, int] = {}
        """The logger last: what the trail showed lately of each attachment (by key hash, as the tracker
        keeps them): 0 while it shows the attachment there (a successful ADD or CHECK, a failed DEL, an inventory's
        listing) and no DEL since; once it ended (a DEL, a failed ADD), the number of that end, counting ends. An
        end older than the last ``RECENT_LIMIT`` ends is forgotten, as the tracker forgets it: a DEL then is no
        repeat. One dictionary, one lookup per event: ``stats`` asks it of every event of the trail."""
        self.ends = 0
        self._prune_at = 2 * RECENT_LIMIT
        self.inferred = 0
        """Failed ADDs inferred from their clean-up DEL (no ADD, no cached result), the logger last."""
        self.cleanup: Record | None = None
        """The clean-up DEL the last ``feed`` inferred a failed ADD from, if any."""
        self.outcome_failed: dict[str, int] = {}
        """Failed attempts, by command, whose outcome entry recorded the failure itself (an event that failed)."""
        self._said = False
        """Whether the last ``feed`` set ``concluded``, ``resolved``, ``failed_check`` or ``cleanup``: the next one
        clears them then only."""

    def feed(self, rec: Record) -> bool:
        """Apply one event; whether it was an attempt entry's (not an attachment: callers skip it).

        Most trails have the logger last only: with no attempt in flight there is nothing to pair, and an event is only
        the inference's (``stats`` feeds every event of the trail through here)."""
        if self._said:
            self.concluded = self.resolved = self.failed_check = self.cleanup = None
            self._said = False
        if (rec.attempt or self.pending or self.pending_checks) and self._paired(rec):
            return True
        if not self.infer:
            return False
        # The logger last: what an outcome entry's event says of its attachment, and a clean-up DEL inferred (here,
        # not in a method of its own: one call fewer per event).
        command = rec.command
        if command == "ADD":
            if rec.outcome == "success":
                self.state[hash(rec.key)] = 0
            else:
                self._end(hash(rec.key))  # a failed ADD the logger recorded: its clean-up DEL is no inference
        elif command == "DEL":
            digest = hash(rec.key)
            if self.state.get(digest) != 0:
                self._deleted(rec, digest)
            elif rec.outcome == "success":  # the usual DEL, of an attachment the trail shows (``_end``, inlined)
                self.ends += 1
                self.state[digest] = self.ends
                if len(self.state) > self._prune_at:
                    self._prune()
        elif (command == "CHECK" and rec.outcome == "success") or rec.coverage == ATTACHMENT:
            self.state[hash(rec.key)] = 0
        return False

    def _end(self, digest: int) -> None:
        self.ends += 1
        self.state[digest] = self.ends
        if len(self.state) > self._prune_at:
            self._prune()

    def _prune(self) -> None:
        """Forget the attachments that ended before the last ``RECENT_LIMIT`` ends."""
        oldest = self.ends - RECENT_LIMIT
        self.state = {d: n for d, n in self.state.items() if n == 0 or n > oldest}
        self._prune_at = max(2 * RECENT_LIMIT, 2 * len(self.state))  # amortised: a prune per as many ends

    def _recent(self, digest: int) -> bool:
        """Did the attachment end among the last ``RECENT_LIMIT`` ends?"""
        ended = self.state.get(digest)
        return ended is not None and ended > 0 and ended > self.ends - RECENT_LIMIT

    def _paired(self, rec: Record) -> bool:
        """Bracket mode: an attempt entry's event, or any event while attempts are in flight, paired with what it
        concludes; whether it was an attempt entry's."""
        attempt = rec.attempt
        if attempt:
            self.events += 1
        command = rec.command
        if self.pending_checks or (attempt and command == "CHECK"):
            self._check(rec, attempt, command)
        if command == "ADD":
            key = rec.key
            pending = self.pending.pop(key, None) if self.pending else None  # none pending: the logger last
            if attempt:
                if pending is not None:
                    self._fail(pending, rec, "retry")
                self.attempts += 1
                if rec.ok:
                    self.pending[key] = rec.forget()
                else:
                    self._fail(rec, rec, ATTEMPT)
            else:
                if pending is not None:
                    if rec.ok:
                        self._succeed(pending, rec)
                    else:
                        self._fail(pending, rec, "ADD")
        elif command == "DEL":
            key = rec.key
            pending = self.pending.pop(key, None) if self.pending else None
            if pending is not None:
                self._fail(pending, rec, "DEL")
                self.cleaned_up += 1
        return attempt

    def _deleted(self, rec: Record, digest: int) -> None:
        """A DEL the logger recorded, of an attachment the trail does not show there (``state``): a clean-up after a
        failed ADD when it ended nothing recently (a DEL is retried; a failed ADD the logger recorded has its DEL),
        it carries no cached result and no attempt of this trail explains it (bracket mode: ``concluded``)."""
        if self._recent(digest):
            return
        if not rec.ok:
            self.state[digest] = 0  # a failed DEL: the attachment is there (intervals open one)
            return
        self._end(digest)
        if self.concluded is not None and self.concluded.ending is rec:
            return
        if not record.cached_result(rec.doc):
            self.inferred += 1
            self.cleanup, self._said = rec, True
        rec.forget()

    def _check(self, rec: Record, attempt: bool, command: str) -> None:
        """Bracket mode's CHECK: an attempt pending until its outcome CHECK; anything else of its attachment (or a
        new attempt) first means the chain failed."""
        key = rec.key
        pending = self.pending_checks.pop(key, None)
        if pending is not None:
            if command == "CHECK" and not attempt:
                if rec.ok:
                    self.checks_succeeded += 1
                    self.resolved, self._said = pending, True
                else:
                    self._check_failed(pending)
                    self.outcome_failed["CHECK"] = self.outcome_failed.get("CHECK", 0) + 1
                return
            self._check_failed(pending)
        if attempt and command == "CHECK":
            self.checks += 1
            if rec.ok:
                self.pending_checks[key] = rec.forget()
            else:
                self._check_failed(rec)

    def _check_failed(self, attempt: Record) -> None:
        self.checks_failed += 1
        self.failed_check, self._said = attempt, True

    def _succeed(self, attempt: Record, outcome: Record) -> None:
        self.succeeded += 1
        self.resolved, self._said = attempt, True
        start, end = _seconds(attempt.timestamp), _seconds(outcome.timestamp)
        if start is not None and end is not None:
            self.latency.add(max(round((end - start) * 1e9), 0))

    def _fail(self, attempt: Record, ending: Record, how: str) -> None:
        self.failed += 1
        if how == "ADD":
            self.outcome_failed["ADD"] = self.outcome_failed.get("ADD", 0) + 1
        self.concluded, self._said = Failed(attempt, ending, how), True

    def unresolved(self) -> list[Failed]:
        """The attempts with no outcome and no DEL by the end of what was read, oldest first."""
        found = [Failed(rec, None, "") for rec in self.pending.values()]
        return sorted(found, key=lambda f: (f.attempt.timestamp, f.key))

    def to_json(self) -> dict[str, Any]:
        return {"events": self.events, "attempts": self.attempts, "succeeded": self.succeeded,
                "failed": self.failed, "cleaned_up": self.cleaned_up, "no_outcome": len(self.pending),
                "checks": {"attempts": self.checks, "succeeded": self.checks_succeeded, "failed": self.checks_failed,
                           "no_outcome": len(self.pending_checks)},
                "chain_latency_ms": self.latency.summary_ms()}


def failures(outcomes: dict[tuple[str, str], int], pairing: Attempts) -> dict[str, Any]:
    """Every invocation known to have failed, by command: the events that say so (``outcomes``: events by command
    and outcome, attempt entries' left out), the ADDs inferred from their clean-up DEL, and bracket mode's attempts
    that failed before their outcome entry (those whose outcome entry recorded the failure are events already)."""
    recorded: dict[str, int] = {}
    for (command, outcome), count in outcomes.items():
        if outcome == "failure":
            recorded[command] = recorded.get(command, 0) + count
    attempts = {"ADD": pairing.failed - pairing.outcome_failed.get("ADD", 0),
                "CHECK": pairing.checks_failed - pairing.outcome_failed.get("CHECK", 0)}
    by_command = dict(recorded)
    for command, count in [("ADD", pairing.inferred), *attempts.items()]:
        if count:
            by_command[command] = by_command.get(command, 0) + count
    return {"total": sum(by_command.values()), "by_command": dict(sorted(by_command.items())),
            "recorded": recorded, "inferred_adds": pairing.inferred,
            "failed_attempts": {k: v for k, v in attempts.items() if v},
            "no_outcome": {"ADD": len(pairing.pending), "CHECK": len(pairing.pending_checks)},
            "bracket": pairing.events > 0}
