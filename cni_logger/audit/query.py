"""Which events a question is about: the filters of ``events``, ``stats`` and ``follow``.

A filter is applied in three steps, cheapest first, each allowed to let through what the next one
rejects but never to reject what it would accept:

1. ``prefilter(line)``: every literal value must occur in the raw bytes (a pod name that is not in
   the line cannot be the line's pod). Values are compared as the plugin writes them (UTF-8, JSON
   escapes only for ``"``, ``\\`` and control characters), so values with those are not prefiltered.
2. ``matches_head(record)``: time, command, outcome, container, network from the sliced fields.
3. ``matches_doc(record)``: pod, namespace and address, from the decoded event.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import dataclass, field
from fnmatch import fnmatchcase

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

    The plugin records addresses as the IPAM plugin returned them; Go plugins print RFC 5952 forms,
    the others are covered as far as cheaply possible (a spelling not listed here would be missed
    by a prefilter, so ``--no-prefilter`` exists for the unusual IPAM).
    """
    forms = [address]
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return [address.encode()]
    if parsed.version == 6:
        forms += [parsed.exploded, address.upper(), parsed.exploded.upper()]
    return [form.encode("ascii") for form in dict.fromkeys(forms)]


def _matcher(pattern: str) -> Callable[[str], bool]:
    if is_glob(pattern):
        return lambda value: fnmatchcase(value, pattern)
    return lambda value: value == pattern


@dataclass
class Filter:
    """What ``events``, ``stats`` and ``follow`` select; empty fields select everything."""

    container: str = ""
    pod: str = ""
    namespace: str = ""
    network: str = ""
    commands: frozenset[str] = frozenset()
    outcome: str = ""
    ip: str = ""
    since: str = ""
    until: str = ""
    use_prefilter: bool = True
    _pod: Callable[[str], bool] | None = field(default=None, init=False, repr=False)
    _namespace: Callable[[str], bool] | None = field(default=None, init=False, repr=False)
    _network: Callable[[str], bool] | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self.commands = frozenset(c.upper() for c in self.commands)
        self.ip = canonical_address(self.ip) if self.ip else ""
        self._pod = _matcher(self.pod) if self.pod else None
        self._namespace = _matcher(self.namespace) if self.namespace else None
        self._network = _matcher(self.network) if self.network else None

    @property
    def needs_doc(self) -> bool:
        return bool(self.pod or self.namespace or self.ip)

    def prefilter(self) -> Callable[[bytes], bool] | None:
        """A raw-line test that only rejects lines the filter would reject, or ``None``."""
        if not self.use_prefilter:
            return None
        needles = [literal_bytes(self.container)]
        needles += [literal_bytes(v) for v in (self.pod, self.namespace, self.network) if v and not is_glob(v)]
        required = [n for n in needles if n]
        spellings = address_spellings(self.ip) if self.ip else []
        if not required and not spellings:
            return None

        def prefilter(line: bytes) -> bool:
            for needle in required:
                if needle not in line:
                    return False
            return not spellings or any(s in line for s in spellings)

        return prefilter

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
        return not self.ip or self.ip in {canonical_address(a) for a in record.addresses(doc)}
