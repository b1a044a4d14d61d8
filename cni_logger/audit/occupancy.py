"""Address occupancy: which attachment held which address when, for many addresses at once.

``who-had CIDR`` and ``report`` ask this of every address (in a subnet), not of one; ``who-had IP``
(``intervals.Tracker`` with an address) would need one pass per address. So the attachments are
tracked as ``leaks`` tracks them (``Tracker`` without an address: ADD opens, DEL and GC close, a
later ADD of the address on the same network and host supersedes, the same rules), and each
interval is turned into one *holding* per address its first event names. The records come
de-duplicated by ``event.id`` from the reader.

A holding says what ``who-had IP`` says of its interval, in the same words
(``intervals.qualifications``): an unknown start (``from`` null), a *superseded* end (its DEL lost:
``ended_by`` ``superseded``, the end only known to follow ``last_seen``), a DEL that a damaged
stretch may hold, and with ``at`` its certainty then (``Interval.certainty``).

* A **conflict** is what ``intervals`` calls one: a superseded holder that shows up again holding
  the address (a CHECK, or a DEL with its cached result), so both held it at once. Two holdings of
  one address in different networks or on different hosts are not a conflict (each IPAM hands out
  its own addresses). A superseded holding is therefore held back (``parked``) until its DEL, a new
  ADD of its attachment, or the end of the trail, at most ``Tracker.recent_limit`` of them, so that
  its row is complete when handed out; the later holder's row names the conflict if it is still
  held when the conflict shows (``conflicts_with``), as it always is when the earlier holder's CHECK
  or DEL comes before the later holder's DEL.
* A DEL with its cached result and no evidence before it (``Interval.orphan``) is a holding too, from an
  unknown start (not before the previous holder's end: ``Interval.floor``) to that DEL, as ``who-had IP`` lists
  it; ``leaks`` and ``report`` also list it as a DEL without ADD (``keep_orphans``).
* An inventory's ``cni-attachment`` opens a holding as a CHECK does (start unknown), and a holding a
  complete inventory no longer lists ends (``ended_by`` ``inventory``), by the tracker's rules; a holding
  still open whose network's chain the logger was out of after its last evidence is ``unwatched``.
* Holdings are handed out as they end (``feed`` returns them), the still-held ones at the end
  (``finish``): the caller decides what to keep, so memory is the open and parked attachments only.

Reading an interval's addresses, pod and namespace by decoding its line would cost most of the
scan (every ADD), so for the plugin's canonical lines they are sliced from the bytes, once per
record for the tracker and occupancy together (``record.placed``).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from cni_logger.audit import record
from cni_logger.audit.coverage import ATTACHMENT
from cni_logger.audit.intervals import Interval, Slot, Tracker, qualifications
from cni_logger.audit.query import canonical_address
from cni_logger.audit.record import Record

if TYPE_CHECKING:
    from cni_logger.audit.evidence import Evidence

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
KNOWN_LIMIT = 1 << 16
"""Address spellings remembered with their canonical form (a few MiB at most)."""

def line_fields(rec: Record) -> tuple[list[str], str, str]:
    """(addresses without prefix length, namespace, pod) of an event, sliced when possible (``record.placed``)."""
    _, addresses, namespace, pod = record.placed(rec)
    return addresses, namespace, pod


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
    """The command that ended it (``DEL``, ``GC``, ``superseded``, ``ADD``): ``Interval.closed_by``."""
    conflicts_with: list[str] = field(default_factory=list)
    last_seen: str = ""
    conflict: bool = False
    superseded_by: dict[str, str] | None = None
    notes: list[str] = field(default_factory=list)
    certainty: str | None = None
    """With ``Occupancy(at=...)``: ``HELD``, ``POSSIBLY`` or ``None`` (not then), as ``Interval.certainty``."""
    interval: Interval | None = None
    """Until the holding is settled (handed out): the interval it comes from."""
    host: str = ""
    """The node that holds it (``host.name``): the same address is held on several nodes at once."""
    unwatched: bool = False
    """Still held at the end, but the logger was out of its network on its host after its last evidence: it may
    have been deleted unrecorded (``Interval.unwatched``; ``leaks`` lists it apart, as possibly deleted)."""

    @property
    def since(self) -> str:
        return self.start or self.seen

    def overlaps(self, since: str, until: str) -> bool:
        """Held at some moment of [since, until] (empty bounds: open)."""
        return (not until or self.since <= until) and (not since or self.end is None or self.end >= since)

    def covers(self, at: str) -> bool:
        return self.since <= at and (self.end is None or at <= self.end)

    def settle(self, found: Evidence | None, at: str | None) -> Holding:
        """Take what the interval finally says (its end, qualifications, certainty at ``at``) and let it go."""
        interval = self.interval
        if interval is None:
            return self
        self.end, self.ended_by = interval.end, interval.closed_by
        qualified = qualifications(interval, found)
        self.last_seen, self.conflict = qualified["last_seen"], qualified["conflict"]
        self.superseded_by, self.notes = qualified["superseded_by"], qualified["notes"]
        if at is not None:
            self.certainty = interval.certainty(at, found)
        if interval.end is None and found is not None and found.coverage.outages:
            self.unwatched = interval.unwatched(found, None) is not None
        self.interval = None
        return self

    def to_json(self) -> dict[str, Any]:
        """The keys of ``who-had IP``'s answer, with the address held and the holders it conflicted with."""
        answer: dict[str, Any] = {
            "address": self.address, "host": self.host or None, "network": self.network,
            "container_id": self.container_id,
            "ifname": self.ifname, "pod": self.pod or None, "namespace": self.namespace or None,
            "from": self.start, "seen": self.seen, "until": self.end, "ended_by": self.ended_by or None,
            "last_seen": self.last_seen or self.seen, "conflict": self.conflict,
            "conflicts_with": list(self.conflicts_with), "superseded_by": self.superseded_by,
            "notes": list(self.notes)}
        if self.certainty is not None:
            answer["certainty"] = self.certainty
        return answer


class Occupancy:
    """Feeds on records in trail order; returns holdings as they end, keeps the open (and parked) ones."""

    def __init__(self, subnet: Network | None = None, *, keep_orphans: bool = False, found: Evidence | None = None,
                 at: str | None = None) -> None:
        self.subnet = subnet
        self.keep_orphans = keep_orphans
        self.found = found
        """The scan's evidence: for the qualifications of a holding when it is handed out."""
        self.at = at
        self.tracker = Tracker()
        self.open: dict[Slot, list[Holding]] = {}
        self.parked: dict[Slot, list[Holding]] = {}
        """Superseded holdings, until their DEL (which may show a conflict) or a new ADD of their attachment."""
        self.orphans: list[Interval] = []
        """With ``keep_orphans``: the DELs without ADD (``leaks``' other kind); the caller may clear the list."""
        self.conflicts = 0
        """Conflicts found (a superseded holder seen holding its address again)."""
        self.found_conflicts: list[tuple[Holding, str, str]] = []
        """The conflicts the last ``feed`` found: (the superseded holding, the later holder's container id, when)."""
        self._known: dict[str, str | None] = {}
        self.opened: list[Holding] = []
        """The holdings the last ``feed`` opened."""
        self.left: list[Holding] = []
        """The holdings the last ``feed`` ended (a superseded one is handed out later, when it is settled)."""

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

    def _settled(self, holdings: Iterable[Holding]) -> list[Holding]:
        return [h.settle(self.found, self.at) for h in holdings]

    def feed(self, rec: Record) -> list[Holding]:
        """Apply one event; the holdings it ended (or settled: a superseded one after its DEL)."""
        # The record's attachment matters here only while superseded holdings are parked (``Record.slot``): what
        # the record opens, the tracker says itself (``tracker.opened``).
        key = rec.slot if self.parked and (rec.command in ("ADD", "CHECK", "DEL") or
                                                         rec.coverage == ATTACHMENT) else None
        came_back = None
        if key is not None and key in self.parked:
            interval = self.tracker.superseded.get(key)
            came_back = interval if interval is not None and not interval.conflict else None
        closed = self.tracker.feed(rec)
        ended: list[Holding] = []
        if self.opened:
            self.opened = []
        if self.left:
            self.left = []
        if self.found_conflicts:
            self.found_conflicts = []
        if came_back is not None and came_back.conflict:
            self._conflict(came_back, rec)
        if key is not None and key in self.parked and (rec.command == "ADD" or key not in self.tracker.superseded):
            ended += self._settled(self.parked.pop(key))  # its DEL came, or a new life of the attachment began
        for interval in closed:
            if interval.orphan:
                if self.keep_orphans:
                    self.orphans.append(interval)
                # A DEL with its cached result and nothing before it: the attachment held those addresses until
                # then, from an unknown start (``who-had IP`` lists it so); a clean-up DEL names none.
                ended += self._settled(self._holdings(interval, interval.opened))
                continue
            holdings = self.open.pop(interval.slot, None)
            if not holdings:
                continue
            self.left += holdings
            if interval.closed_by == "superseded":
                self.parked[interval.slot] = holdings
                if len(self.parked) > self.tracker.recent_limit:  # the tracker forgets it too: settled as it is
                    ended += self._settled(self.parked.pop(next(iter(self.parked))))
            else:
                ended += self._settled(holdings)
        opened = self.tracker.opened
        if opened is not None and opened.opened is rec and opened.slot not in self.open:
            self._hold(opened, rec)
        return ended

    def _conflict(self, interval: Interval, rec: Record) -> None:
        """A superseded holder held its address again: mark both rows (the later holder's, if still held)."""
        later = interval.superseded_by
        if later is None:
            return
        parked = self.parked.get(interval.slot, [])
        others = self.open.get(later.slot, [])
        for holding in parked:
            holding.conflicts_with.append(later.container_id)
            # The later holder got the address by its ADD: its ``conflict`` stays as intervals has it (false);
            # the earlier holder's row is the doubtful one (``conflict``, a note), as in who-had IP.
            for other in others:
                if other.address == holding.address:
                    other.conflicts_with.append(holding.container_id)
            self.conflicts += 1
            self.found_conflicts.append((holding, later.container_id, rec.timestamp))

    def _holdings(self, interval: Interval, rec: Record) -> list[Holding]:
        addresses, namespace, pod = line_fields(rec)
        network, container_id, ifname = interval.key
        return [Holding(address, network, container_id, ifname, namespace, pod, interval.start, interval.seen,
                        interval=interval, host=interval.host)
                for address in dict.fromkeys(self._canonical(a) for a in addresses) if address is not None]

    def _hold(self, interval: Interval, rec: Record) -> None:
        holdings = self._holdings(interval, rec)
        if holdings:
            self.open[interval.slot] = holdings
            self.opened = holdings

    def finish(self) -> tuple[list[Holding], list[Holding]]:
        """At the end of what was read: the parked (superseded) holdings, settled, then the still-held ones, by
        address."""
        parked = self._settled(h for found in self.parked.values() for h in found)
        self.parked = {}
        still = sorted((h for found in self.open.values() for h in found), key=lambda h: (address_key(h.address),
                                                                                           h.since))
        return parked, self._settled(still)


def address_key(address: str) -> tuple[int, int, str]:
    """Sorts addresses numerically (IPv4 before IPv6), anything unparsable last."""
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return (9, 0, address)
    return (parsed.version, int(parsed), "")


def sorted_holdings(holdings: Iterable[Holding]) -> list[Holding]:
    return sorted(holdings, key=lambda h: (address_key(h.address), h.since, h.container_id))
