"""Unit tests for cni_logger.diagnostics: python-json-logger lines on stderr, shaped like the events."""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Iterator
from typing import Any

import pytest

from cni_logger import diagnostics, skel

TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$")


def record(message: str, level: int = logging.WARNING, args: tuple[Any, ...] = (), **extra: Any
           ) -> logging.LogRecord:
    rec = logging.LogRecord(diagnostics.LOGGER_NAME, level, __file__, 1, message, args, None)
    for key, value in extra.items():
        setattr(rec, key, value)
    return rec


def one_json_line(text: str) -> dict[str, Any]:
    assert "\n" not in text and "\r" not in text, text
    doc = json.loads(text)
    assert isinstance(doc, dict)
    return doc


@pytest.fixture
def restore_logger() -> Iterator[None]:
    log = logging.getLogger(diagnostics.LOGGER_NAME)
    saved = list(log.handlers)
    yield
    for handler in list(log.handlers):
        log.removeHandler(handler)
    for handler in saved:
        log.addHandler(handler)


class CapturedStderr:
    """The invocation's stderr (``skel.streams``) as a memory file, read back as text."""

    def __init__(self) -> None:
        self.fd = os.memfd_create("stderr")

    def getvalue(self) -> str:
        return os.pread(self.fd, 1 << 20, 0).decode("utf-8")

    def close(self) -> None:
        os.close(self.fd)


def fresh_stderr(monkeypatch: pytest.MonkeyPatch) -> CapturedStderr:
    """The invocation's stderr captured, and the module's logger without handlers, as in a new plugin process.

    Called in the test body, not in a fixture: pytest attaches a capture handler to non-propagating loggers at
    the start of each test phase.
    """
    stream = CapturedStderr()
    monkeypatch.setattr(skel.streams, "stderr", stream.fd)
    log = logging.getLogger(diagnostics.LOGGER_NAME)
    for handler in list(log.handlers):
        log.removeHandler(handler)
    return stream


def test_formatter_nests_level_logger_and_timestamp() -> None:
    rec = record("logger setting ignored: %s", args=("invalid value for 'logToStderr': 'yes'",))
    rec.created = 1_700_000_000.123456
    doc = one_json_line(diagnostics.EcsJsonFormatter().format(rec))
    assert doc["@timestamp"] == "2023-11-14T22:13:20.123456Z"
    assert doc["log"] == {"level": "warning", "logger": "cni-logger.diagnostics"}
    assert doc["message"] == "logger setting ignored: invalid value for 'logToStderr': 'yes'"
    assert doc["ecs"] == {"version": "9.4.0"}
    assert not [key for key in doc if "." in key and key != "@timestamp"]
    assert "levelname" not in doc and "name" not in doc


@pytest.mark.parametrize(("level", "name"), [(logging.INFO, "info"), (logging.WARNING, "warning"),
                                              (logging.ERROR, "error")])
def test_level_is_lower_case(level: int, name: str) -> None:
    doc = one_json_line(diagnostics.EcsJsonFormatter().format(record("m", level)))
    assert doc["log"]["level"] == name


def test_extra_fields_are_kept_nested() -> None:
    rec = record("audit event not written to the log file",
                 error={"message": "/var/log/cni.log: is a directory", "type": "SinkError"},
                 network={"name": "k8s-pod-network"})
    doc = one_json_line(diagnostics.EcsJsonFormatter().format(rec))
    assert doc["error"] == {"message": "/var/log/cni.log: is a directory", "type": "SinkError"}
    assert doc["network"] == {"name": "k8s-pod-network"}


def test_multi_line_message_stays_on_one_line() -> None:
    doc = one_json_line(diagnostics.EcsJsonFormatter().format(record("first\nsecond\r\n\tthird")))
    assert doc["message"] == "first\nsecond\r\n\tthird"


def test_timestamp_format() -> None:
    doc = one_json_line(diagnostics.EcsJsonFormatter().format(record("m")))
    assert TIMESTAMP.match(doc["@timestamp"]), doc["@timestamp"]


def test_warn_and_error_write_json_lines_to_stderr(restore_logger: None,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    stderr = fresh_stderr(monkeypatch)
    diagnostics.warn("logger setting ignored: x", network={"name": "net"})
    diagnostics.error("audit event not written to the log file", error={"message": "m", "type": "SinkError"})
    lines = stderr.getvalue().splitlines()
    assert len(lines) == 2
    first, second = (one_json_line(line) for line in lines)
    assert first["log"]["level"] == "warning" and first["network"] == {"name": "net"}
    assert second["log"]["level"] == "error" and second["error"]["type"] == "SinkError"
    assert first["message"] == "logger setting ignored: x"
    assert TIMESTAMP.match(first["@timestamp"])


def test_logger_does_not_propagate_to_the_root_logger(restore_logger: None,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    stderr = fresh_stderr(monkeypatch)
    diagnostics.warn("only on stderr")
    log = logging.getLogger(diagnostics.LOGGER_NAME)
    assert log.propagate is False
    assert [type(h) for h in log.handlers] == [logging.StreamHandler]
    assert len(stderr.getvalue().splitlines()) == 1


def test_warn_never_raises_on_a_reserved_field_name(restore_logger: None,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    stderr = fresh_stderr(monkeypatch)
    diagnostics.warn("clash", name="LogRecord refuses to overwrite this")  # must not raise
    diagnostics.warn("after")
    assert one_json_line(stderr.getvalue().splitlines()[-1])["message"] == "after"


def test_broken_stderr_does_not_raise(restore_logger: None,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    stderr = fresh_stderr(monkeypatch)
    stderr.close()
    diagnostics.error("stderr is gone")
    diagnostics.warn("still gone")
