"""Attachments as time intervals: an ADD opens one, the matching DEL closes it (who-had, leaks).

An attachment is named by (network, container id, interface name), the triple CNI itself uses to
name one (``Interval.key``), and identified by that triple and its node (``Slot``: ``Record.slot``): merged
trails of several nodes may hold attachments with the same triple (sandboxes named by the runtime, ids
reused, a node restored), and one node's ADD, DEL, CHECK, GC or inventory never pairs with, closes or
supersedes another node's attachment. Only *successful* invocations change state: a failed ADD left
nothing attached (the runtime cleans up with a DEL), and a failed DEL did not tear anything down (the
logger runs first in the DEL chain, so a runtime retries the whole DEL).

* ADD opens an interval at its timestamp. With an address given (who-had), only an ADD whose result
  holds the address opens one, and a later ADD of the same attachment without it closes it. A second
  ADD of an attachment that is open (with the address or without) means its DEL was lost: the interval
  ends there, but its true end is only known to lie after its last evidence (``end_known``).
* DEL closes the open interval of its attachment. DEL events usually carry the cached result, so
  they name the address too, but the interval closes at the DEL either way.
* GC (CNI 1.1) closes every open interval of its network *on its host* that is not in
  ``cni.valid_attachments`` (a runtime lists its own node's attachments only; unless that list was cut short
  by the plugin's size caps: then nothing is concluded).
* A successful ADD of an address that another attachment holds on the same network and host ends
  that holder's interval: *superseded* (``closed_by``), since an IPAM hands an address to one
  attachment at a time, so the earlier holder's DEL must have been lost. Its end is then known
  only to lie between its last evidence (``last_seen``) and the new ADD. Should the superseded
  holder show up again holding the address (a CHECK, or a DEL with its cached result), both held it
  at once: a *conflict*, and its interval runs to that evidence.
* An event of a bracketed chain's attempt entry (``attempts``) changes nothing: it says an ADD
  started, not that anything is attached.
* A CHECK, or a DEL that failed, of an attachment with no open interval is evidence that it existed
  although its ADD is not in the trail (rotated away): it opens an interval with an unknown start,
  ``seen`` being the first evidence. A CHECK's interval also supersedes the open holder of its addresses on the
  same network and host, as an ADD does: the address is held by the new attachment now, so the old one's DEL was
  lost. A successful DEL with no open interval becomes a closed interval of its own: in leaks, a "DEL without
  ADD"; its cached result, if any, says what it held. An unknown start is never earlier than the latest end of a
  previous holding of its addresses on that network and host (``Interval.floor``), with an address or without.

* Coverage events (``coverage``, ``docs/coverage-events.md``): an inventory's ``cni-attachment`` is
  evidence of its attachment, as a CHECK is (an attachment that ended lately is the cache lagging its
  DEL: nothing). A complete ``logger-inventory`` of a host ends every open interval of that host on the
  networks it covers that it does not list: *unrecorded* (``closed_by`` ``inventory``), its end only known
  to lie between its last evidence and the inventory, as a superseded end. Evidence newer than
  ``coverage.INVENTORY_GRACE`` before the inventory keeps an interval open (the cache is written after the
  logger recorded the ADD), and an incomplete inventory, or one whose attachment lines are not all in the
  trail, ends nothing.
* An outage (the logger out of the network's chain on the interval's host) after an interval's last
  evidence is where its DEL may have happened unrecorded (``Interval.unwatched``): from then on it is
  only *possibly* held, and noted, even when a DEL with the cached result follows (a restart DELs and
  ADDs the same attachment again, and both may have happened while the logger was out).

Timestamps are the invocation's start. The address was allocated a little before the ADD event
(the logger runs last in the ADD chain) and released a little after the DEL event (it runs first
in the DEL chain), so an interval is taken as closed at both ends: ``seen <= at <= end``.

Memory: only open intervals are kept (their ADD line, not the decoded event), plus a bounded set
of recently ended attachments that tells a repeated DEL (runtimes retry DEL; it must be idempotent)
from a DEL without ADD.

Reading less (who-had, ``Tracker.prefilter``). Decoding every line is what costs; who-had decodes
only lines that could change its answer, and that set is exact, not a guess:

* lines naming the address: every ADD, CHECK and DEL that carries it (DEL usually carries the cached
  result, so usually it is found this way too);
* while an interval is open, lines naming its container id: the DEL that closes it may carry no
  result at all (no cached result, e.g. after a runtime restart), and a re-ADD without the address
  ends it too; both still name the container, which is all a DEL needs to match;
* while an interval is open, every GC line (GC names no container, only the ones to keep).

So a DEL without the address is never missed for a holder of the address; DELs of containers that
never held it are not read, and need not be. What the byte test relies on is the spelling: the
address must appear in the line in some spelling, which for IPv4 is unique and for IPv6 is tested
loosely enough to let every spelling through (``query.address_test``). The cost that remains is proportional to
the lines that match: an address that appears in every line (a gateway) is decoded everywhere.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from cni_logger.audit.coverage import ATTACHMENT, INVENTORY, INVENTORY_GRACE, Outage, details
from cni_logger.audit.query import canonical_address
from cni_logger.audit.record import Record, addresses, placed
from cni_logger.audit.timeparse import from_epoch, to_epoch

if TYPE_CHECKING:
    from cni_logger.audit.evidence import Evidence, Stretch

Key = tuple[str, str, str]
"""(network, container id, interface name): how CNI names an attachment, and how answers show it."""
Slot = tuple[str, str, str, str]
"""(network, container id, interface name, host): an attachment's identity in the tracker, its node included."""
Place = tuple[str, str, str]
"""(network, host, address): where an address belongs to one attachment at a time."""
HELD, POSSIBLY = "held", "possibly"
RECENT_LIMIT = 16384
"""Ended attachments remembered (as hashes, ~100 bytes each) to recognise a repeated DEL: runtimes retry
within minutes, long before this many other attachments have come and gone."""
GC_MARK = b',"cni":{"command":"GC"'
PENDING_INVENTORIES = 16
"""Inventories whose ``cni-attachment`` lines are being gathered at once (one per host writing at the same time)."""


class Interval:
    """One attachment's life, as far as the trail shows it."""

    __slots__ = ("addresses", "clock_step", "closed_by", "closing", "conflict", "end", "floor", "host", "key",
                 "last_seen", "opened", "seen", "slot", "start", "superseded_by")

    def __init__(self, key: Key, opened: Record, start: str | None, slot: Slot | None = None) -> None:
        self.key = key
        self.slot: Slot = (*key, "") if slot is None else slot
        """Its identity in the tracker: ``key`` and its node (``host``; ``Tracker.open``'s keys)."""
        self.opened = opened
        self.start = start
        self.seen = opened.timestamp
        self.last_seen = opened.timestamp
        """The latest evidence that it still held its addresses (ADD, CHECK; the DEL is ``end``)."""
        self.end: str | None = None
        self.closing: Record | None = None
        self.closed_by = ""
        self.floor: str | None = None
        """Start unknown: the earliest it can have started (the previous holder's end), if known."""
        self.superseded_by: Record | None = None
        self.conflict = False
        self.host = self.slot[3]
        self.addresses: tuple[str, ...] = ()
        self.clock_step = ""
        """Set when the closing event's time precedes the opening one's: the recorded times, as written."""

    def covers(self, at: str) -> bool:
        return self.seen <= at and (self.end is None or at <= self.end)

    def certainty(self, at: str, found: Evidence | None = None) -> str | None:
        """Did it hold its address at ``at``: ``HELD`` (the trail shows it), ``POSSIBLY`` (its start or end
        is unknown around then), or ``None``."""
        answer = HELD
        if at < self.seen:
            if self.start is not None or (self.floor is not None and at < self.floor):
                return None
            answer = POSSIBLY
        if self.end is not None and at > self.end:
            return None
        if not self.end_known and self.end is not None and at > self.last_seen:
            return POSSIBLY
        if self.end is None and found is not None:
            lost = self.lost_end(found)
            if lost is not None and at >= lost.after:
                return POSSIBLY
        if answer == HELD and found is not None and at > self.last_seen and found.coverage.outages \
                and self.unwatched(found, at) is not None:
            return POSSIBLY
        return answer

    def unwatched(self, found: Evidence, until: str | None) -> Outage | None:
        """An outage of its network on its host between its last evidence and ``until`` (``None``: its end, or the
        end of the trail while it is open), where its DEL may have happened unrecorded; ``None`` when there is none.

        A DEL recorded after the outage does not vouch for the attachment during it, even with the cached result:
        a restart (Podman's, cnitool's) DELs and ADDs the same attachment again, and both may have been then."""
        return found.coverage.outage_in(self.host, self.key[0], self.last_seen, self.end if until is None else until)

    @property
    def end_known(self) -> bool:
        """Closed by its DEL or a GC (or shown to be in conflict); not when its DEL is missing: superseded by
        another attachment's ADD of the address, or ended by an ADD of its own (a re-ADD without a DEL)."""
        return self.closed_by not in ("superseded", "ADD", "inventory") or self.conflict

    def lost_end(self, found: Evidence) -> Stretch | None:
        """Still open: a damaged stretch after its last evidence where its DEL may have been lost."""
        return found.lost_after(self.last_seen, self.key[1])

    @property
    def orphan(self) -> bool:
        """A DEL with nothing before it: no ADD (nor any evidence of the attachment) in the trail."""
        return self.closing is self.opened


class _Recent:
    """The last ``limit`` ended attachments, as key hashes in a ring (a few dozen bytes each)."""

    def __init__(self, limit: int) -> None:
        self.limit = max(limit, 1)
        self.ring: list[int | None] = [None] * self.limit
        self.position = 0
        self.counts: dict[int, int] = {}

    def add(self, key: Slot) -> None:
        digest = hash(key)
        evicted = self.ring[self.position]
        if evicted is not None:
            if self.counts[evicted] > 1:
                self.counts[evicted] -= 1
            else:
                del self.counts[evicted]
        self.ring[self.position] = digest
        self.counts[digest] = self.counts.get(digest, 0) + 1
        self.position = (self.position + 1) % self.limit

    def __contains__(self, key: Slot) -> bool:
        return hash(key) in self.counts


class Tracker:
    """Feeds on records in trail order; yields intervals as they close, keeps the open ones."""

    def __init__(self, address: str | None = None, recent_limit: int = RECENT_LIMIT) -> None:
        self.address = canonical_address(address) if address else None
        self.open: dict[Slot, Interval] = {}
        """The open intervals, by attachment and node (``Interval.slot``)."""
        self.open_ids: dict[bytes, int] = {}
        """With an address: container ids (as bytes) of open intervals; a line without any cannot close one."""
        self.recent = _Recent(recent_limit)
        self.holders: dict[Place, Slot] = {}
        """The open attachment holding each address, to tell a re-use (superseding) when it is ADDed again."""
        self.superseded: dict[Slot, Interval] = {}
        """Recently superseded intervals (at most ``recent_limit``), to notice a conflict or a late DEL."""
        self.recent_limit = max(recent_limit, 1)
        self.last_end: dict[Place, str] = {}
        """The latest end of a holding of each address per (network, host): the floor of a later unknown start (at
        most ``recent_limit`` addresses; a forgotten one only loses its floor, which makes answers more cautious)."""
        self.listed: dict[str, set[Slot]] = {}
        """The attachments each inventory being read lists so far (``cni-attachment``), by inventory id."""
        self.opened: Interval | None = None
        """The interval opened last (by the record whose ``opened`` it is: ``occupancy`` holds its addresses)."""

    def _holds(self, rec: Record) -> bool:
        if self.address is None:
            return True
        return self.address in {canonical_address(a) for a in addresses(rec.doc)}

    def _placed(self, rec: Record) -> tuple[str, tuple[str, ...]]:
        host, found, _, _ = placed(rec)
        if self.address is not None:
            return host, (self.address,)
        return host, tuple(found)  # as the IPAM spelled them: one IPAM per network spells them alike

    def _open(self, rec: Record, key: Slot, start: str | None) -> Interval:
        held = self._placed(rec)[1]
        host = key[3]
        interval = self.open[key] = self.opened = Interval(rec.key, rec.forget(), start, key)
        interval.addresses = held
        if start is None:
            interval.floor = self._floor(key[0], host, held)
        if self.address is not None:  # only who-had's prefilter needs them
            cid = key[1].encode("utf-8", "surrogatepass")
            self.open_ids[cid] = self.open_ids.get(cid, 0) + 1
        return interval

    def _floor(self, network: str, host: str, held: tuple[str, ...]) -> str | None:
        """The earliest an attachment first seen holding ``held`` can have started: the latest end of a previous
        holding of any of them on the same network and host (an IPAM hands an address to one at a time)."""
        ends = [end for end in (self.last_end.get((network, host, a)) for a in held) if end is not None]
        return max(ends) if ends else None

    def _ended(self, network: str, host: str, held: tuple[str, ...], stamp: str, releasing: Slot | None = None) -> None:
        """``held`` let go at ``stamp`` (the floor of a later unknown start); ``releasing``: the attachment that
        held them, whose hold on each address ends here too (one place per address, for both)."""
        holders, last_end = self.holders, self.last_end
        for address in held:
            place = (network, host, address)
            if releasing is not None and holders.get(place) == releasing:
                del holders[place]
            previous = last_end.pop(place, None)  # re-inserted: the most recently ended are kept
            last_end[place] = stamp if previous is None or stamp > previous else previous
        while len(last_end) > self.recent_limit:
            del last_end[next(iter(last_end))]

    def _close(self, key: Slot, rec: Record, how: str) -> Interval:
        interval = self.open.pop(key)
        interval.end, interval.closing, interval.closed_by = rec.timestamp, rec.forget(), how
        self._ended(key[0], interval.host, interval.addresses, rec.timestamp, releasing=key)
        if rec.timestamp < interval.seen:
            # The trail is read in write order, so the clock was stepped back between the two events:
            # one of the two times is wrong, and which one the trail cannot tell. Never an interval that
            # ends before it starts: the start is unknown (no later than the earlier time) and the end
            # the later one; ``clock_step`` keeps what was recorded, for the caller to say so.
            interval.clock_step = f"opened at {interval.seen}, closed by {how} at {rec.timestamp}"
            interval.start, interval.seen, interval.end = None, rec.timestamp, interval.seen
        if self.address is not None:
            cid = key[1].encode("utf-8", "surrogatepass")
            if self.open_ids[cid] > 1:
                self.open_ids[cid] -= 1
            else:
                del self.open_ids[cid]
        self.recent.add(key)
        return interval

    def _supersede(self, key: Slot, rec: Record) -> tuple[Interval, ...]:
        """A new holder of ``key``'s addresses: end whichever other open attachment held them there."""
        interval = self.open[key]
        ended: list[Interval] = []
        for address in interval.addresses:
            place = (key[0], interval.host, address)
            other = self.holders.get(place)
            if other is not None and other != key and other in self.open:
                old = self._close(other, rec, "superseded")
                old.superseded_by = old.closing
                self.superseded[other] = old
                if len(self.superseded) > self.recent_limit:
                    del self.superseded[next(iter(self.superseded))]
                ended.append(old)
            self.holders[place] = key
        return tuple(ended)

    def _came_back(self, key: Slot, rec: Record, how: str) -> bool:
        """Evidence of a superseded attachment: a conflict if it still names the address; ``True`` if it was one."""
        interval = self.superseded.get(key)
        if interval is None:
            return False
        if how == "DEL":
            del self.superseded[key]
        if self._holds(rec) and (self.address is not None or self._placed(rec)[1]):
            interval.conflict = True
            interval.last_seen = rec.timestamp
            if how == "DEL":
                interval.end, interval.closed_by = rec.timestamp, "DEL"
            elif interval.end is not None and rec.timestamp > interval.end:
                interval.end = rec.timestamp  # it held the address at least until this evidence
        return True

    def feed(self, rec: Record) -> tuple[Interval, ...]:
        """Apply one event; return the intervals it closed (mostly none: a tuple is cheaper than a generator)."""
        if rec.attempt:
            return ()  # bracket mode's first entry: it records that an ADD started, not an attachment
        command = rec.command
        if command == "ADD":
            key = rec.slot
            if not rec.ok:
                self.recent.add(key)
            elif self._holds(rec):
                # Already open: a second ADD without a DEL between them (CNI never re-ADDs an attachment that
                # exists): the DEL was lost, so the old interval ends, its end unknown, and a new one starts.
                ended = (self._close(key, rec, "ADD"),) if key in self.open else ()
                self._open(rec, key, rec.timestamp)
                return ended + self._supersede(key, rec)
            elif key in self.open:
                return (self._close(key, rec, "ADD"),)
        elif command == "DEL":
            key = rec.slot
            if key in self.open:
                if rec.ok:
                    return (self._close(key, rec, "DEL"),)
            elif (key in self.superseded and rec.ok and self._came_back(key, rec, "DEL")) or key in self.recent \
                    or not self._holds(rec):
                pass
            elif rec.ok:
                self.recent.add(key)
                orphan = Interval(rec.key, rec.forget(), None, key)
                orphan.end, orphan.closing, orphan.closed_by = rec.timestamp, orphan.opened, "DEL"
                orphan.addresses = self._placed(rec)[1]
                orphan.floor = self._floor(key[0], orphan.host, orphan.addresses)
                self._ended(key[0], orphan.host, orphan.addresses, rec.timestamp)
                return (orphan,)
            else:
                self._open(rec, key, None)
        elif command == "CHECK":
            key = rec.slot
            if rec.ok and key in self.open:
                self.open[key].last_seen = rec.timestamp
            elif rec.ok and key in self.superseded:
                self._came_back(key, rec, "CHECK")
            elif rec.ok and self._holds(rec):
                # Its ADD is not in the trail, but it holds the address now: whoever held it before on the same
                # network and host let it go unrecorded, as when an ADD of the address supersedes it.
                self._open(rec, key, None)
                return self._supersede(key, rec)
        elif command == "GC" and rec.ok and self.open:
            return self._collect(rec)
        elif rec.coverage:
            return self._coverage(rec)
        return ()

    def _coverage(self, rec: Record) -> tuple[Interval, ...]:
        """An inventory's ``cni-attachment`` is evidence of its attachment, as a CHECK is (it opens an interval
        with an unknown start when none is open; an attachment that ended lately is the cache lagging its DEL, not a
        new one); a complete ``logger-inventory`` ends what it does not list (``_inventory``)."""
        if rec.coverage == ATTACHMENT:
            key = rec.slot
            inventory = str(details(rec).get("inventory", ""))
            listed = self.listed.get(inventory)
            if listed is None:
                if len(self.listed) >= PENDING_INVENTORIES:
                    del self.listed[next(iter(self.listed))]
                listed = self.listed[inventory] = set()
            listed.add(key)
            if key in self.open:
                self.open[key].last_seen = max(self.open[key].last_seen, rec.timestamp)
            elif key in self.superseded:
                self._came_back(key, rec, "CHECK")
            elif key not in self.recent and self._holds(rec):
                self._open(rec, key, None)
        elif rec.coverage == INVENTORY and self.open:
            return self._inventory(rec)
        elif rec.coverage == INVENTORY:
            self.listed.pop(str(details(rec).get("inventory", "")), None)
        return ()

    def _inventory(self, rec: Record) -> tuple[Interval, ...]:
        """A complete inventory of a host's attachments on its networks: every open interval there that it does not
        list has ended, its DEL not recorded (``closed_by`` ``inventory``: the end lies between its last evidence
        and the inventory). Nothing is concluded from an incomplete one, from one whose ``cni-attachment`` lines are
        not all in the trail, or about evidence in the last ``INVENTORY_GRACE`` seconds before it."""
        found = details(rec)
        listed = self.listed.pop(str(found.get("inventory", "")), set())
        count, networks = found.get("attachments"), found.get("networks")
        if found.get("complete") is not True or not isinstance(networks, list) or not rec.timestamp or (
                isinstance(count, int) and count > len(listed)):
            return ()
        host = rec.node
        try:
            cutoff = from_epoch(to_epoch(rec.timestamp) - INVENTORY_GRACE)
        except ValueError:
            return ()
        ended = [key for key, interval in self.open.items() if key[0] in networks and interval.host == host
                 and key not in listed and interval.last_seen < cutoff]
        return tuple(self._close(key, rec, "inventory") for key in ended)

    def _collect(self, rec: Record) -> tuple[Interval, ...]:
        """GC: close the network's open intervals on the GC's host that the runtime no longer lists as valid.

        A GC is one node's runtime speaking of its own attachments: with several nodes' trails merged, the
        same network name (and address range) is on every node, and another node's attachments are not in
        this runtime's list because it never knew them, not because they ended."""
        valid = _valid_attachments(rec.doc)
        if valid is None:
            return ()
        host = rec.node
        return tuple(self._close(key, rec, "GC") for key in [
            k for k, interval in self.open.items()
            if k[0] == rec.network and interval.host == host and (k[1], k[2]) not in valid])

    def prefilter(self, names_address: Callable[[bytes], bool]) -> Callable[[bytes], bool]:
        """A raw-line test for who-had: the address (``query.address_test``), or (while intervals are
        open) a line that could close one: it names an open interval's container, or it is a GC. (A
        superseded holder's conflict needs a line naming the address; its DEL without one changes
        nothing: neither needs more.)"""
        open_ids = self.open_ids

        def prefilter(line: bytes) -> bool:
            if names_address(line):
                return True
            if not open_ids:
                return False
            if line.find(GC_MARK) >= 0:
                return True
            return any(line.find(cid) >= 0 for cid in open_ids)

        return prefilter


def _valid_attachments(doc: dict[str, Any]) -> set[tuple[str, str]] | None:
    """GC's list of attachments still in use, or ``None`` if it is missing or was cut short."""
    cni = doc.get("cni")
    if not isinstance(cni, dict):
        return None
    listed = cni.get("valid_attachments")
    truncated = cni.get("truncated")
    if not isinstance(listed, list) or (isinstance(truncated, list) and "cni.valid_attachments" in truncated):
        return None
    valid: set[tuple[str, str]] = set()
    for item in listed:
        if not isinstance(item, dict):
            return None  # "[truncated: N more items]": the list is incomplete
        cid, ifname = item.get("containerID"), item.get("ifname")
        if isinstance(cid, str) and isinstance(ifname, str):
            valid.add((cid, ifname))
    return valid


CONFLICT_NOTE, DEL_STILL_MISSING = "conflict: ", "; its DEL is missing"


def doubtful(notes: list[str]) -> bool:
    """Does any note say what the trail cannot vouch for? A proven conflict whose end is its DEL is a fact, not a
    doubt: a row noted with that alone is a certain answer."""
    return any(not note.startswith(CONFLICT_NOTE) or note.endswith(DEL_STILL_MISSING) for note in notes)


def qualifications(interval: Interval, found: Evidence | None) -> dict[str, Any]:
    """What the trail cannot vouch for in an interval (``notes``), with the facts behind it: one wording for
    ``who-had IP``, ``who-had CIDR``, ``leaks`` and ``report``."""
    notes: list[str] = []
    if interval.start is None:
        notes.append("start unknown: no ADD in the trail" +
                     (f"; not before {interval.floor} (the previous holder's end)" if interval.floor else ""))
    superseded = interval.superseded_by
    if superseded is not None and interval.conflict:
        # Both held the address at once: proven, not a doubt. Its end is its DEL when that came (the ENDED BY
        # column says so too), else only known to follow its last evidence.
        notes.append(f"{CONFLICT_NOTE}{superseded.container_id} {superseded.ifname} was given the address "
                     f"({superseded.command} at {superseded.timestamp}) while this held it, at least until "
                     f"{interval.last_seen}" + ("" if interval.closed_by == "DEL" else DEL_STILL_MISSING))
    elif superseded is not None:
        notes.append(f"DEL missing: superseded by {superseded.container_id} {superseded.ifname} "
                     f"({superseded.command} at {superseded.timestamp}); held at least until {interval.last_seen}")
    if interval.closed_by == "ADD":
        notes.append(f"DEL missing: the attachment was ADDed again at {interval.end}; held at least until "
                     f"{interval.last_seen}")
    if interval.closed_by == "inventory":
        notes.append(f"DEL not recorded: not listed by the inventory of {interval.host or 'its host'} at "
                     f"{interval.end}; held at least until {interval.last_seen}")
    lost = interval.lost_end(found) if found is not None and interval.end is None else None
    if lost is not None:
        notes.append(f"its DEL may be lost: {lost.describe()}")
    outage = interval.unwatched(found, None) if found is not None and found.coverage.outages else None
    if outage is not None:
        notes.append(f"possibly deleted while the logger was out, unrecorded: {outage.describe()}")
    before = found.coverage.outage_before(interval.host, interval.key[0], interval.seen) \
        if found is not None and interval.start is None and found.coverage.outages else None
    if before is not None:
        notes.append(f"its ADD may have happened while the logger was out: {before.describe()}")
    return {"last_seen": interval.last_seen, "conflict": interval.conflict,
            "superseded_by": None if superseded is None else {
                "container_id": superseded.container_id, "ifname": superseded.ifname, "at": superseded.timestamp},
            "notes": notes}
