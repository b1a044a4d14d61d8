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

Reading the role costs almost nothing: the plugin writes ``cni.role`` right after ``cni.ifname``, so
``record.head_from_line`` reads it with the head it slices (``head_from_doc`` from the decoded event).
"""

from __future__ import annotations

from typing import Any

from cni_logger.audit import record
from cni_logger.audit.record import ATTEMPT, Record
from cni_logger.audit.stats import Histogram
from cni_logger.audit.timeparse import is_canonical, to_epoch

Key = tuple[str, str, str]


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

    def __init__(self) -> None:
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

    def feed(self, rec: Record) -> bool:
        """Apply one event; whether it was an attempt entry's (not an attachment: callers skip it)."""
        self.concluded = None
        attempt = rec.attempt
        if attempt:
            self.events += 1
        command = rec.command
        if command == "ADD":
            key = rec.key
            pending = self.pending.pop(key, None)
            if attempt:
                if pending is not None:
                    self._fail(pending, rec, "retry")
                self.attempts += 1
                if rec.ok:
                    self.pending[key] = rec.forget()
                else:
                    self._fail(rec, rec, ATTEMPT)
            elif pending is not None:
                if rec.ok:
                    self._succeed(pending, rec)
                else:
                    self._fail(pending, rec, "ADD")
        elif command == "DEL":
            pending = self.pending.pop(rec.key, None)
            if pending is not None:
                self._fail(pending, rec, "DEL")
                self.cleaned_up += 1
        return attempt

    def _succeed(self, attempt: Record, outcome: Record) -> None:
        self.succeeded += 1
        start, end = _seconds(attempt.timestamp), _seconds(outcome.timestamp)
        if start is not None and end is not None:
            self.latency.add(max(round((end - start) * 1e9), 0))

    def _fail(self, attempt: Record, ending: Record, how: str) -> None:
        self.failed += 1
        self.concluded = Failed(attempt, ending, how)

    def unresolved(self) -> list[Failed]:
        """The attempts with no outcome and no DEL by the end of what was read, oldest first."""
        found = [Failed(rec, None, "") for rec in self.pending.values()]
        return sorted(found, key=lambda f: (f.attempt.timestamp, f.key))

    def to_json(self) -> dict[str, Any]:
        return {"events": self.events, "attempts": self.attempts, "succeeded": self.succeeded,
                "failed": self.failed, "cleaned_up": self.cleaned_up, "no_outcome": len(self.pending),
                "chain_latency_ms": self.latency.summary_ms()}
