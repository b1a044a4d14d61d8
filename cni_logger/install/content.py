"""The new content of a config: the logger's entry, a plugin list with and without it, and the JSON
rendered in the style of the file it replaces, so that a rewrite changes only what changed."""

from __future__ import annotations

import json
from typing import Any

from cni_logger import jsonio, settings
from cni_logger.install import Refusal
from cni_logger.install.runtimes import DEFAULT_CNI_VERSION, LOGGER_TYPE


def logger_entry(log_file: str, *, fail_on_log_error: bool = False, max_size: float | None = None,
                 max_backups: int | None = None, max_age: float | None = None, compress: bool = False,
                 rotation: str | None = None, capabilities: list[str] | None = None) -> dict[str, Any]:
    """The logger's plugin entry with only the options given (the plugin's defaults apply to the rest)."""
    entry: dict[str, Any] = {"type": LOGGER_TYPE}
    if capabilities:
        entry["capabilities"] = dict.fromkeys(capabilities, True)
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


def render(doc: dict[str, Any], like: bytes | None) -> bytes:
    """``doc`` as JSON in the style of ``like`` (the file it replaces)."""
    indent, separators, newline = _style(like)
    text = json.dumps(doc, indent=indent, separators=separators, ensure_ascii=False)
    return (text + ("\n" if newline else "")).encode("utf-8")


def with_logger(doc: dict[str, Any], entry: dict[str, Any], first: dict[str, Any] | None = None) -> dict[str, Any]:
    """A copy of the list ``doc`` with every logger entry replaced by ``entry``, placed last (and by
    ``first``, placed first, in bracket mode)."""
    new = dict(doc)
    new["plugins"] = ([first] if first is not None else []) + [
        p for p in doc["plugins"] if p.get("type") != LOGGER_TYPE] + [entry]
    return new


def without_logger(doc: dict[str, Any]) -> dict[str, Any]:
    new = dict(doc)
    new["plugins"] = [p for p in doc["plugins"] if not (isinstance(p, dict) and p.get("type") == LOGGER_TYPE)]
    return new


def wrap(doc: dict[str, Any]) -> dict[str, Any]:
    """A single-plugin config as the equivalent list, as libcni's ConfListFromConf does it."""
    inner = {k: v for k, v in doc.items() if k not in ("cniVersion", "name")}
    return {"cniVersion": doc.get("cniVersion") or DEFAULT_CNI_VERSION, "name": doc.get("name"), "plugins": [inner]}


def has_logger(data: bytes) -> bool:
    """Whether the config ``data`` holds a logger entry (as its single plugin or in its list)."""
    try:
        doc = jsonio.loads_bytes(data, unique_keys=True)
    except ValueError:
        return False
    plugins = doc.get("plugins") if isinstance(doc, dict) else None
    if isinstance(doc, dict) and doc.get("type") == LOGGER_TYPE:
        return True
    return isinstance(plugins, list) and any(isinstance(p, dict) and p.get("type") == LOGGER_TYPE for p in plugins)
