"""The trail's record of its own coverage: when the logger was out of a chain, what it could not write.

``install``, ``uninstall`` and ``install --watch`` append *coverage events* to the trail
(``docs/coverage-events.md``: ``event.dataset`` ``cni.coverage``, details under ``cni.coverage``, no
``cni.command``). The reader decodes every one of them (``record.may_be_coverage`` lets them past a
prefilter) and notes it here, in ``Evidence.coverage``, so that every question knows what the trail
could not see:

* an **outage**: the logger was out of a network's chain on a host from a ``logger-left``'s ``since``
  (else its ``@timestamp``) until the next ``logger-entered`` of the same host and network (its
  ``since``, else its time), or to the end of the trail. Nothing that happened on that network of
  that host then is in the trail: an ADD, a DEL. ``Interval.unwatched`` asks whether one lies where an
  attachment's DEL could be; ``unwatched`` whether a moment is in one at all;
* **dropped events** (``logger-dropped``): the plugin could not write them between two times; they
  become an ``evidence.Stretch`` of kind ``dropped`` (for the containers listed, or anyone when the
  list was cut short), which every question already weighs as it weighs a damaged stretch;
* **inventories** (``cni-attachment`` lines, then a ``logger-inventory``): evidence of who holds what.
  ``intervals.Tracker`` uses them (an attachment listed is evidence, as a CHECK is; one a complete
  inventory does not list is ended). Here only the oldest complete one of each host matters: in a
  trail that has inventories, before the oldest complete inventory of every host that writes coverage
  events, an address that no event names is no evidence either way (an attachment whose ADD rotated
  away may hold it);
* **heartbeats**: the watcher was alive; counted, their span reported.

Memory: outages are rare (a failsafe, an upgrade, an agent's rewrite) and all are kept, a few hundred
bytes each; at most ``MAX_LISTED`` dropped-event summaries and inventories are listed, all are counted.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cni_logger.audit.evidence import Stretch
from cni_logger.audit.formats import plural
from cni_logger.audit.record import Record
from cni_logger.audit.timeparse import normalize

ENTERED, LEFT, HEARTBEAT = "logger-entered", "logger-left", "logger-heartbeat"
DROPPED, ATTACHMENT, INVENTORY = "logger-dropped", "cni-attachment", "logger-inventory"
MAX_LISTED = 4096
"""Dropped-event summaries and inventories listed for the report (all are counted)."""
INVENTORY_GRACE = 2.0
"""Seconds before an inventory in which an attachment's evidence keeps it open even when the inventory does
not list it: the writer reads the result cache before it writes the inventory, and libcni writes an ADD's
cache entry after the logger (last in the chain) recorded the ADD."""


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def details(rec: Record) -> dict[str, Any]:
    """``cni.coverage`` of a coverage record."""
    return _dict(_dict(rec.doc.get("cni")).get("coverage"))


def host_of(rec: Record) -> str:
    return _text(_dict(rec.doc.get("host")).get("name"))


@dataclass
class Outage:
    """The logger out of one network's chain on one host."""

    host: str
    network: str
    start: str
    end: str | None
    """``None``: not back by the end of the trail."""
    reason: str
    detail: str = ""
    file: str = ""
    left_at: str = ""
    """The ``logger-left``'s own time (``start`` is its ``since`` when that is earlier)."""
    back_reason: str = ""

    def overlaps(self, since: str, until: str | None) -> bool:
        """Out at some moment of [since, until] (``until`` None: to the end of the trail)."""
        return (until is None or self.start <= until) and (self.end is None or self.end >= since)

    def covers(self, at: str) -> bool:
        return self.start <= at and (self.end is None or at <= self.end)

    @property
    def why(self) -> str:
        return self.reason + (f": {self.detail}" if self.detail else "")

    def describe(self) -> str:
        return (f"the logger was out of network {self.network} on {self.host or '(unknown host)'} from {self.start} "
                f"to {self.end or 'the end of the trail'} ({self.why})")

    def to_json(self) -> dict[str, Any]:
        return {"host": self.host, "network": self.network, "from": self.start, "until": self.end,
                "reason": self.reason, "detail": self.detail or None, "file": self.file or None,
                "left_at": self.left_at, "back_reason": self.back_reason or None}


class Coverage:
    """What the coverage events of a scan say, noted in trail order (``note``)."""

    def __init__(self) -> None:
        self.outages: list[Outage] = []
        self._out: dict[tuple[str, str], Outage] = {}
        """The outages still open, by (host, network)."""
        self._by_place: dict[tuple[str, str], list[Outage]] = {}
        """Every outage by (host, network): an interval asks only about its own place's."""
        self.actions: dict[str, int] = {}
        self.dropped_events = 0
        self.dropped: list[dict[str, Any]] = []
        self.inventories = 0
        self.first_inventory = ""
        """The time of the oldest ``logger-inventory`` (of any host, complete or not)."""
        self.first_complete: dict[str, str] = {}
        """Per host, the time of its oldest complete inventory."""
        self.hosts: set[str] = set()
        """The hosts that wrote coverage events (their watcher runs, so their inventories are expected)."""
        self.last_inventory = ""
        self.inventory_list: list[dict[str, Any]] = []
        self.heartbeats = 0
        self.first_heartbeat = ""
        self.last_heartbeat = ""

    def note(self, rec: Record) -> Stretch | None:
        """One coverage record; a ``dropped`` stretch for the evidence when it is a ``logger-dropped``."""
        action = rec.coverage
        self.actions[action] = self.actions.get(action, 0) + 1
        stamp = rec.timestamp
        self.hosts.add(host_of(rec))
        if action == LEFT:
            self._left(rec)
        elif action == ENTERED:
            self._entered(rec)
        elif action == DROPPED:
            return self._dropped(rec)
        elif action == INVENTORY:
            self._inventory(rec)
        elif action == HEARTBEAT and stamp:
            self.heartbeats += 1
            self.first_heartbeat = min(self.first_heartbeat or stamp, stamp)
            self.last_heartbeat = max(self.last_heartbeat, stamp)
        return None

    def _left(self, rec: Record) -> None:
        found = details(rec)
        network = _text(found.get("network")) or rec.network
        place = (host_of(rec), network)
        if place in self._out or not rec.timestamp:
            return  # out already: the earlier start stands
        since = normalize(_text(found.get("since"))) or ""
        start = since if since and since < rec.timestamp else rec.timestamp
        outage = Outage(place[0], network, start, None, _text(found.get("reason")) or "(no reason)",
                        _text(found.get("detail")), _text(found.get("file")), rec.timestamp)
        self.outages.append(outage)
        self._out[place] = outage
        self._by_place.setdefault(place, []).append(outage)

    def _entered(self, rec: Record) -> None:
        found = details(rec)
        network = _text(found.get("network")) or rec.network
        outage = self._out.pop((host_of(rec), network), None)
        if outage is None or outage.end is not None:
            return
        since = normalize(_text(found.get("since"))) or ""
        back = since if since and since < rec.timestamp else rec.timestamp
        outage.end = max(back, outage.start)
        outage.back_reason = _text(found.get("reason"))

    def _dropped(self, rec: Record) -> Stretch | None:
        found = details(rec)
        count = found.get("dropped")
        count = count if isinstance(count, int) and not isinstance(count, bool) else 0
        first = normalize(_text(found.get("first"))) or rec.timestamp
        last = normalize(_text(found.get("last"))) or rec.timestamp
        listed = found.get("containers")
        containers = None if found.get("containers_truncated") is True or not isinstance(listed, list) else {
            c for c in listed if isinstance(c, str)}
        self.dropped_events += count
        commands = _dict(found.get("commands"))
        summary = {"host": host_of(rec), "dropped": count, "first": first, "last": last, "commands": commands,
                   "containers": None if containers is None else sorted(containers), "reason": _text(
                       _dict(rec.doc.get("event")).get("reason")) or None}
        if len(self.dropped) < MAX_LISTED:
            self.dropped.append(summary)
        per_command = ", ".join(f"{k} {v}" for k, v in commands.items())
        return Stretch("dropped", f"host {summary['host'] or '(unknown)'}", 0, 0, min(first, last), max(first, last),
                       lines=count, containers=containers,
                       what=f"{plural(count, 'event')} the plugin could not write"
                            + (f" ({per_command})" if per_command else "")
                            + (f": {summary['reason']}" if summary["reason"] else ""))

    def _inventory(self, rec: Record) -> None:
        stamp = rec.timestamp
        if not stamp:
            return
        self.inventories += 1
        self.first_inventory = min(self.first_inventory or stamp, stamp)
        self.last_inventory = max(self.last_inventory, stamp)
        found = details(rec)
        host = host_of(rec)
        if found.get("complete") is True:
            self.first_complete[host] = min(self.first_complete.get(host, stamp), stamp)
        if len(self.inventory_list) < MAX_LISTED:
            networks = found.get("networks")
            self.inventory_list.append({
                "at": stamp, "host": host, "inventory": _text(found.get("inventory")) or None,
                "attachments": found.get("attachments"), "trigger": _text(found.get("trigger")) or None,
                "networks": [n for n in networks if isinstance(n, str)] if isinstance(networks, list) else [],
                "complete": found.get("complete") is True})

    # -- questions ----------------------------------------------------------------------------------

    def outage_in(self, host: str, network: str, since: str, until: str | None) -> Outage | None:
        """The first outage of ``network`` on ``host`` at some moment of [since, until]."""
        for outage in self._by_place.get((host, network), ()):
            if outage.overlaps(since, until):
                return outage
        return None

    def outage_before(self, host: str, network: str, at: str) -> Outage | None:
        """The latest outage of ``network`` on ``host`` that began before ``at``."""
        found = None
        for outage in self._by_place.get((host, network), ()):
            if outage.start < at:
                found = outage
        return found

    def unwatched(self, at: str, named: bool = True) -> str:
        """Why an attachment nobody saw may have held an address at ``at`` ("" when none can have): the logger
        was out of some chain then, or (for an address no event names) ``at`` is before the oldest inventory."""
        for outage in self.outages:
            if outage.covers(at):
                return f"{at} is in an outage: {outage.describe()}"
        if not named and self.inventories:
            missing = sorted(h for h in self.hosts if h not in self.first_complete)
            if missing:
                return (f"the trail has inventories, but none complete of {', '.join(missing) or '(unknown host)'}: "
                        "an attachment whose ADD is not in the trail may have held it unseen")
            since = max(self.first_complete.values())
            if at < since:
                return (f"{at} is before the trail's oldest inventory ({since}, the oldest complete one of every "
                        "host): an attachment whose ADD is not in the trail may have held it unseen")
        return ""

    def to_json(self) -> dict[str, Any]:
        return {"events": sum(self.actions.values()), "actions": dict(self.actions),
                "outages": {"count": len(self.outages), "listed": [o.to_json() for o in self.outages]},
                "dropped": {"events": self.dropped_events, "count": len(self.dropped), "listed": list(self.dropped)},
                "inventories": {"count": self.inventories, "first": self.first_inventory or None,
                                "last": self.last_inventory or None, "listed": list(self.inventory_list)},
                "heartbeats": {"count": self.heartbeats, "first": self.first_heartbeat or None,
                               "last": self.last_heartbeat or None}}
