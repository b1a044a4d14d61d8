"""Which events a question is about: the filters of ``events``, ``stats`` and ``follow``.

A filter is applied in three steps, cheapest first, each allowed to let through what the next one
rejects but never to reject what it would accept:

1. ``prefilter(line)``: every literal value must occur in the raw bytes (a pod name that is not in
   the line cannot be the line's pod). Values are compared as the plugin writes them (UTF-8, JSON
   escapes only for ``"``, ``\\`` and control characters), so values with those are not prefiltered.
2. ``matches_head(record)``: time, command, outcome, container, network from the sliced fields.
3. ``matches_doc(record)``: pod, namespace, host and address, from the decoded event.

``--host`` (``on_host``) is also asked by the questions that follow attachments (``who-had``, ``leaks``,
``timeline``, ``report``): they take only the chosen nodes' records, so that each node's attachments are told
as that node's trail alone would tell them.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from functools import cached_property

from cni_logger.audit import record
from cni_logger.audit.record import Record

_GLOB = frozenset("*?[")


def is_glob(value: str) -> bool:
    return not _GLOB.isdisjoint(value)


def literal_bytes(value: str) -> bytes | None:
    """``value`` as it appears inside the plugin's JSON, or ``None`` if JSON would escape part of it."""
    if not value or any(c in '"\\' or ord(c) < 0x20 for c in value):
        return None
    return value.encode("utf-8", "surrogatepass")


def canonical_address(text: str) -> str:
    """An address without prefix length, in its canonical spelling (``fd00::1``, ``10.0.0.5``)."""
    bare = text.split("/", 1)[0].strip()
    try:
        return ipaddress.ip_address(bare).compressed
    except ValueError:
        return bare


def address_spellings(address: str) -> list[bytes]:
    """How an address may be spelled in a line: canonical, and for IPv6 also exploded and upper case.

    The plugin records addresses as the IPAM plugin returned them; Go plugins print RFC 5952 forms.
    These are the fast path of ``address_test``, which also lets through every other spelling.
    """
    forms = [address]
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return [address.encode()]
    if parsed.version == 6:
        forms += [parsed.exploded, address.upper(), parsed.exploded.upper()]
    return [form.encode("ascii") for form in dict.fromkeys(forms)]


def address_test(address: str) -> Callable[[bytes], bool]:
    """A raw-line test that accepts every line naming ``address`` in *any* spelling (it may accept others).

    IPv4 has one spelling. IPv6 has many (``FD00:0:0::0005`` is ``fd00::5``): a line passes if it holds
    one of ``address_spellings``, or, lower-cased, every non-zero group of the address as hex digits
    without leading zeros (any spelling contains them), the last two groups either so or as the dotted
    IPv4 form an IPv6 address may end in. The decoded event then compares addresses, not strings.
    """
    spellings = address_spellings(address)
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return lambda line: any(line.find(s) >= 0 for s in spellings)
    if parsed.version == 4:
        needle = spellings[0]
        return lambda line: line.find(needle) >= 0  # not ``needle in line``: see ``record.head_from_line``
    groups = [g.lstrip("0").encode() for g in parsed.exploded.split(":")]
    head = [g for g in groups[:6] if g]
    tail = [g for g in groups[6:] if g]
    dotted = str(ipaddress.IPv4Address(int(parsed) & 0xFFFFFFFF)).encode()

    def test(line: bytes) -> bool:
        for spelling in spellings:
            if line.find(spelling) >= 0:
                return True
        low = line.lower()
        return all(low.find(g) >= 0 for g in head) and (all(low.find(g) >= 0 for g in tail) or low.find(dotted) >= 0)

    return test


def pod_spec(pod: str, namespace: str = "") -> tuple[str, str]:
    """``(namespace, name)`` from ``--pod NAMESPACE/NAME`` (the form the POD column prints) or ``--pod NAME``, and
    ``-n NAMESPACE``: the one reading of a pod argument for every command. A name alone matches any namespace
    (Podman records none). ``ValueError`` when the two disagree or a part is empty: a pod that cannot exist would
    silently match nothing."""
    if "/" not in pod:
        return namespace, pod
    parts = pod.split("/")
    if len(parts) != 2 or not all(parts):
        raise ValueError(f"invalid --pod {pod!r}: expected NAMESPACE/NAME or NAME")
    if namespace and namespace != parts[0]:
        raise ValueError(f"--pod {pod!r} names namespace {parts[0]!r}, but --namespace says {namespace!r}")
    return parts[0], parts[1]


def matcher(pattern: str) -> Callable[[str], bool]:
    """A test of a name against ``pattern``: a shell glob, or the name itself."""
    if is_glob(pattern):
        return lambda value: fnmatchcase(value, pattern)
    return lambda value: value == pattern


@dataclass
class Filter:
    """What ``events``, ``stats`` and ``follow`` select; empty fields select everything."""

    container: str = ""
    pod: str = ""
    """A name, or ``NAMESPACE/NAME`` (``pod_spec``)."""
    namespace: str = ""
    network: str = ""
    commands: frozenset[str] = frozenset()
    outcome: str = ""
    ip: str = ""
    host: str = ""
    """``host.name``: the node; globs."""
    since: str = ""
    until: str = ""
    use_prefilter: bool = True
    _pod: Callable[[str], bool] | None = field(default=None, init=False, repr=False)
    _namespace: Callable[[str], bool] | None = field(default=None, init=False, repr=False)
    _network: Callable[[str], bool] | None = field(default=None, init=False, repr=False)
    _host: Callable[[str], bool] | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self.namespace, self.pod = pod_spec(self.pod, self.namespace)
        self.commands = frozenset(c.upper() for c in self.commands)
        self.ip = canonical_address(self.ip) if self.ip else ""
        self._pod = matcher(self.pod) if self.pod else None
        self._namespace = matcher(self.namespace) if self.namespace else None
        self._network = matcher(self.network) if self.network else None
        self._host = matcher(self.host) if self.host else None

    @property
    def needs_doc(self) -> bool:
        return bool(self.pod or self.namespace or self.ip or self.host)

    @cached_property
    def prefilter(self) -> Callable[[bytes], bool] | None:
        """A raw-line test that only rejects lines the filter would reject, or ``None``; built once (``follow``
        asks for it with every line)."""
        if not self.use_prefilter:
            return None
        needles = [literal_bytes(self.container)]
        needles += [literal_bytes(v) for v in (self.pod, self.namespace, self.network, self.host)
                    if v and not is_glob(v)]
        required = [n for n in needles if n]
        names_address = address_test(self.ip) if self.ip else None
        if not required and names_address is None:
            return None

        def prefilter(line: bytes) -> bool:
            for needle in required:
                if line.find(needle) < 0:
                    return False
            return names_address is None or names_address(line)

        return prefilter

    @property
    def every_head(self) -> bool:
        """Does ``matches_head`` take every record (no time, command, outcome, container or network asked)?"""
        return not (self.since or self.until or self.commands or self.outcome or self.container or self.network)

    def matches_head(self, rec: Record) -> bool:
        if self.since and not (rec.timestamp and rec.timestamp >= self.since):
            return False
        if self.until and not (rec.timestamp and rec.timestamp < self.until):
            return False
        if self.commands and rec.command not in self.commands:
            return False
        if self.outcome and rec.outcome != self.outcome:
            return False
        if self.container and not rec.container_id.startswith(self.container):
            return False
        return self._network is None or self._network(rec.network)

    def matches_doc(self, rec: Record) -> bool:
        doc = rec.doc
        if self._pod is not None and not self._pod(record.pod(doc)):
            return False
        if self._namespace is not None and not self._namespace(record.namespace(doc)):
            return False
        if self._host is not None and not self._host(record.host(doc)):
            return False
        return not self.ip or self.ip in {canonical_address(a) for a in record.addresses(doc)}


def on_host(pattern: str) -> Callable[[Record], bool] | None:
    """``--host``: a test of a record's node (``host.name``, a shell glob or the name), or ``None`` for every node.

    Read with ``record.placed`` (sliced from the plugin's lines, as the trackers read it anyway), so that a
    question that decodes few lines does not decode more for it."""
    if not pattern:
        return None
    wanted = matcher(pattern)
    return lambda rec: wanted(record.placed(rec)[0])
