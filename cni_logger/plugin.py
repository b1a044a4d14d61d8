"""The logger plugin: pass the network through unchanged and record what happened.

``skel`` does the CNI plumbing; this module declares what the skeleton applies (the ``about`` text,
the versions, the internal-error wording, DEL always succeeding) and decides what the logger answers
and when and where an event is recorded:

* ADD answers the ``prevResult`` in the config's version; the other commands answer nothing. First in
  a chain (bracket mode's attempt entry, ``"role": "attempt"``) there is no ``prevResult``: ADD then
  answers the minimal result, which the main plugins that tolerate bracket mode ignore (docs/install.md,
  "Bracket mode").
* Every ADD, DEL, CHECK and GC is recorded. STATUS (asked every few seconds under CNI 1.1.0) is
  recorded only with ``recordStatus: true`` or when it fails; VERSION, which carries no network
  config, only when ``CNI_LOGGER_RECORD_VERSION=1`` is in the runtime's environment (stderr only).
  Unrecorded invocations never import the event pipeline.
* Fail-open: a sink that cannot be written, or a failure while recording, is reported on stderr and
  the answer stands. With
  ``failOnLogError: true`` ADD fails with code 11, STATUS reports code 50 while the file sink is
  unusable, and an invalid logger setting fails with code 7; DEL always succeeds.
* Thick mode (``thick``): an agent serving the shim's request, or the in-process fallback after the agent may
  have recorded it, asks ``may_record`` before appending, so that the event is in the file once.
* An event the file sink did not take is counted (``cni_logger.dropped``: a root-only tmpfs file) and put
  on the record as one ``logger-dropped`` event by the next append that succeeds (or by ``--watch``).
"""

from __future__ import annotations

import os

from cni_logger import results, settings, skel
from cni_logger.skel import (
    ERR_INVALID_NETWORK_CONFIG,
    ERR_PLUGIN_NOT_AVAILABLE,
    ERR_TRY_AGAIN_LATER,
    CNIError,
    Outcome,
    Request,
)

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (start-up time)

if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from cni_logger.filesink import RotatingFile
    from cni_logger.settings import Settings


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


def file_sink(conf: Settings) -> RotatingFile | None:
    if conf.log_file is None:
        return None
    from cni_logger.filesink import RotatingFile

    return RotatingFile(conf.log_file, conf.max_size_bytes, conf.max_backups, conf.max_age_days,
                        conf.compress, rotate=conf.rotation == "size")


class LoggerPlugin:
    """Implements ``skel.Plugin`` for the ``logger`` type."""

    about = "CNI logger plugin: records an audit event for every invocation"
    versions = skel.SUPPORTED_VERSIONS  # a pass-through has nothing version-specific: every spec version
    internal_error = "internal error in cni-logger"
    always_succeed = frozenset({"DEL"})  # a runtime must always be able to tear a chain down

    def __init__(self, environ: dict[str, str] | None = None,
                 may_record: Callable[[str], bool] | None = None) -> None:
        """``may_record(log_file)``: asked before the event is appended; False leaves it out (``thick``: the
        shim gave up on the agent, or the agent already recorded this request). None: always record."""
        self.environ = os.environ if environ is None else environ
        self.may_record = may_record

    # -- the operations ------------------------------------------------------------------------

    def add(self, request: Request) -> dict[str, Any]:
        assert request.config is not None
        return results.pass_through(request.config, request.cni_version)

    def check(self, request: Request) -> None:
        assert request.config is not None
        results.prev_result(request.config)  # CHECK must consult prevResult: it has to be usable

    def delete(self, request: Request) -> None:
        return None

    def gc(self, request: Request) -> None:
        return None  # the logger holds no per-attachment state to collect

    def status(self, request: Request) -> None:
        conf = settings.load(request.config)
        sink = file_sink(conf)
        if conf.fail_on_log_error and sink is not None:
            from cni_logger.filesink import SinkError

            try:
                sink.probe()
            except SinkError as exc:
                raise CNIError(ERR_PLUGIN_NOT_AVAILABLE, "audit log unavailable", str(exc)) from exc

    # -- recording -----------------------------------------------------------------------------

    def _wants_event(self, request: Request, outcome: Outcome, conf: Settings) -> bool:
        if request.command == "VERSION":
            return _truthy(self.environ.get("CNI_LOGGER_RECORD_VERSION"))
        if request.command == "STATUS":
            return conf.record_status or not outcome.ok
        return True

    def finish(self, request: Request, outcome: Outcome) -> Outcome:
        """Record the invocation; a failure while recording is reported and never changes the answer."""
        try:
            return self._record(request, outcome)
        except Exception as exc:
            skel.stderr_line(f"{self.internal_error} while recording the event: {type(exc).__name__}: {exc}")
            return outcome

    def _record(self, request: Request, outcome: Outcome) -> Outcome:
        conf = settings.load(request.config)
        warnings = list(conf.problems)
        if conf.problems:
            self._report_problems(conf, request)
            if conf.fail_on_log_error and outcome.ok and request.command not in self.always_succeed:
                outcome = Outcome(error=CNIError(ERR_INVALID_NETWORK_CONFIG, "invalid logger setting",
                                                 "; ".join(conf.problems)))
        if not self._wants_event(request, outcome, conf):
            return outcome
        from cni_logger import events

        line = events.render(request, outcome, conf, warnings)
        sink = file_sink(conf) if request.command != "VERSION" else None
        if sink is not None and self.may_record is not None and not self.may_record(sink.path):
            sink = None  # recorded once already, by the other path of thick mode
        if sink is not None:
            sink_error = self._append(sink, line, conf)
            if sink_error:
                warnings.append(f"audit log file not written: {sink_error}")
                _count_dropped(sink.path, request, warnings)
                if conf.fail_on_log_error and request.command == "ADD" and outcome.ok:
                    outcome = Outcome(error=CNIError(ERR_TRY_AGAIN_LATER, "audit log unavailable", sink_error))
                line = events.render(request, outcome, conf, warnings)
        if conf.log_to_stderr or request.command == "VERSION":
            skel.write_stderr(line)  # a closed stderr is ignored: the file (if any) is the audit path
        return outcome

    def _append(self, sink: RotatingFile, line: bytes, conf: Settings) -> str:
        """Append to the file sink; return why it failed, or ``""``.

        After a successful append, events this file lost earlier (``cni_logger.dropped``) are put on the
        record: one ``stat`` finds out whether there are any.
        """
        from cni_logger.filesink import SinkError, dropped_path

        try:
            warnings = sink.append(line)
        except SinkError as exc:
            from cni_logger import diagnostics

            diagnostics.error("audit event not written to the log file",
                              error={"message": str(exc), "type": "SinkError"})
            return str(exc)
        try:
            os.stat(dropped_path(sink.path))
        except OSError:
            pass  # nothing pending (or not ours to read): the usual case
        else:
            warnings += _flush_dropped(sink, conf)
        if warnings:  # rotation, retention, compression: the event is written, so the answer stands
            from cni_logger import diagnostics

            for warning in warnings:
                diagnostics.warn(f"log file maintenance: {warning}")
        return ""

    def _report_problems(self, conf: Settings, request: Request) -> None:
        from cni_logger import diagnostics

        for problem in conf.problems:
            diagnostics.warn(f"logger setting ignored: {problem}",
                             network={"name": request.network_name} if request.network_name else {})


def _count_dropped(log_file: str, request: Request, warnings: list[str]) -> None:
    """Count the event the file sink did not take, where the watcher (or our next success) finds it."""
    try:
        from cni_logger import dropped

        problem = dropped.record(log_file, request.command, request.container_id)
    except Exception as exc:  # fail-open: counting is best effort too
        problem = f"{type(exc).__name__}: {exc}"
    if problem:
        warnings.append(f"lost event not counted: {problem}")


def _flush_dropped(sink: RotatingFile, conf: Settings) -> list[str]:
    try:
        from cni_logger import dropped

        return dropped.flush(sink, conf.extra_redact_keys)
    except Exception as exc:  # the invocation's own event is written: the answer stands
        return [f"earlier lost events not put on the record: {type(exc).__name__}: {exc}"]


def run() -> int:
    return skel.run(LoggerPlugin())
