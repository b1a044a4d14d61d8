"""One event line: the fields every question needs, read cheaply, and the full event when asked.

Most questions decide from six fields (time, command, outcome, container, interface, network) what
to do with a line, and most lines need nothing else. Decoding a whole 2 KB line costs about ten
times as much as finding those fields in it, so a line the plugin wrote (its *canonical* shape:
``{"@timestamp":"`` first, a ``}`` last, no second event glued on) has them sliced out of the bytes
by ``head_from_line``, which relies on the key order ``cni_logger.events`` writes:

    {"@timestamp":"<27 chars>",... ,"event":{... "outcome":"..", "duration":N ...}, ...
     ,"network":{"name":".."}, ... ,"cni":{"command":"..","container_id":"..","netns":"..","ifname":"..", ...

Why slicing is exact for such lines: inside a JSON string every ``"`` is escaped, so a sequence
like ``,"cni":{"command":"`` can only be structure, never text; the first one is the top-level
``cni`` object because every object before it is one the plugin lays out itself, with fixed keys. A
value holding a backslash (an escape), a missing piece or an unexpected order makes it give up
(``None``), and the line is decoded in full instead. ``tests/audit/test_record.py`` checks the two
agree on the plugin's own output, including hostile names and configs.

Coverage events (``docs/coverage-events.md``: what ``install``, ``uninstall`` and ``--watch`` write about
the trail's own coverage) share the canonical shape but have no ``cni.command``, so slicing gives up on
them and they are decoded: ``head_from_doc`` tells them by ``event.dataset`` (``cni.coverage``) and gives
their record no command, its ``coverage`` the action, so no question takes one for an invocation. A
question whose prefilter rejects a line still needs it if it is a coverage event; their message never
starts like an invocation's (``CNI ``), which one comparison at a fixed offset tells (``may_be_coverage``).

What slicing does not notice: a line of the canonical shape whose *middle* was corrupted (bit rot)
still yields its head. Lines that are decoded (every line a question prints or inspects) are
checked in full; the damage the plugin's writer can cause (a cut-short write, with or without the
next event glued on) never has the canonical shape.
"""

from __future__ import annotations

import json
import re
from typing import Any

from cni_logger.audit.timeparse import normalize

ATTEMPT = "attempt"
"""``cni.role`` of the events a bracketed chain's first entry writes (``attempts``)."""
ATTEMPT_ROLE = ATTEMPT.encode()
EVENT_START = b'{"@timestamp":"'
"""Every line the plugin writes starts with this; a second one in a line means a glued event."""
COVERAGE_DATASET = "cni.coverage"
"""``event.dataset`` of coverage events (``docs/coverage-events.md``); invocation events have ``cni.audit``."""
PLUGIN_MESSAGE = b'","message":"CNI '
"""Where an invocation line's ``message`` starts (offset ``MESSAGE_AT``: right after its 27-character time), and
how: every message the plugin writes starts with ``CNI ``, a coverage event's never does. A prefilter's rejected
line without it may be a coverage event, which every question needs: ``may_be_coverage``."""
MESSAGE_AT = 42
_DIGITS = bytes.maketrans(b"123456789", b"000000000")
_STAMP_SHAPE = b"0000-00-00T00:00:00.000000Z"
"""A canonical time (``timeparse.is_canonical``) with its digits made ``0`` (``_DIGITS``): one translation and one
comparison tell it, several times faster than a pattern that checks it character by character."""
_OUTCOME_KEY = b'"outcome":"'
_OUTCOME = re.compile(rb'"outcome":"([^"]*)","duration":(\d+)(?:,"id":"([^"]*)")?[,}]')
_NETWORK_KEY = b',"network":{"name":"'
_BODY = re.compile(rb',"network":\{"name":"([^"]*)"\},"host":\{"name":"([^"]*)"(?:,"hostname":"[^"]*")?\}'
                   rb'(?:,"process":\{"pid":\d+,"parent":\{"pid":\d+\}\})?(?:,"trace":\{"id":"[^"]*"\})?'
                   rb'(?:,"related":\{"ip":\[((?:"[^"]*"(?:,"[^"]*")*)?)\]\})?'
                   rb',"cni":\{"command":"([^"]*)","container_id":"([^"]*)","netns":"[^"]*","ifname":"([^"]*)"'
                   rb'(?:,"role":"([^"]*)")?')
"""From ``network`` to the head of ``cni``, as the plugin writes them one after the other (``events``): the network's
name, the host's, ``process`` and ``trace`` if any, the addresses of ``related`` if any, then command, container id,
netns and ifname (and the bracket ``role``, written right after ifname: without it there, the line has none). One
match reads them all; a line laid out otherwise there is decoded instead."""


class Record:
    """An event line with its identifying fields; ``doc`` decodes the whole event on first use."""

    __slots__ = ("_canonical", "_doc", "_network_at", "_placed", "_related", "attempt", "command", "container_id",
                 "duration", "event_id", "ifname", "key", "line", "network", "node", "outcome", "slot", "timestamp")

    coverage: str = ""
    """A coverage event's ``event.action`` (``logger-left``, ``cni-attachment``, ...; ``docs/coverage-events.md``),
    "" for an invocation's. A coverage event has no ``command``: no question takes it for an invocation. A class
    attribute here, set on ``CoverageRecord`` only: an invocation's record costs nothing more to make."""

    def __init__(self, line: bytes, timestamp: str, command: str, outcome: str, container_id: str,
                 ifname: str, network: str, duration: int | None, doc: dict[str, Any] | None = None,
                 event_id: str = "", attempt: bool = False, node: str = "", related: bytes | None = None,
                 network_at: int = -1, canonical: bool | None = None) -> None:
        self.line = line
        self.timestamp = timestamp
        self.command = command
        self.outcome = outcome
        self.container_id = container_id
        self.ifname = ifname
        self.network = network
        self.key = (network, container_id, ifname)
        """The attachment an ADD creates and its DEL removes: network, container id, interface."""
        self.node = node
        """The node that wrote the event (``host.name``; "" without one)."""
        self.slot = (network, container_id, ifname, node)
        """``key`` and ``node``: an attachment as the trackers key it, since merged trails of several nodes may hold
        attachments with the same network, container id and interface. Made here, once per record, because every
        tracker asks it of every ADD, CHECK and DEL it reads."""
        self.duration = duration
        self._doc = doc
        self.event_id = event_id
        """``event.id``: the de-duplication key ("" when the line has none)."""
        self._canonical = canonical
        self.attempt = attempt
        """Written by the attempt entry of a bracketed chain (``cni.role`` is ``attempt``, see ``attempts``): not an
        attachment. Read with the head, sliced or decoded, as it costs nothing then."""
        self._placed: Placed | None = None
        """``placed``, once asked (the tracker and occupancy both ask it of every ADD)."""
        self._related = related
        """Sliced from a canonical line (``head_from_line``): ``related.ip`` as the line spells it (the quoted addresses
        and the commas between them; empty without it); ``None`` otherwise."""
        self._network_at = network_at
        """Sliced from a canonical line: where its ``network`` object starts (``orchestrator``, if any, ends there)."""

    @property
    def canonical(self) -> bool:
        """``is_canonical_line(line)``, computed once (a sliced record knows it: ``head_from_line`` is given canonical
        lines only)."""
        if self._canonical is None:
            self._canonical = is_canonical_line(self.line)
        return self._canonical

    @property
    def doc(self) -> dict[str, Any]:
        """The decoded event (``{}`` if the line, taken by its head alone, turns out not to decode)."""
        if self._doc is None:
            try:
                doc = json.loads(self.line)
            except (ValueError, RecursionError):
                doc = None
            self._doc = doc if isinstance(doc, dict) else {}
        return self._doc

    def forget(self) -> Record:
        """Drop the decoded event (kept records then cost their line only); returns self."""
        self._doc = None
        return self

    @property
    def ok(self) -> bool:
        return self.outcome == "success"


class CoverageRecord(Record):
    """A coverage event's record: ``coverage`` is its action."""

    __slots__ = ("coverage",)  # shadows the class attribute of Record, for these records only

    def __init__(self, action: str, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.coverage = action


def may_be_coverage(line: bytes) -> bool:
    """Could this canonical line be a coverage event (not an invocation's: its message does not start ``CNI ``)?

    Asked only of the lines a prefilter rejects, so that a question that passes over most lines unread still
    sees the trail's coverage: one comparison at a fixed offset, no search.
    """
    return not line.startswith(PLUGIN_MESSAGE, MESSAGE_AT)


def is_canonical_line(line: bytes) -> bool:
    """Shaped like a complete line of the plugin's: cheap, and false for every cut-short write.

    A second event start needs a second ``@``; looking for that one byte first (``memchr``) spares the
    slower search for the whole start in the many lines that have no other ``@``.
    """
    return line.startswith(EVENT_START) and line.endswith(b"}") and (
        line.find(b"@", 3) < 0 or line.find(EVENT_START, 1) < 0)


def head_from_line(line: bytes) -> Record | None:
    """The identifying fields sliced from a canonical line, or ``None`` to decode it in full instead.

    The time is where every canonical line has it, its shape checked (``_STAMP_SHAPE``). The other pieces are
    located with ``bytes.find`` (fast) and read with an anchored pattern: outcome and duration (adjacent in
    ``event``), and everything from ``network`` to the head of ``cni`` (``_BODY``). The
    addresses of ``related`` come with it, for ``placed``. The patterns read a string up to its next quote (``re``
    runs that as a tight loop, several times faster than a class that also excludes the backslash), so escapes are
    refused by a search for a backslash in what the patterns read (when the line has one at all, which one search of
    the whole line tells): a line with one there (a network name with a quote, say) is decoded instead.

    Bytes are searched with ``find``, never ``in``: ``needle in line`` first tries the needle as an integer (a byte
    value) and raises and clears a ``TypeError`` when it is not, which costs more than the search.
    """
    # In the order they appear, each search starting where the last one matched.
    start = line.find(_OUTCOME_KEY)
    if start < 0:
        return None
    event = _OUTCOME.match(line, start)
    at = line.find(_NETWORK_KEY, start)
    if at < 0 or event is None:
        return None
    body = _BODY.match(line, at)
    stamp = line[15:42]  # after ``EVENT_START``, which every canonical line starts with
    if body is None or stamp.translate(_DIGITS) != _STAMP_SHAPE or line[42:43] != b'"':
        return None
    if line.find(b"\\") >= 0 and (line.find(b"\\", start, event.end()) >= 0 or
                                  line.find(b"\\", at, body.end()) >= 0):
        return None
    outcome, duration, event_id = event.groups()
    network, node, related, command, container_id, ifname, role = body.groups()
    try:
        return Record(line, stamp.decode(), command.decode(), outcome.decode(), container_id.decode(),
                      ifname.decode(), network.decode(), int(duration), None,
                      event_id.decode() if event_id else "", role == ATTEMPT_ROLE, node.decode(),
                      related or b"", at, True)
    except UnicodeDecodeError:
        return None


def head_from_doc(line: bytes, doc: Any) -> Record | None:
    """The identifying fields of a decoded line; ``None`` when it is not an event (no ``event`` object)."""
    if not isinstance(doc, dict) or not isinstance(doc.get("event"), dict):
        return None
    event = doc["event"]
    cni = _dict(doc.get("cni"))
    if event.get("dataset") == COVERAGE_DATASET:
        return _coverage_record(line, doc, event, cni)
    command = cni.get("command")
    if not isinstance(command, str):  # not the plugin's layout: what ECS says
        action = _text(event.get("action"))
        command = action[4:].upper() if action.startswith("cni-") else ""
    duration = event.get("duration")
    stamp = normalize(_text(doc.get("@timestamp"))) or ""
    return Record(
        line,
        stamp,
        command,
        _text(event.get("outcome")),
        _text(cni.get("container_id")) or _text(_dict(doc.get("container")).get("id")),
        _text(cni.get("ifname")),
        _text(_dict(doc.get("network")).get("name")) or _text(_dict(cni.get("config")).get("name")),
        duration if isinstance(duration, int) and not isinstance(duration, bool) else None,
        doc,
        _text(event.get("id")),
        cni.get("role") == ATTEMPT,
        host(doc),
    )


def _coverage_record(line: bytes, doc: dict[str, Any], event: dict[str, Any], cni: dict[str, Any]) -> Record:
    """A coverage event: no command, never an outcome that counts; a ``cni-attachment`` keeps its attachment."""
    action = _text(event.get("action")) or "(coverage)"
    network = _text(_dict(doc.get("network")).get("name"))
    return CoverageRecord(action, line, normalize(_text(doc.get("@timestamp"))) or "", "", _text(event.get("outcome")),
                          _text(cni.get("container_id")), _text(cni.get("ifname")), network, None, doc,
                          _text(event.get("id")), False, host(doc))


_ORCHESTRATOR_KEY = b',"orchestrator":{'
_ORCHESTRATOR = re.compile(rb',"orchestrator":\{(?:"type":"[^"]*",)?(?:"namespace":"([^"]*)",)?'
                           rb'"resource":\{(?:"type":"[^"]*",)?(?:"name":"([^"]*)")?[,}]')
Placed = tuple[str, list[str], str, str]
"""(host, addresses without prefix length, namespace, pod): where an attachment lives, and whose it is."""


def placed(rec: Record) -> Placed:
    """Where an attachment's addresses live and whose they are, read once per record.

    An address is one holder's at a time only on one network of one host (host-local allocates per
    node): ``intervals`` needs the addresses of every ADD, ``occupancy`` its addresses, pod and
    namespace. Completed from what ``head_from_line`` sliced when it can be (``_sliced_placed``), else
    read from the decoded event.
    """
    found = rec._placed
    if found is None:
        sliced = None
        if rec._doc is None:
            if rec._related is not None:
                sliced = _sliced_placed(rec)
            elif rec.canonical:  # decoded once, and forgotten since
                sliced = sliced_placed(rec.line)
        if sliced is None:
            doc = rec.doc
            sliced = host(doc), addresses(doc), namespace(doc), pod(doc)
        found = rec._placed = sliced
    return found


def sliced_placed(line: bytes) -> Placed | None:
    """``placed`` of a canonical line, from its bytes; ``None`` to decode it instead."""
    head = head_from_line(line)
    return None if head is None else _sliced_placed(head)


def _sliced_placed(rec: Record) -> Placed | None:
    """``placed`` of a record sliced from its line: its node and ``related`` came with the head, and ``orchestrator``
    is the object right before ``network`` (found backwards from there, by the reasoning of ``head_from_line``, escapes
    refused the same way). The plugin writes it whenever ``K8S_POD_*`` arguments are."""
    line, at = rec.line, rec._network_at
    namespace_ = pod_ = b""
    start = line.rfind(_ORCHESTRATOR_KEY, 0, at)
    if start >= 0:
        orchestrator = _ORCHESTRATOR.match(line, start)
        if orchestrator is None or line.find(b"\\", start, orchestrator.end()) >= 0:
            return None
        namespace_, pod_ = orchestrator.groups(b"")
    elif line.find(b'"K8S_POD_', at) >= 0:
        return None  # orchestrator.* is written whenever these are: something unusual
    listed = rec._related
    ips = [a[1:-1].decode("utf-8", "surrogateescape") for a in listed.split(b",")] if listed else []
    return rec.node, ips, namespace_.decode("utf-8", "surrogateescape"), pod_.decode("utf-8", "surrogateescape")


# -- fields of a decoded event ---------------------------------------------------------------------


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def host(doc: dict[str, Any]) -> str:
    """The node that wrote the event: ``host.name`` (merged trails of several nodes share networks and ranges)."""
    return _text(_dict(doc.get("host")).get("name"))


def pod(doc: dict[str, Any]) -> str:
    """The pod (Kubernetes) or container name (Podman): ``orchestrator.resource.name`` or K8S_POD_NAME."""
    name = _text(_dict(_dict(doc.get("orchestrator")).get("resource")).get("name"))
    return name or _text(_dict(_dict(doc.get("cni")).get("args")).get("K8S_POD_NAME"))


def namespace(doc: dict[str, Any]) -> str:
    """``orchestrator.namespace`` or K8S_POD_NAMESPACE."""
    name = _text(_dict(doc.get("orchestrator")).get("namespace"))
    return name or _text(_dict(_dict(doc.get("cni")).get("args")).get("K8S_POD_NAMESPACE"))


def _prev_result(doc: dict[str, Any]) -> dict[str, Any]:
    return _dict(_dict(doc.get("cni")).get("prev_result"))


def cached_result(doc: dict[str, Any]) -> bool:
    """The event carries the runtime's cached result (``cni.prev_result``), as a DEL of an attachment that was
    ADDed does; a DEL without one and without an ADD is the clean-up after an ADD that failed."""
    cni = doc.get("cni")
    return isinstance(cni, dict) and "prev_result" in cni


def cidrs(doc: dict[str, Any]) -> list[str]:
    """The result's addresses as recorded (``10.244.1.17/24``)."""
    ips = _prev_result(doc).get("ips")
    found = [_text(_dict(ip).get("address")) for ip in ips] if isinstance(ips, list) else []
    return list(dict.fromkeys(a for a in found if a))


def addresses(doc: dict[str, Any]) -> list[str]:
    """The addresses an event names, without prefix length: the result's ips and ``related.ip``."""
    found = [a.split("/", 1)[0] for a in cidrs(doc)]
    related = _dict(doc.get("related")).get("ip")
    if isinstance(related, list):
        found.extend(a for a in related if isinstance(a, str) and a)
    return list(dict.fromkeys(found))


def interfaces(doc: dict[str, Any]) -> list[dict[str, str]]:
    """The result's interfaces: ``name``, ``mac`` and, for the container's own, ``sandbox``."""
    found = _prev_result(doc).get("interfaces")
    if not isinstance(found, list):
        return []
    return [{k: v for k, v in item.items() if k in ("name", "mac", "sandbox") and isinstance(v, str)}
            for item in found if isinstance(item, dict)]


def error_message(doc: dict[str, Any]) -> str:
    return _text(_dict(doc.get("error")).get("message"))
