"""The node agent's own log: ``install --watch`` writes each message as one JSON line on stderr.

A DaemonSet's output is read by ``kubectl logs`` and by the node's log shippers (Filebeat, Fluent Bit,
Vector), which parse JSON lines and need a time and a level on each. The lines follow the ECS logging
layout (what Elastic's own ``ecs-logging`` libraries write): ``@timestamp`` (RFC 3339, UTC), ``log.level``
(``info``, ``warning``, ``error``), ``message``, ``ecs.version``, ``log.logger``, ``process.pid``, and where a
message has more to say, nested fields: a failed self-check's line has ``event.action`` ``self-check-failed``,
``event.reason`` (the check's message) and ``cni.check`` (``call``, ``exit_status`` or ``signal``,
``timed_out``, ``stderr_tail``: see ``selfcheck.CheckFailed``).

The watcher's notes stay strings (``list[str]``, compared to suppress repeats); a ``Note`` is a string that
also carries a level and such fields. A plain string's level is read from its prefix (``ERROR:``,
``warning:``, ``refused:``, ...), which the line's ``message`` then leaves out.

One-shot ``install`` and ``uninstall`` keep their plain ``cni-logger install: ...`` lines for a terminal.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from typing import Any

from cni_logger import ECS_VERSION

LOGGER = "cni-logger install --watch"
_PREFIXES: tuple[tuple[str, str], ...] = (
    ("ERROR: ", "error"),
    ("refused: ", "error"),
    ("partly changed: ", "error"),
    ("uninstall: ", "error"),
    ("warning: ", "warning"),
    ("not installed: ", "warning"),
    ("not ready: ", "warning"),
    ("not ready; ", "warning"),
)
"""A note's level by the start of its text; the prefix that only says the level is dropped from the message."""
_KEEP = ("not installed: ", "not ready: ", "not ready; ", "uninstall: ", "partly changed: ")
"""Prefixes that are words of the message, not only its level: kept in ``message``."""


class Note(str):
    """A watcher message with its level and the fields its JSON line carries besides the message."""

    level: str
    fields: dict[str, Any]

    def __new__(cls, text: str, level: str = "info", **fields: Any) -> Note:
        note = super().__new__(cls, text)
        note.level = level
        note.fields = fields
        return note


def level_of(text: str) -> tuple[str, str]:
    """``(level, message)`` of a note: a ``Note``'s own level, else the one its prefix says."""
    if isinstance(text, Note):
        return text.level, str(text)
    for prefix, level in _PREFIXES:
        if text.startswith(prefix):
            return level, text if prefix in _KEEP else text[len(prefix):]
    return "info", text


def timestamp(now: float | None = None) -> str:
    """RFC 3339, UTC, milliseconds: ``2026-12-06T14:47:17.123Z``."""
    now = time.time() if now is None else now
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now * 1000) % 1000:03d}Z"


def line(text: str, now: float | None = None) -> str:
    """One note as its JSON line (without the newline)."""
    level, message = level_of(text)
    doc: dict[str, Any] = {"@timestamp": timestamp(now), "log.level": level, "message": message,
                           "ecs.version": ECS_VERSION, "log": {"logger": LOGGER}, "process": {"pid": os.getpid()}}
    for key, value in (text.fields.items() if isinstance(text, Note) else ()):
        if isinstance(value, dict) and isinstance(doc.get(key), dict):
            doc[key] = {**doc[key], **value}
        else:
            doc[key] = value
    return json.dumps(doc, ensure_ascii=False, default=str)


def emitter(stream: Callable[[], Any] = lambda: sys.stderr) -> Callable[[list[str]], None]:
    """``emit`` for ``watch``: each note a JSON line on stderr, flushed at once (the pod's log is live)."""

    def emit(notes: list[str]) -> None:
        out = stream()
        for note in notes:
            out.write(line(note) + "\n")
        out.flush()

    return emit
