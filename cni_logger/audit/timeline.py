"""One container's (or one pod's) attachments, step by step: ``timeline CONTAINER`` / ``timeline --pod NS/NAME``.

A container (matched by id prefix, as ``docker`` and ``crictl`` match them) may have several
attachments, one per network and interface (Multus adds ``net1``...). Each is shown on its own:
every ADD, CHECK and DEL with its outcome, duration, addresses and interfaces, and the periods it
was attached. The periods are ``intervals.Tracker``'s intervals, the one rule ``who-had`` and ``leaks`` follow:
from a successful ADD (or the first evidence of an attachment whose ADD is not in the trail) to its DEL, a GC
that no longer lists it, or, its DEL lost, the ADD of another attachment that was given its address
(*superseded*), a re-ADD of its own, or an inventory that no longer lists it. So every record is fed to the
tracker (as ``leaks`` reads them, without decoding), and only the matching ones are summarised.

A pod is matched by its namespace and name (``orchestrator.*`` or ``K8S_POD_*``); every sandbox it
had (a container id) is followed from the first event that names the pod, including events of that
sandbox that do not name it (a DEL after a runtime restart may carry no ``CNI_ARGS``).

Only the matching events are kept (decoded and summarised), and the open attachments the tracker needs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from cni_logger.audit import record
from cni_logger.audit.attempts import Attempts
from cni_logger.audit.intervals import Interval, Slot, Tracker, qualifications
from cni_logger.audit.query import is_glob, literal_bytes, matcher, pod_spec
from cni_logger.audit.record import Record
from cni_logger.audit.timeparse import epoch, short

if TYPE_CHECKING:
    from cni_logger.audit.evidence import Evidence


@dataclass
class Step:
    """One invocation in an attachment's life."""

    timestamp: str
    command: str
    outcome: str
    duration_ns: int | None
    cidrs: list[str]
    interfaces: list[dict[str, str]]
    error: str
    role: str = ""
    """Bracket mode: ``attempt`` or ``outcome``, the entry that wrote the event."""
    attempt: str = ""
    """An attempt entry's event: how its chain ended (``succeeded``, ``failed``, ``no outcome``; ``attempts``)."""
    failed_add: str = ""
    """This step shows a failed ADD: ``attempt-failed`` (an ADD attempt whose chain failed), ``cleanup-del`` (the
    logger last: a DEL with no ADD and no cached result, the runtime's clean-up after a failed ADD), ``add-failed``
    (an ADD event that failed)."""
    cleans_up: str = ""
    """The DEL that cleaned up after a failed attempt: the attempt's time."""

    def to_json(self) -> dict[str, Any]:
        return {"@timestamp": self.timestamp, "epoch": epoch(self.timestamp), "command": self.command,
                "role": self.role or None, "outcome": self.outcome,
                "duration_ms": None if self.duration_ns is None else round(self.duration_ns / 1e6, 3),
                "addresses": self.cidrs, "interfaces": self.interfaces, "error": self.error or None,
                "attempt": self.attempt or None, "failed_add": self.failed_add or None,
                "cleans_up": self.cleans_up or None}

    @property
    def chain_outcome(self) -> str:
        """The OUTCOME a table shows: ``failed`` for a failed attempt's chain (the attempt entry's event succeeded)."""
        return "failed" if self.attempt == "failed" else self.outcome

    def note(self) -> str:
        """What a table says after the interfaces: the entry, how an attempt ended, what a DEL cleaned up."""
        if self.role == "attempt" and self.attempt:
            ended = f"failed {self.command}" if self.attempt == "failed" else self.attempt
            note = f"attempt entry; the chain: {ended}"
        elif self.role:
            note = f"{self.role} entry"
        else:
            note = ""
        if self.cleans_up:
            note += ("; " if note else "") + f"clean-up after the failed ADD attempt at {short(self.cleans_up)}"
        if self.failed_add == "cleanup-del":
            note += ("; " if note else "") + "clean-up DEL: no ADD, no cached result; a failed ADD, inferred"
        return note


@dataclass
class Period:
    """One interval of an attachment, as ``who-had`` and ``leaks`` see it (``intervals.Interval``)."""

    attached: str | None
    """The ADD; ``None`` when it is not in the trail (then ``seen`` is the first evidence)."""
    seen: str
    detached: str | None
    """Its end (``None``: still attached at the end of the trail); only known to follow its last evidence when
    ``ended_by`` is ``superseded``, ``ADD`` or ``inventory`` (its DEL lost or not recorded: ``notes`` say so)."""
    ended_by: str
    notes: list[str]

    def to_json(self) -> dict[str, Any]:
        return {"attached": self.attached, "detached": self.detached, "attached_epoch": epoch(self.attached),
                "detached_epoch": epoch(self.detached), "seen": self.seen, "ended_by": self.ended_by or None,
                "notes": self.notes}


@dataclass
class Attachment:
    """A (network, container, interface) and the steps recorded for it, oldest first."""

    network: str
    container_id: str
    ifname: str
    pod: str = ""
    namespace: str = ""
    host: str = ""
    """The node (``host.name``) that recorded it."""
    steps: list[Step] = field(default_factory=list)
    intervals: list[Interval] = field(default_factory=list)
    found: Evidence | None = None

    def periods(self) -> list[Period]:
        """Its intervals, oldest first; a clean-up DEL (no ADD, no address) attached nothing and is none."""
        return [Period(i.start, i.seen, i.end, i.closed_by, qualifications(i, self.found)["notes"])
                for i in self.intervals if not (i.orphan and not i.addresses)]

    def to_json(self) -> dict[str, Any]:
        return {"host": self.host or None, "network": self.network, "container_id": self.container_id,
                "ifname": self.ifname,
                "pod": self.pod or None, "namespace": self.namespace or None,
                "periods": [period.to_json() for period in self.periods()],
                "events": [step.to_json() for step in self.steps]}


def prefilter(prefix: str) -> Callable[[bytes], bool] | None:
    """Lines that cannot name a container with this id prefix need not be read."""
    needle = literal_bytes(prefix)
    if needle is None:
        return None
    return lambda line: line.find(needle) >= 0


COMMANDS = frozenset({"ADD", "CHECK", "DEL"})


class Pod:
    """``--pod NAMESPACE/NAME``, or ``--pod NAME`` with or without ``-n NAMESPACE`` (any namespace, as Podman
    records none; ``query.pod_spec``): its events, and every event of the sandboxes seen with it."""

    def __init__(self, spec: str, namespace: str = "") -> None:
        namespace, name = pod_spec(spec, namespace)
        self.namespace, self.name = namespace, name
        self.sandboxes: set[str] = set()
        self._needle = None if is_glob(name) else literal_bytes(name)
        self._ids: set[bytes] = set()
        self._name = matcher(name)
        self._namespace = matcher(namespace) if namespace else None

    def prefilter(self) -> Callable[[bytes], bool] | None:
        """Lines naming the pod, or a sandbox already seen with it."""
        needle, ids = self._needle, self._ids
        if needle is None:
            return None
        return lambda line: line.find(needle) >= 0 or any(line.find(cid) >= 0 for cid in ids)

    def wants(self, rec: Record) -> bool:
        if rec.container_id in self.sandboxes:
            return True
        doc = rec.doc
        if not self._name(record.pod(doc)):
            return False
        if self._namespace is not None and not self._namespace(record.namespace(doc)):
            return False
        if rec.container_id:
            self.sandboxes.add(rec.container_id)
            self._ids.add(rec.container_id.encode("utf-8", "surrogatepass"))
        return True


def collect(records: Iterable[Record], prefix: str, wants: Callable[[Record], bool] | None = None, *,
            line_filter: Callable[[bytes], bool] | None = None, evidence: Evidence | None = None,
            ) -> list[Attachment]:
    """The attachments of every container whose id starts with ``prefix`` (and whose lines pass ``line_filter``,
    and that ``wants``), by first appearance, with their periods: ``records`` are the whole trail, for the
    tracker (``evidence``: the scan's, for the periods' notes)."""
    found: dict[Slot, Attachment] = {}
    """By attachment and node (``Interval.slot``): two nodes' attachments are two, whatever their ids."""
    tracker = Tracker()
    pairing = Attempts()  # every event of an attachment is here: pairing per attachment is the whole trail's
    attempts: dict[int, Step] = {}
    """The steps of the attempts ``pairing`` holds pending, by their record's id."""
    for rec in records:
        step = _step(found, rec, prefix, wants, line_filter, evidence)
        if step is not None:
            _pair(pairing, attempts, rec, step)
        for interval in tracker.feed(rec):
            attachment = found.get(interval.slot)
            if attachment is not None:
                attachment.intervals.append(interval)
    for slot, interval in tracker.open.items():
        attachment = found.get(slot)
        if attachment is not None:
            attachment.intervals.append(interval)
    for step in attempts.values():
        step.attempt = "no outcome"
    return sorted(found.values(), key=lambda a: (a.steps[0].timestamp, a.network, a.ifname))


def _step(found: dict[Slot, Attachment], rec: Record, prefix: str,
          wants: Callable[[Record], bool] | None, line_filter: Callable[[bytes], bool] | None,
          evidence: Evidence | None) -> Step | None:
    """A matching record becomes a step of its attachment (``None``: it does not match)."""
    if rec.command not in COMMANDS or not rec.container_id.startswith(prefix):
        return None
    if (line_filter is not None and not line_filter(rec.line)) or (wants is not None and not wants(rec)):
        return None
    doc = rec.doc
    slot = rec.slot
    attachment = found.get(slot)
    if attachment is None:
        attachment = found[slot] = Attachment(rec.network, rec.container_id, rec.ifname, found=evidence)
    attachment.pod = attachment.pod or record.pod(doc)
    attachment.namespace = attachment.namespace or record.namespace(doc)
    attachment.host = attachment.host or record.host(doc)
    role = doc.get("cni", {}).get("role") if isinstance(doc.get("cni"), dict) else None
    step = Step(rec.timestamp, rec.command, rec.outcome, rec.duration, record.cidrs(doc), record.interfaces(doc),
                record.error_message(doc), role if isinstance(role, str) else "")
    attachment.steps.append(step)
    return step


def _pair(pairing: Attempts, attempts: dict[int, Step], rec: Record, step: Step) -> None:
    """What ``attempts`` makes of one step: how the attempts it concludes ended, and the failed ADD it shows."""
    if rec.attempt and rec.command in ("ADD", "CHECK"):
        attempts[id(rec)] = step
    pairing.feed(rec)
    failed = pairing.concluded
    if failed is not None:
        attempted = attempts.pop(id(failed.attempt), None)
        if attempted is not None:
            attempted.attempt, attempted.failed_add = "failed", "attempt-failed"
        if failed.cleanup is rec:
            step.cleans_up = failed.attempt.timestamp
    for done, how in ((pairing.resolved, "succeeded"), (pairing.failed_check, "failed")):
        attempted = attempts.pop(id(done), None) if done is not None else None
        if attempted is not None:
            attempted.attempt = how
    if pairing.cleanup is rec:
        step.failed_add = "cleanup-del"
    elif rec.command == "ADD" and not rec.ok and not rec.attempt:
        step.failed_add = "add-failed"
