"""Address occupancy: which attachment held which address when, for many addresses at once.

``who-had CIDR`` and ``report`` ask this of every address (in a subnet), not of one; ``who-had IP``
(``intervals.Tracker`` with an address) would need one pass per address. So the attachments are
tracked as ``leaks`` tracks them (``Tracker`` without an address: ADD opens, DEL and GC close, the
same rules), and each interval is turned into one *holding* per address its first event names.

* A **conflict** is two holdings of the same address at the same time by different attachments,
  in any network (an address held twice is ambiguous to an auditor whichever networks hold it).
  It can only begin while both are open, so it is found when the second one opens; each holding
  lists the container ids it overlapped (``conflicts_with``), complete by the time it ends.
* Holdings are handed out as they end (``feed`` returns them), the still-held ones at the end
  (``still_held``): the caller decides what to keep, so memory is the open attachments only.

Reading an interval's addresses, pod and namespace by decoding its line would cost most of the
scan (every ADD), so for the plugin's canonical lines they are sliced from the bytes, the way
``record.head_from_line`` slices the head and with the same reasoning: an unescaped
``,"related":{"ip":[`` or ``,"orchestrator":{`` can only be the plugin's own top-level structure.
A value with an escape, or an unexpected layout, falls back to decoding the line.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from cni_logger.audit import record
from cni_logger.audit.intervals import Interval, Key, Tracker
from cni_logger.audit.query import canonical_address
from cni_logger.audit.record import Record, is_canonical_line

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
KNOWN_LIMIT = 1 << 16
"""Address spellings remembered with their canonical form (a few MiB at most)."""

_RELATED = re.compile(rb',"related":\{"ip":\[((?:"[^"\\]*"(?:,"[^"\\]*")*)?)\]\}')
_ORCHESTRATOR = re.compile(rb',"orchestrator":\{(?:"type":"[^"\\]*",)?(?:"namespace":"([^"\\]*)",)?'
                           rb'"resource":\{(?:"type":"[^"\\]*",)?(?:"name":"([^"\\]*)")?[,}]')


def sliced_fields(line: bytes) -> tuple[list[str], str, str] | None:
    """(addresses, namespace, pod) of a canonical line, or ``None`` to decode it instead."""
    at = line.find(b',"orchestrator":{')
    namespace = pod = ""
    if at >= 0:
        found = _ORCHESTRATOR.match(line, at)
        if found is None:
            return None
        namespace = (found.group(1) or b"").decode("utf-8", "surrogateescape")
        pod = (found.group(2) or b"").decode("utf-8", "surrogateescape")
    elif b'"K8S_POD_' in line:
        return None  # orchestrator.* is written whenever these are: something unusual
    at = line.find(b',"related":{"ip":[', max(at, 0))
    if at < 0:
        return [], namespace, pod
    found = _RELATED.match(line, at)
    if found is None:
        return None
    listed = found.group(1)
    addresses = [a[1:-1].decode("ascii", "replace") for a in listed.split(b",")] if listed else []
    return addresses, namespace, pod


def line_fields(rec: Record) -> tuple[list[str], str, str]:
    """(addresses without prefix length, namespace, pod) of an event, sliced when possible."""
    if is_canonical_line(rec.line):
        found = sliced_fields(rec.line)
        if found is not None:
            return found
    doc = rec.doc
    fields = record.addresses(doc), record.namespace(doc), record.pod(doc)
    rec.forget()
    return fields


def parse_network(text: str) -> Network | None:
    """A subnet (``10.244.1.0/24``, ``fd00::/64``) with no host bits set, or ``None``."""
    if "/" not in text:
        return None
    try:
        return ipaddress.ip_network(text.strip(), strict=True)
    except ValueError:
        return None


@dataclass(slots=True)
class Holding:
    """One attachment's hold on one address."""

    address: str
    network: str
    container_id: str
    ifname: str
    namespace: str
    pod: str
    start: str | None
    """The ADD's time; ``None`` when only later evidence (a CHECK, a failed DEL) shows the attachment."""
    seen: str
    end: str | None = None
    """``None``: still held at the end of what was read."""
    ended_by: str = ""
    """The command that ended it (``DEL``, ``GC``); whatever ``Interval.closed_by`` says."""
    conflicts_with: list[str] = field(default_factory=list)

    @property
    def since(self) -> str:
        return self.start or self.seen

    def overlaps(self, since: str, until: str) -> bool:
        """Held at some moment of [since, until] (empty bounds: open)."""
        return (not until or self.since <= until) and (not since or self.end is None or self.end >= since)

    def covers(self, at: str) -> bool:
        return self.since <= at and (self.end is None or at <= self.end)

    def to_json(self) -> dict[str, Any]:
        """The keys of ``who-had IP``'s answer, with the address held and its conflicts."""
        return {"address": self.address, "network": self.network, "container_id": self.container_id,
                "ifname": self.ifname, "pod": self.pod or None, "namespace": self.namespace or None,
                "from": self.start, "seen": self.seen, "until": self.end, "ended_by": self.ended_by or None,
                "conflicts_with": list(self.conflicts_with)}


class Occupancy:
    """Feeds on records in trail order; returns holdings as they end, keeps the open ones."""

    def __init__(self, subnet: Network | None = None, *, keep_orphans: bool = False) -> None:
        self.subnet = subnet
        self.keep_orphans = keep_orphans
        self.tracker = Tracker()
        self.open: dict[Key, list[Holding]] = {}
        self.by_address: dict[str, list[Holding]] = {}
        """Open holdings per address: where conflicts are found."""
        self.orphans: list[Interval] = []
        """With ``keep_orphans``: the DELs without ADD (``leaks``' other kind); the caller may clear the list."""
        self.conflicts = 0
        """Pairs of holdings found overlapping."""
        self._known: dict[str, str | None] = {}
        self.opened: list[Holding] = []
        """The holdings the last ``feed`` opened."""

    def _canonical(self, address: str) -> str | None:
        """An address as ``canonical_address`` spells it, or ``None`` outside the subnet; remembered, because
        parsing costs more than the rest of a holding and a node reuses few addresses many times."""
        if address in self._known:
            return self._known[address]
        canonical: str | None = canonical_address(address)
        if self.subnet is not None:
            try:
                inside = ipaddress.ip_address(address.split("/", 1)[0].strip()) in self.subnet
            except ValueError:
                inside = False
            canonical = canonical if inside else None
        if len(self._known) >= KNOWN_LIMIT:
            self._known.clear()
        self._known[address] = canonical
        return canonical

    def feed(self, rec: Record) -> list[Holding]:
        """Apply one event; the holdings it ended."""
        closed = self.tracker.feed(rec)
        ended: list[Holding] = []
        if self.opened:
            self.opened = []
        for interval in closed:
            if interval.orphan:
                if self.keep_orphans:
                    self.orphans.append(interval)
                continue
            for holding in self.open.pop(interval.key, ()):
                holding.end, holding.ended_by = interval.end, interval.closed_by
                peers = self.by_address[holding.address]
                peers.remove(holding)
                if not peers:
                    del self.by_address[holding.address]
                ended.append(holding)
        if rec.command in ("ADD", "CHECK", "DEL"):
            opened = self.tracker.open.get(rec.key)
            if opened is not None and opened.opened is rec and rec.key not in self.open:
                self._hold(opened, rec)
        return ended

    def _hold(self, interval: Interval, rec: Record) -> None:
        addresses, namespace, pod = line_fields(rec)
        network, container_id, ifname = interval.key
        holdings = []
        for address in dict.fromkeys(self._canonical(a) for a in addresses):
            if address is None:
                continue
            holding = Holding(address, network, container_id, ifname, namespace, pod, interval.start, interval.seen)
            peers = self.by_address.setdefault(address, [])
            for other in peers:  # other attachments: one attachment has one holding per address
                other.conflicts_with.append(container_id)
                holding.conflicts_with.append(other.container_id)
                self.conflicts += 1
            peers.append(holding)
            holdings.append(holding)
        if holdings:
            self.open[interval.key] = holdings
            self.opened = holdings

    def still_held(self) -> list[Holding]:
        """The holdings open at the end of what was read, by address."""
        return sorted((h for found in self.open.values() for h in found), key=lambda h: (address_key(h.address),
                                                                                          h.since))


def address_key(address: str) -> tuple[int, int, str]:
    """Sorts addresses numerically (IPv4 before IPv6), anything unparsable last."""
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return (9, 0, address)
    return (parsed.version, int(parsed), "")


def sorted_holdings(holdings: Iterable[Holding]) -> list[Holding]:
    return sorted(holdings, key=lambda h: (address_key(h.address), h.since, h.container_id))
