"""The new content of a config: the logger's entry, a plugin list with and without it, and the JSON
rendered in the style of the file it replaces, so that a rewrite changes only what changed."""

from __future__ import annotations

import json
import re
from typing import Any

from cni_logger import settings
from cni_logger.install import Refusal
from cni_logger.install.runtimes import DEFAULT_CNI_VERSION, LOGGER_TYPE


class ChainEntry:
    """One logger entry exactly as install writes it into a chain: the file, its network's name and
    ``cniVersion`` (what a runtime passes the plugin with it), and the entry itself (``role`` included).

    ``plan.Plan.entries`` lists them; ``selfcheck.check`` executes each one.
    """

    __slots__ = ("cni_version", "entry", "network", "path")

    def __init__(self, path: str, network: str, cni_version: str, entry: dict[str, Any]) -> None:
        self.path, self.network, self.cni_version, self.entry = path, network, cni_version, entry

    def __repr__(self) -> str:
        return f"ChainEntry({self.path!r}, {self.network!r}, {self.cni_version!r}, {self.entry!r})"

    @property
    def where(self) -> str:
        """The entry's place, for messages: file and network (and role in a bracketed chain)."""
        role = self.entry.get("role")
        return f"{self.path} (network {self.network!r}{f', {role} entry' if isinstance(role, str) else ''})"


def logger_entry(log_file: str | None, *, fail_on_log_error: bool = False, max_size: float | None = None,
                 max_backups: int | None = None, max_age: float | None = None, compress: bool = False,
                 rotation: str | None = None, capabilities: list[str] | None = None) -> dict[str, Any]:
    """The logger's plugin entry with only the options given (the plugin's defaults apply to the rest).

    Built twice per install: with the default log path, as the entry of a network that has none, and
    with only what the command line named, as the changes to an operator's entry (``merge_entry``).
    """
    entry: dict[str, Any] = {"type": LOGGER_TYPE}
    if capabilities:
        entry["capabilities"] = dict.fromkeys(capabilities, True)
    if log_file is not None:
        entry["logFile"] = log_file
    if fail_on_log_error:
        entry["failOnLogError"] = True
    options: dict[str, Any] = {}
    for key, value in (("maxSize", max_size), ("maxBackups", max_backups), ("maxAge", max_age),
                       ("compress", True if compress else None), ("rotation", rotation)):
        if value is not None:
            options[key] = value
    if options:
        entry["logOptions"] = options
    problems = settings.load(entry).problems
    if problems:
        raise Refusal("; ".join(problems))
    return entry


def bracket_entries(entry: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``--bracket``: the attempt entry (first in the list) and the outcome entry (last) made from ``entry``.

    Both carry every option of ``entry`` (the same file, the same capabilities: both record the same
    invocation's arguments) and the logger's ``role`` key, so each event says which end wrote it.
    """
    first = {"type": entry["type"], "role": "attempt", **{k: v for k, v in entry.items() if k != "type"}}
    last = {"type": entry["type"], "role": "outcome", **{k: v for k, v in entry.items() if k != "type"}}
    return first, last


def merge_entry(base: dict[str, Any], named: dict[str, Any]) -> dict[str, Any]:
    """``base`` (an operator's entry) with only the options in ``named`` changed.

    Every key of ``base`` stays, in its place: its ``redactKeys`` keep secrets masked, its
    ``failOnLogError``, ``logFile`` and the rest keep meaning what the operator meant. ``logOptions``
    and ``capabilities`` are merged key by key, so ``--max-size`` leaves ``maxBackups`` alone.
    """
    entry = dict(base)
    for key, value in named.items():
        current = entry.get(key)
        if isinstance(value, dict) and isinstance(current, dict):
            entry[key] = {**current, **value}
        else:
            entry[key] = value
    return entry


def entry_problems(entry: dict[str, Any]) -> list[str]:
    """What the plugin would say about the entry's values (it uses its defaults for those)."""
    return list(settings.load(entry).problems)


def logger_entries(plugins: list[Any]) -> list[tuple[int, dict[str, Any]]]:
    """The logger entries of a plugin list, with their positions."""
    return [(i, p) for i, p in enumerate(plugins) if isinstance(p, dict) and p.get("type") == LOGGER_TYPE]


def _style(data: bytes | None) -> tuple[int | str | None, tuple[str, str] | None, bool]:
    """Indent, separators and final newline of an existing file, so a rewrite changes only what changed."""
    if not data:
        return 2, None, True
    text = data.decode("utf-8")
    newline = text.endswith("\n")
    lines = text.strip("\n").split("\n")
    if len(lines) == 1:
        compact = '":' in text and '": ' not in text
        return None, ((",", ":") if compact else (", ", ": ")), newline
    for line in lines[1:]:
        body = line.lstrip(" \t")
        if body and len(body) < len(line):
            pad = line[: len(line) - len(body)]
            return ("\t" if pad.startswith("\t") else len(pad)), None, newline
    return 2, None, newline


_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def render(doc: dict[str, Any], like: bytes | None) -> bytes:
    """``doc`` as JSON in the style of ``like`` (the file it replaces).

    An unpaired UTF-16 surrogate escape (``"\\ud800"``) is valid JSON that runtimes load (Go's decoder
    reads it as U+FFFD) and that Python reads as a lone surrogate, which has no UTF-8 encoding. It is
    written back as the same escape, so the runtime reads every value exactly as before: refusing the
    file instead would leave a node whose network works without the logger (and ``--watch`` refusing
    forever), for text that means the same thing to the runtime either way. Writing it is exact, because
    Python's decoder joins every valid escaped pair into one character: a surrogate left in a string was
    unpaired in the file, and ``json.dumps`` emits it raw only inside a string literal.
    """
    indent, separators, newline = _style(like)
    text = json.dumps(doc, indent=indent, separators=separators, ensure_ascii=False)
    text = _LONE_SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)
    return (text + ("\n" if newline else "")).encode("utf-8")


def with_logger(doc: dict[str, Any], entry: dict[str, Any], first: dict[str, Any] | None = None) -> dict[str, Any]:
    """A copy of the list ``doc`` with its logger entries (if any) replaced by ``entry``, placed last (and by
    ``first``, placed first, in bracket mode)."""
    new = without_logger(doc)
    new["plugins"] = ([first] if first is not None else []) + new["plugins"] + [entry]
    return new


def without_logger(doc: dict[str, Any], put_back: dict[str, Any] | None = None,
                   at: int | None = None) -> dict[str, Any]:
    """A copy of the list ``doc`` without logger entries; with ``put_back`` (an operator's entry) at index ``at``."""
    new = dict(doc)
    new["plugins"] = [p for p in doc["plugins"] if not (isinstance(p, dict) and p.get("type") == LOGGER_TYPE)]
    if put_back is not None:
        new["plugins"].insert(len(new["plugins"]) if at is None else at, put_back)
    return new


def wrap(doc: dict[str, Any]) -> dict[str, Any]:
    """A single-plugin config as the equivalent list, as libcni's ConfListFromConf does it."""
    inner = {k: v for k, v in doc.items() if k not in ("cniVersion", "name")}
    return {"cniVersion": doc.get("cniVersion") or DEFAULT_CNI_VERSION, "name": doc.get("name"), "plugins": [inner]}


def has_logger(doc: Any) -> bool:
    """Whether the parsed config ``doc`` holds a logger entry (as its single plugin or in its list)."""
    plugins = doc.get("plugins") if isinstance(doc, dict) else None
    if isinstance(doc, dict) and doc.get("type") == LOGGER_TYPE:
        return True
    return isinstance(plugins, list) and any(isinstance(p, dict) and p.get("type") == LOGGER_TYPE for p in plugins)
