"""The plugin's own diagnostics on stderr: the standard-library logging side, rendered by python-json-logger.

Audit events are built by structlog (``events``). Everything else the plugin has to say — a setting
it rejected, a sink it could not write, an internal error — goes through a standard ``logging``
logger whose handler formats records with python-json-logger's ``JsonFormatter``. The output is
one JSON line per message, shaped like the events (``@timestamp``, ``log.level``, ``message`` as
nested ECS objects), so the same shipper pipeline reads both.

stderr is the only destination: a diagnostic usually says that the file sink failed. Nothing here is
imported unless there is something to report, so a clean invocation never pays for ``logging``.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from pythonjsonlogger.json import JsonFormatter

from cni_logger import ECS_VERSION, skel  # the events' schema; a diagnostic follows the same one

if TYPE_CHECKING:
    from typing import Any

LOGGER_NAME = "cni-logger.diagnostics"


class EcsJsonFormatter(JsonFormatter):
    """python-json-logger formatter that nests its fields the way the audit events do."""

    def __init__(self) -> None:
        super().__init__(
            "{levelname}{name}{message}", style="{", timestamp="@timestamp",
            json_ensure_ascii=False,
        )

    def process_log_record(self, log_data: dict[str, Any]) -> dict[str, Any]:
        timestamp = log_data.pop("@timestamp")
        nested: dict[str, Any] = {
            "@timestamp": timestamp.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "message": log_data.pop("message", ""),
            "log": {"level": str(log_data.pop("levelname", "")).lower(), "logger": log_data.pop("name", "")},
            "ecs": {"version": ECS_VERSION},
        }
        nested.update(log_data)  # extra fields, e.g. "cni": {...} or "error": {...}
        return nested


class _InvocationStderr:
    """The stream the handler writes to: the invocation's stderr (``skel.streams``), which is fd 2 except in
    thick mode's agent, where each request's stderr goes back to its shim."""

    def write(self, text: str) -> None:
        skel.write_stderr(text.encode("utf-8", "backslashreplace"))

    def flush(self) -> None:
        pass


def _logger() -> logging.Logger:
    log = logging.getLogger(LOGGER_NAME)
    if not log.handlers:
        logging.raiseExceptions = False  # a broken stderr must not print a traceback anywhere
        handler = logging.StreamHandler(_InvocationStderr())
        handler.setFormatter(EcsJsonFormatter())
        log.addHandler(handler)
        log.setLevel(logging.INFO)
        log.propagate = False
    return log


def warn(message: str, **fields: Any) -> None:
    """Report a problem on stderr; never raises."""
    try:
        _logger().warning(message, extra=fields)
    except Exception:  # pragma: no cover - stderr itself is gone
        pass


def error(message: str, **fields: Any) -> None:
    """Report a failure on stderr; never raises."""
    try:
        _logger().error(message, extra=fields)
    except Exception:  # pragma: no cover - stderr itself is gone
        pass
