"""One container's (or one pod's) attachments, step by step: ``timeline CONTAINER`` / ``timeline --pod NS/NAME``.

A container (matched by id prefix, as ``docker`` and ``crictl`` match them) may have several
attachments, one per network and interface (Multus adds ``net1``...). Each is shown on its own:
every ADD, CHECK and DEL with its outcome, duration, addresses and interfaces, and the periods it
was attached, from a successful ADD to the successful DEL after it.

A pod is matched by its namespace and name (``orchestrator.*`` or ``K8S_POD_*``); every sandbox it
had (a container id) is followed from the first event that names the pod, including events of that
sandbox that do not name it (a DEL after a runtime restart may carry no ``CNI_ARGS``).

Only the matching events are kept (decoded and summarised), so memory follows the answer.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from cni_logger.audit import record
from cni_logger.audit.query import is_glob, literal_bytes, matcher, pod_spec
from cni_logger.audit.record import Record
from cni_logger.audit.timeparse import epoch


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

    def to_json(self) -> dict[str, Any]:
        return {"@timestamp": self.timestamp, "epoch": epoch(self.timestamp), "command": self.command,
                "role": self.role or None, "outcome": self.outcome,
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
    host: str = ""
    """The node (``host.name``) that recorded it."""
    steps: list[Step] = field(default_factory=list)

    def periods(self) -> list[tuple[str, str | None]]:
        """(attached, detached) per successful ADD ... DEL; ``None``: still attached at the trail's end."""
        found: list[tuple[str, str | None]] = []
        start: str | None = None
        for step in self.steps:
            if step.outcome != "success" or step.role == "attempt":  # an attempt attaches nothing yet
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
        return {"host": self.host or None, "network": self.network, "container_id": self.container_id,
                "ifname": self.ifname,
                "pod": self.pod or None, "namespace": self.namespace or None,
                "periods": [{"attached": a, "detached": d, "attached_epoch": epoch(a), "detached_epoch": epoch(d)}
                            for a, d in self.periods()],
                "events": [step.to_json() for step in self.steps]}


def prefilter(prefix: str) -> Callable[[bytes], bool] | None:
    """Lines that cannot name a container with this id prefix need not be read."""
    needle = literal_bytes(prefix)
    if needle is None:
        return None
    return lambda line: needle in line


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
        return lambda line: needle in line or any(cid in line for cid in ids)

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


def collect(records: Iterable[Record], prefix: str, wants: Callable[[Record], bool] | None = None,
            ) -> list[Attachment]:
    """The attachments of every container whose id starts with ``prefix`` (and that ``wants``), by first
    appearance."""
    found: dict[tuple[str, str, str], Attachment] = {}
    for rec in records:
        if not rec.container_id.startswith(prefix) or rec.command not in COMMANDS:
            continue
        if wants is not None and not wants(rec):
            continue
        doc = rec.doc
        attachment = found.get(rec.key)
        if attachment is None:
            attachment = found[rec.key] = Attachment(rec.network, rec.container_id, rec.ifname)
        attachment.pod = attachment.pod or record.pod(doc)
        attachment.namespace = attachment.namespace or record.namespace(doc)
        attachment.host = attachment.host or record.host(doc)
        role = doc.get("cni", {}).get("role") if isinstance(doc.get("cni"), dict) else None
        attachment.steps.append(Step(rec.timestamp, rec.command, rec.outcome, rec.duration, record.cidrs(doc),
                                     record.interfaces(doc), record.error_message(doc),
                                     role if isinstance(role, str) else ""))
    return sorted(found.values(), key=lambda a: (a.steps[0].timestamp, a.network, a.ifname))
