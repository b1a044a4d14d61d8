"""``install --watch --metrics-address HOST:PORT``: Prometheus metrics of the node agent, and ``/healthz``.

Written with ``prometheus_client`` (its registry, metric types and exposition), served by a small threaded
WSGI server on the given address: ``/metrics`` (any path but ``/healthz``) in Prometheus's text format,
``/healthz`` for the DaemonSet's liveness probe. Only ``install --watch`` with the option imports this module:
neither the plugin nor one-shot commands pay for ``prometheus_client``.

What is measured, once per watcher pass (``Metrics.passed``; the pass itself is never made to fail):

* ``cni_logger_in_chain{file,network}``: 1 while the logger is in that network's chain in that config file,
  0 once it is out (the files are those the install journal records); ``cni_logger_ready``: 1 while the
  logger is in place and passes its self-check (the ready file exists);
* ``cni_logger_self_checks_total{result}`` (``pass``, ``fail``, ``cannot_check``), and the config changes the
  watcher made, told by the recorder (``Metrics.recorder``): ``cni_logger_failsafe_removals_total{file}``
  (the logger taken out after a failed self-check), ``cni_logger_reinsertions_total{file}`` (put back after
  another agent's rewrite dropped it);
* from the trails as they grow, read by the audit's rotation-aware follower (``cni_logger.audit.follow.Tail``,
  every file a rotation made between two passes included): ``cni_logger_events_total{command,outcome}`` and
  the plugin's own duration, ``cni_logger_plugin_duration_seconds{command}`` (a histogram of the events'
  ``event.duration``), counted from the watcher's start; in bracket mode only the outcome entry's events (the
  attempt entry's would count each invocation twice), an event the sink wrote twice once (by ``event.id``, as
  ``follow`` prints it); ``cni_logger_trail_lines_unreadable_total{log_file}``
  (lines that are not events: damage, or an event too long);
* events the plugin could not write (``cni_logger.dropped``, docs/coverage-events.md):
  ``cni_logger_dropped_events_total{log_file}``, the counts of the ``logger-dropped`` events that reach the
  trail, and ``cni_logger_dropped_events_pending{log_file}``, records still waiting on tmpfs because the trail
  cannot be written (a full or read-only disk);
* ``cni_logger_log_filesystem_avail_bytes`` / ``_size_bytes{log_file}``: the log directory's filesystem
  (``statvfs``: the space an unprivileged writer may use, and the total);
* ``cni_logger_watch_passes_total``, ``cni_logger_watch_last_pass_timestamp_seconds``, ``cni_logger_build_info``.

``/healthz`` answers 200 while the loop keeps running and 503 once a pass is overdue: none ended within the
wait the loop planned plus ``STUCK_INTERVALS`` intervals and ``STUCK_CHECKS`` self-check time limits (a pass
runs a few plugin calls, each bounded by ``--check-timeout``). A stopped process answers nothing, which a
probe's timeout counts as a failure too.
"""

from __future__ import annotations

import errno
import json
import os
import socket
import socketserver
import sys
import threading
import time
import traceback
import types
from collections.abc import Callable, Iterable
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

from cni_logger import __version__, dropped, jsonio
from cni_logger.audit.follow import Tail
from cni_logger.filesink import DROPPED_DIR
from cni_logger.install import Refusal
from cni_logger.install.agent import Agent
from cni_logger.install.coverage import logger_entries, trail_settings
from cni_logger.install.journal import load_journal
from cni_logger.install.transaction import Recorder


def _without_tls() -> None:
    """Let ``prometheus_client`` be imported by an interpreter without ``_ssl`` (the bundle's: TLS would need the
    node's libssl, so the bundle leaves it out). Its exposition module imports ``ssl`` and
    ``urllib.request.HTTPSHandler`` at its top, for the push gateway's and its own server's TLS options, which
    the watcher never uses (it serves plain HTTP, as node agents do). Where ``ssl`` cannot be imported, a
    stand-in is in ``sys.modules`` for the duration of that import only, and the standard modules that look
    for ``ssl`` once (``http.client``, ``urllib.request``) are imported afresh for prometheus_client's own use,
    the copies everyone else has put back after: every name the stand-in is asked for is a class that refuses
    to be instantiated, so a TLS use fails loudly, and nothing imported later sees it."""
    try:
        import ssl  # noqa: F401 - only whether it can be imported
    except ImportError:
        pass
    else:
        return

    class Unavailable:
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            raise RuntimeError("TLS is not available in this interpreter (no _ssl)")

    def attribute(name: str) -> type[Unavailable]:
        if name.startswith("__"):
            raise AttributeError(name)
        return Unavailable

    stand_in = types.ModuleType("ssl", "stand-in for the missing ssl module (cni_logger.install.metrics)")
    stand_in.__getattr__ = attribute  # type: ignore[method-assign]
    aware = ("http.client", "urllib.request")
    saved = {name: sys.modules.pop(name) for name in aware if name in sys.modules}
    sys.modules["ssl"] = stand_in
    try:
        import prometheus_client  # noqa: F401 - imported once, with the stand-in
    finally:
        del sys.modules["ssl"]
        for name in aware:  # the module, and its parent package's attribute, as they were
            sys.modules.pop(name, None)
            parent, _, child = name.rpartition(".")
            if name in saved:
                sys.modules[name] = saved[name]
                setattr(sys.modules[parent], child, saved[name])
            elif parent in sys.modules and hasattr(sys.modules[parent], child):
                delattr(sys.modules[parent], child)


_without_tls()
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, make_wsgi_app  # noqa: E402

DEFAULT_PORT = 9740
STUCK_INTERVALS = 3
STUCK_CHECKS = 6
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
"""Seconds: a plugin invocation takes milliseconds (interpreter start-up included); seconds mean trouble."""
RECENT_IDS = 4096
"""Event ids remembered per trail to count an event written twice once (as ``follow`` prints it once)."""
CHECK_RESULTS = ("pass", "fail", "cannot_check")
COMMANDS = ("ADD", "DEL", "CHECK")
OUTCOMES = ("success", "failure")


def parse_address(text: str) -> tuple[str, int]:
    """``HOST:PORT``, ``[IPv6]:PORT`` or ``:PORT`` (every address) as (host, port); ValueError says why not."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"--metrics-address must be HOST:PORT, [IPv6]:PORT or :PORT with a port from 1 to 65535, "
                         f"not {text!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, int(port)


class _Server(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True

    def server_bind(self) -> None:
        # HTTPServer.server_bind asks the resolver for the address's FQDN; a node agent must not wait on DNS.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)
        self.setup_environ()


class _V6Server(_Server):
    address_family = socket.AF_INET6


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Scrapes and probes are not news: the pod's log is for the watcher's own messages."""


def bind(address: str, app: Callable[..., Iterable[bytes]]) -> _Server:
    """A server listening on ``address`` (not serving yet: ``Metrics.start``); Refusal if it cannot."""
    try:
        host, port = parse_address(address)
    except ValueError as exc:
        raise Refusal(str(exc)) from None
    attempts: list[tuple[type[_Server], str]] = [(_V6Server, "::"), (_Server, "0.0.0.0")] if host == "" else \
        [(_V6Server if ":" in host else _Server, host)]
    problem = ""
    for cls, where in attempts:
        try:
            server = cls((where, port), _Quiet)
        except OSError as exc:
            problem = exc.strerror or str(exc)
            if host == "" and exc.errno in (errno.EAFNOSUPPORT, errno.EADDRNOTAVAIL):
                continue  # a node without IPv6: every IPv4 address instead
            break
        server.set_app(app)
        return server
    raise Refusal(f"cannot serve metrics on {address}: {problem}")


SERVED_BY = ("agent", "fallback", "launcher")
"""``cni.served_by`` of an event (``thick``); ``launcher``: an event without it, from the plain launcher."""


class Metrics:
    """The watcher's metrics and health; ``passed`` once per pass, from the watcher's thread only."""

    def __init__(self, address: str, state_dir: str, interval: float, check_timeout: float,
                 dropped_dir: str = DROPPED_DIR, clock: Callable[[], float] = time.monotonic) -> None:
        self.state_dir, self.interval, self.check_timeout = state_dir, interval, check_timeout
        self.dropped_dir, self.clock = dropped_dir, clock
        self.registry = registry = CollectorRegistry()
        self.in_chain = Gauge("cni_logger_in_chain", "1 while the logger is in this network's chain in this file",
                              ["file", "network"], registry=registry)
        self.ready = Gauge("cni_logger_ready", "1 while the logger is in place and passes its self-check",
                           registry=registry)
        self.self_checks = Counter("cni_logger_self_checks", "Self-checks of the installed plugin, by result",
                                   ["result"], registry=registry)
        self.failsafe = Counter("cni_logger_failsafe_removals", "Times the failsafe took the logger out of a "
                                "chain after a failed self-check", ["file"], registry=registry)
        self.reinsertions = Counter("cni_logger_reinsertions", "Times the watcher put the entry back after another "
                                    "agent's rewrite dropped it", ["file"], registry=registry)
        self.events = Counter("cni_logger_events", "Plugin invocations recorded in the trail, by CNI command and "
                              "outcome", ["command", "outcome"], registry=registry)
        self.duration = Histogram("cni_logger_plugin_duration_seconds", "The plugin's own time per invocation "
                                  "(event.duration)", ["command"], buckets=DURATION_BUCKETS, registry=registry)
        self.unreadable = Counter("cni_logger_trail_lines_unreadable", "Trail lines that are not events (damaged, "
                                  "or too long)", ["log_file"], registry=registry)
        self.dropped_total = Counter("cni_logger_dropped_events", "Events the plugin could not write, as put on "
                                     "the record (logger-dropped)", ["log_file"], registry=registry)
        self.dropped_pending = Gauge("cni_logger_dropped_events_pending", "Events the plugin could not write, "
                                     "still counted on tmpfs only (the trail cannot be written)", ["log_file"],
                                     registry=registry)
        self.avail = Gauge("cni_logger_log_filesystem_avail_bytes", "Space left for writers on the log "
                           "directory's filesystem", ["log_file"], registry=registry)
        self.size = Gauge("cni_logger_log_filesystem_size_bytes", "Size of the log directory's filesystem",
                          ["log_file"], registry=registry)
        self.served = Counter("cni_logger_invocations_served", "Plugin invocations recorded in the trail, by what "
                              "ran them: agent (thick mode), fallback (thick mode's shim, in-process), launcher",
                              ["by"], registry=registry)
        for by in SERVED_BY:
            self.served.labels(by)
        self.agent_requests = Counter("cni_logger_agent_requests", "Requests the agent met, by what became of them "
                                      "(served, refused, busy, abandoned, failed)", ["result"], registry=registry)
        self.agent_up = Gauge("cni_logger_agent_up", "1 while thick mode's agent listens", registry=registry)
        self._agent: Agent | None = None
        self._agent_seen: dict[str, int] = {}
        self.passes = Counter("cni_logger_watch_passes", "Passes of the watcher's loop", registry=registry)
        self.last_pass = Gauge("cni_logger_watch_last_pass_timestamp_seconds", "When the watcher's last pass "
                               "ended (Unix time)", registry=registry)
        Gauge("cni_logger_build_info", "The running cni-logger's version", ["version"],
              registry=registry).labels(__version__).set(1)
        for result in CHECK_RESULTS:
            self.self_checks.labels(result)
        for command in COMMANDS:
            for outcome in OUTCOMES:
                self.events.labels(command, outcome)
        self._tails: dict[str, Tail] = {}
        self._recent: dict[str, dict[str, None]] = {}
        self._chains: set[tuple[str, str]] = set()
        self._lock = threading.Lock()
        self._deadline = clock() + self._slack(interval)
        self._overdue_since: float | None = None
        self._metrics_app = make_wsgi_app(registry)
        self.server = bind(address, self.app)

    def watch_agent(self, agent: Agent) -> None:
        """Count thick mode's agent's requests (``agent.Counts``) and whether it listens, at each pass."""
        self._agent = agent
        for result in agent.counts.KINDS:
            self.agent_requests.labels(result)

    # -- serving -----------------------------------------------------------------------------------------

    def start(self) -> None:
        """Serve from a daemon thread. Called by ``watch`` once SIGTERM/SIGINT are blocked, so the thread
        inherits the mask and the signals stay for the loop's ``sigtimedwait``."""
        with self._lock:
            self._deadline = self.clock() + self._slack(self.interval)
        threading.Thread(target=self.server.serve_forever, name="metrics", daemon=True).start()

    def _slack(self, wait: float) -> float:
        return wait + STUCK_INTERVALS * self.interval + STUCK_CHECKS * self.check_timeout

    def health(self) -> tuple[bool, str]:
        """(live, why): whether the last pass ended in time for the one planned after it."""
        with self._lock:
            late = self.clock() - self._deadline
        if late > 0:
            return False, f"stuck: the watcher's loop is {late:.1f}s overdue (no pass ended in time)\n"
        return True, "ok: the watcher's loop runs\n"

    def app(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("PATH_INFO") == "/healthz":
            live, text = self.health()
            start_response("200 OK" if live else "503 Service Unavailable",
                           [("Content-Type", "text/plain; charset=utf-8")])
            return [text.encode()]
        body: Iterable[bytes] = self._metrics_app(environ, start_response)
        return body

    # -- one pass ----------------------------------------------------------------------------------------

    def recorder(self, inner: Recorder) -> Recorder:
        """``inner``, counting the failsafe's removals and the re-insertions on the way."""

        def record(path: str, old: bytes | None, new: bytes | None, reason: str, since: float | None = None,
                   detail: str | None = None) -> None:
            if reason == "failsafe":
                self.failsafe.labels(path).inc()
            elif reason == "agent-rewrite":
                self.reinsertions.labels(path).inc()
            inner(path, old, new, reason, since, detail)

        return record

    def passed(self, check: str | None, ready: bool, wait: float) -> list[str]:
        """After a pass: ``check`` its self-check's result (one of ``CHECK_RESULTS``, None: none was made),
        ``ready`` whether the logger is in place, ``wait`` the seconds until the next. The problems met
        (never raises: the watcher is the DaemonSet's PID 1)."""
        with self._lock:
            self._deadline = self.clock() + self._slack(wait)
        try:
            if check is not None:
                self.self_checks.labels(check).inc()
            self.ready.set(1 if ready else 0)
            self._measure()
            self.passes.inc()
            self.last_pass.set(time.time())
        except Exception:
            return [f"warning: metrics: unexpected error:\n{traceback.format_exc().rstrip()}"]
        return []

    def _measure(self) -> None:
        try:
            configs = list(load_journal(self.state_dir)["configs"])
        except Refusal:
            configs = []  # the install pass reports it
        now: set[tuple[str, str]] = set()
        for path in configs:
            try:
                with open(path, "rb") as f:
                    data = f.read()
            except OSError:
                continue
            for network, _, entry in logger_entries(data):
                now.add((path, network))
                log_file = trail_settings(entry).log_file
                if log_file is not None and log_file not in self._tails:
                    self._follow(log_file)
            if not any(p == path for p, _ in now):  # out of this file's chain: it is reported as 0
                name = _network_name(data)
                if name is not None:
                    self._chains.add((path, name))
        self._chains |= now
        for path, network in self._chains:
            self.in_chain.labels(path, network).set(1 if (path, network) in now else 0)
        if self._agent is not None:
            self.agent_up.set(1 if self._agent.running else 0)
            for result, count in self._agent.counts.snapshot().items():
                self.agent_requests.labels(result).inc(count - self._agent_seen.get(result, 0))
                self._agent_seen[result] = count
        for log_file, tail in self._tails.items():
            self._read(log_file, tail)
            self._space(log_file)
            self.dropped_pending.labels(log_file).set(self._pending(log_file))

    def _follow(self, log_file: str) -> None:
        self.dropped_total.labels(log_file)
        self.unreadable.labels(log_file)
        self._tails[log_file] = Tail(log_file, on_drop=self.unreadable.labels(log_file).inc)

    def _read(self, log_file: str, tail: Tail) -> None:
        for raw in tail.poll(self.clock()):
            try:
                doc = jsonio.loads_bytes(raw)
                event = doc["event"]
            except (ValueError, RecursionError, KeyError, TypeError):
                self.unreadable.labels(log_file).inc()
                continue
            cni = doc.get("cni") if isinstance(doc.get("cni"), dict) else {}
            if not isinstance(event, dict) or not isinstance(cni, dict):
                self.unreadable.labels(log_file).inc()
            elif self._seen_before(log_file, event.get("id")):
                continue  # the sink wrote it twice (filesink.RotatingFile._append), or a rotated copy was read
            elif event.get("dataset") == "cni.coverage":
                coverage = cni.get("coverage")
                if event.get("action") == "logger-dropped" and isinstance(coverage, dict):
                    count = coverage.get("dropped")
                    if isinstance(count, int) and count > 0:
                        self.dropped_total.labels(log_file).inc(count)
            elif cni.get("role") != "attempt" and isinstance(cni.get("command"), str):
                command = cni["command"]
                self.events.labels(command, str(event.get("outcome", "unknown"))).inc()
                by = cni.get("served_by", "launcher")
                if by in SERVED_BY:
                    self.served.labels(by).inc()
                duration = event.get("duration")
                if isinstance(duration, int) and duration >= 0:
                    self.duration.labels(command).observe(duration / 1e9)

    def _seen_before(self, log_file: str, event_id: Any) -> bool:
        """Whether the trail's recent events include this ``event.id`` (remembered: the last ``RECENT_IDS``)."""
        if not isinstance(event_id, str):
            return False
        seen = self._recent.setdefault(log_file, {})
        if event_id in seen:
            return True
        seen[event_id] = None
        if len(seen) > RECENT_IDS:
            del seen[next(iter(seen))]
        return False

    def _space(self, log_file: str) -> None:
        try:
            st = os.statvfs(os.path.dirname(log_file) or ".")
        except OSError:
            return  # no directory yet (the plugin creates it): no sample rather than a wrong one
        self.avail.labels(log_file).set(st.f_bavail * st.f_frsize)
        self.size.labels(log_file).set(st.f_blocks * st.f_frsize)

    def _pending(self, log_file: str) -> int:
        count = 0
        for path in dropped.pending(log_file, self.dropped_dir):
            try:
                with open(path, "rb") as f:
                    count += f.read(dropped.MAX_RECORDS_BYTES + 4096).count(b"\n")
            except OSError:
                continue
        return count


def _network_name(data: bytes) -> str | None:
    try:
        doc = json.loads(data)
    except (ValueError, RecursionError):
        return None
    name = doc.get("name") if isinstance(doc, dict) else None
    return name if isinstance(name, str) else None
