"""One container's attachments, step by step: ``timeline CONTAINER``.

A container (matched by id prefix, as ``docker`` and ``crictl`` match them) may have several
attachments, one per network and interface (Multus adds ``net1``...). Each is shown on its own:
every ADD, CHECK and DEL with its outcome, duration, addresses and interfaces, and the periods it
was attached, from a successful ADD to the successful DEL after it.

Only the matching events are kept (decoded and summarised), so memory follows the answer.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from cni_logger.audit import record
from cni_logger.audit.query import literal_bytes
from cni_logger.audit.record import Record


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

    def to_json(self) -> dict[str, Any]:
        return {"@timestamp": self.timestamp, "command": self.command, "outcome": self.outcome,
                "duration_ms": None if self.duration_ns is None else round(self.duration_ns / 1e6, 3),
                "addresses": self.cidrs, "interfaces": self.interfaces, "error": self.error or None}


@dataclass
class Attachment:
    """A (network, container, interface) and the steps recorded for it, oldest first."""

    network: str
    container_id: str
    ifname: str
    pod: str = ""
    namespace: str = ""
    steps: list[Step] = field(default_factory=list)

    def periods(self) -> list[tuple[str, str | None]]:
        """(attached, detached) per successful ADD ... DEL; ``None``: still attached at the trail's end."""
        found: list[tuple[str, str | None]] = []
        start: str | None = None
        for step in self.steps:
            if step.outcome != "success":
                continue
            if step.command == "ADD" and start is None:
                start = step.timestamp
            elif step.command == "DEL" and start is not None:
                found.append((start, step.timestamp))
                start = None
        if start is not None:
            found.append((start, None))
        return found

    def to_json(self) -> dict[str, Any]:
        return {"network": self.network, "container_id": self.container_id, "ifname": self.ifname,
                "pod": self.pod or None, "namespace": self.namespace or None,
                "periods": [{"attached": a, "detached": d} for a, d in self.periods()],
                "events": [step.to_json() for step in self.steps]}


def prefilter(prefix: str) -> Callable[[bytes], bool] | None:
    """Lines that cannot name a container with this id prefix need not be read."""
    needle = literal_bytes(prefix)
    if needle is None:
        return None
    return lambda line: needle in line


COMMANDS = frozenset({"ADD", "CHECK", "DEL"})


def collect(records: Iterable[Record], prefix: str) -> list[Attachment]:
    """The attachments of every container whose id starts with ``prefix``, by first appearance."""
    found: dict[tuple[str, str, str], Attachment] = {}
    for rec in records:
        if not rec.container_id.startswith(prefix) or rec.command not in COMMANDS:
            continue
        doc = rec.doc
        attachment = found.get(rec.key)
        if attachment is None:
            attachment = found[rec.key] = Attachment(rec.network, rec.container_id, rec.ifname)
        attachment.pod = attachment.pod or record.pod(doc)
        attachment.namespace = attachment.namespace or record.namespace(doc)
        attachment.steps.append(Step(rec.timestamp, rec.command, rec.outcome, rec.duration, record.cidrs(doc),
                                     record.interfaces(doc), record.error_message(doc)))
    return sorted(found.values(), key=lambda a: (a.steps[0].timestamp, a.network, a.ifname))
