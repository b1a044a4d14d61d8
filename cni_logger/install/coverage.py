"""Coverage events: the trail's record of when the logger was in which chain, and of who holds what.

The plugin records one event per invocation; it cannot record the times it is not in a chain, nor the
attachments whose ADD has rotated out of the trail. This module writes what the installer and
``install --watch`` know about that into the trail they configure, as coverage events
(docs/coverage-events.md is the contract the audit reads), in the invocation events' ECS shape
(``events.coverage_event``) and through the same rotating sink, with each entry's own ``logFile`` and
``logOptions``:

* ``record_change``: the logger entered or left a chain (``logger-entered`` / ``logger-left``), found by
  comparing a config file's content before and after a write. The installer calls it after each write.
* ``write_inventory``: a checkpoint of the node's attachments from libcni's result cache (one
  ``cni-attachment`` per attachment of a network the logger is in, then a ``logger-inventory``).
* ``write_heartbeat``: ``logger-heartbeat``, the watcher is alive and the logger is in these networks.
* ``Keeper``: what ``--watch`` does once per pass: an inventory at start, after a rotation of a live log
  file and after the logger re-enters a chain; a heartbeat every ``--heartbeat`` seconds; and the events
  the plugin could not write (``cni_logger.dropped``) put on the record as ``logger-dropped``.

Nothing here raises to its caller: coverage is reported, never a reason for an install to fail. Each
function returns the problems met (a write that failed), for the caller to print.
"""

from __future__ import annotations

import os
import stat
import time
import traceback
from collections.abc import Callable
from typing import Any

from cni_logger import dropped, events, jsonio, settings
from cni_logger.filesink import DEFAULT_LOG_FILE, DROPPED_DIR, RotatingFile, SinkError
from cni_logger.install import Refusal
from cni_logger.install.journal import load_journal
from cni_logger.install.runtimes import DEFAULT_HEARTBEAT, DEFAULT_RESULTS_CACHE, LOGGER_TYPE
from cni_logger.settings import Settings

CACHE_KIND = "cniCacheV1"
MAX_CACHE_FILE = 8 << 20
"""A cached attachment holds its config (base64) and result: far below this; a bigger file is not read."""
REASONS = ("install", "uninstall", "failsafe", "restored", "agent-rewrite", "shutdown", "reconciled")
_WHY = {
    "install": "cni-logger install",
    "uninstall": "cni-logger uninstall",
    "failsafe": "the plugin failed its self-check; install --watch took it out so that pods keep starting",
    "restored": "install --watch put the entry back",
    "agent-rewrite": "another agent rewrote the file without the logger's entry",
    "shutdown": "install --watch stopped",
    "reconciled": "found by the installer's next pass",
}
_TRIGGERS = {
    "start": "install --watch started",
    "rotation": "the live log file was rotated",
    "restored": "the logger re-entered a chain",
}


# -- the logger entries of a config --------------------------------------------------------------


def logger_entries(data: bytes | None) -> list[tuple[str, str, dict[str, Any]]]:
    """``(network, role, entry)`` for each logger entry of a config file's content (none if unreadable).

    An entry without a valid ``role`` is the ``outcome`` entry (a single logger records outcomes).
    """
    if not data:
        return []
    try:
        doc = jsonio.loads_bytes(data)
    except (ValueError, RecursionError):
        return []
    if not isinstance(doc, dict):
        return []
    name, listed = doc.get("name"), doc.get("plugins")
    network = name if isinstance(name, str) else ""
    plugins: list[Any] = listed if isinstance(listed, list) else [doc]
    found = []
    for plugin in plugins:
        if isinstance(plugin, dict) and plugin.get("type") == LOGGER_TYPE:
            role = plugin.get("role")
            found.append((network, role if isinstance(role, str) and role in settings.ROLES else "outcome", plugin))
    return found


def trail_settings(entry: dict[str, Any]) -> Settings:
    """The entry's settings as the plugin reads them, with its file (the default path if it names none)."""
    conf = settings.load(entry)
    if conf.log_file is None:
        conf.log_file = DEFAULT_LOG_FILE
    return conf


def _sink(conf: Settings) -> RotatingFile:
    assert conf.log_file is not None
    return RotatingFile(conf.log_file, conf.max_size_bytes, conf.max_backups, conf.max_age_days, conf.compress,
                        rotate=conf.rotation == "size")


def _append(conf: Settings, lines: list[dict[str, Any]]) -> list[str]:
    """Write the events to the entry's trail, in order; the problems (the rest is skipped after a failure)."""
    return _append_all(conf, lines)[0]


def _append_all(conf: Settings, lines: list[dict[str, Any]]) -> tuple[list[str], bool]:
    """``_append``, and whether every event was written (warnings after a write, e.g. rotation, aside)."""
    sink = _sink(conf)
    problems = []
    for event in lines:
        try:
            problems += sink.append(events.render_coverage(event, conf.extra_redact_keys))
        except SinkError as exc:
            problems.append(f"coverage event ({event['event']['action']}) not written: {exc}")
            return problems, False
        except Exception as exc:
            problems.append(f"coverage event ({event['event']['action']}) not written: {type(exc).__name__}: {exc}")
            return problems, False
    return problems, True


def _iso(epoch: float) -> str:
    return events.iso_utc(int(epoch * 1_000_000_000))


# -- entered and left ----------------------------------------------------------------------------


def change_event(action: str, path: str, network: str, roles: list[str], reason: str, since: float | None = None,
                 detail: str | None = None) -> dict[str, Any]:
    """One ``logger-entered`` or ``logger-left`` event."""
    coverage: dict[str, Any] = {"file": path, "network": network, "roles": roles, "reason": reason}
    if since is not None:
        coverage["since"] = _iso(since)
    if detail:
        coverage["detail"] = detail[:4096]
    verb = "entered" if action == "logger-entered" else "left"
    why = f"{reason}: {detail}" if detail else reason
    level = "warning" if action == "logger-left" and reason != "uninstall" else "info"
    words = _WHY.get(reason, reason) + (f": {detail}" if detail else "")
    return events.coverage_event(action, f"cni-logger {verb} the chain of network {network} in {path} ({why})",
                                 words, coverage, level=level, network=network or None)


def record_change(path: str, old: bytes | None, new: bytes | None, reason: str, since: float | None = None,
                  detail: str | None = None) -> list[str]:
    """Write ``logger-entered`` / ``logger-left`` for the logger entries that a write of ``path`` added or
    removed (``old``, ``new``: the content before and after; ``None``: no file). Returns the problems.

    Entries compare by network, role and log file: each trail hears about the entries that write to it.
    ``reason``: one of ``REASONS``. ``agent-rewrite``: ``old`` is the agent's version without the entry
    (dropped at ``since``), ``new`` has it back; the trail gets the outage: ``logger-left`` (agent-rewrite,
    ``since``) then ``logger-entered`` (restored). Never raises.
    """
    try:
        return _record_change(path, old, new, reason, since, detail)
    except Exception:
        return [f"coverage events for {path} not written: unexpected error:\n{traceback.format_exc().rstrip()}"]


def _keyed(data: bytes | None) -> dict[tuple[str, str, str], Settings]:
    keyed: dict[tuple[str, str, str], Settings] = {}
    for network, role, entry in logger_entries(data):
        conf = trail_settings(entry)
        assert conf.log_file is not None
        keyed.setdefault((conf.log_file, network, role), conf)
    return keyed


def _grouped(keys: set[tuple[str, str, str]], confs: dict[tuple[str, str, str], Settings]
             ) -> list[tuple[Settings, str, list[str]]]:
    """``(trail settings, network, roles)`` per trail and network, roles in chain order."""
    groups: dict[tuple[str, str], list[str]] = {}
    for log, network, role in sorted(keys):
        groups.setdefault((log, network), []).append(role)
    return [(confs[(log, network, roles[0])], network, [r for r in settings.ROLES if r in roles])
            for (log, network), roles in groups.items()]


def _record_change(path: str, old: bytes | None, new: bytes | None, reason: str, since: float | None,
                   detail: str | None) -> list[str]:
    before, after = _keyed(old), _keyed(new)
    entered = _grouped(set(after) - set(before), after)
    left = _grouped(set(before) - set(after), before)
    by_trail: dict[str, tuple[Settings, list[dict[str, Any]]]] = {}

    def add(conf: Settings, event: dict[str, Any]) -> None:
        assert conf.log_file is not None
        by_trail.setdefault(conf.log_file, (conf, []))[1].append(event)

    for conf, network, roles in left:
        add(conf, change_event("logger-left", path, network, roles, reason, since, detail))
    for conf, network, roles in entered:
        if reason == "agent-rewrite":
            add(conf, change_event("logger-left", path, network, roles, reason, since, detail))
            add(conf, change_event("logger-entered", path, network, roles, "restored"))
        else:
            add(conf, change_event("logger-entered", path, network, roles, reason, since, detail))
    problems = []
    for conf, batch in by_trail.values():
        problems += _append(conf, batch)
    return problems


# -- the inventory ---------------------------------------------------------------------------------


def read_cache(cache_dir: str) -> tuple[list[dict[str, Any]], bool, str]:
    """The cached attachments (parsed ``cniCacheV1`` records, in file-name order), whether the whole cache
    was read, and if not why. Junk, a file being written (libcni writes in place), an unreadable file or
    directory: left out, and the inventory says it is not complete."""
    try:
        names = sorted(os.listdir(cache_dir))
    except OSError as exc:
        return [], False, f"{cache_dir}: {exc.strerror or exc}"
    found: list[dict[str, Any]] = []
    problems: list[str] = []
    for name in names:
        path = os.path.join(cache_dir, name)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
            try:
                if not stat.S_ISREG(os.fstat(fd).st_mode):
                    problems.append(f"{name}: not a regular file")
                    continue
                data = os.read(fd, MAX_CACHE_FILE + 1)
            finally:
                os.close(fd)
        except FileNotFoundError:
            continue  # DELed while we listed: no longer an attachment
        except OSError as exc:
            problems.append(f"{name}: {exc.strerror or exc}")
            continue
        if len(data) > MAX_CACHE_FILE:
            problems.append(f"{name}: larger than {MAX_CACHE_FILE} bytes")
            continue
        try:
            doc = jsonio.loads_bytes(data)
        except (ValueError, RecursionError):
            problems.append(f"{name}: not JSON (being written?)")
            continue
        if not (isinstance(doc, dict) and doc.get("kind") == CACHE_KIND and isinstance(doc.get("networkName"), str)
                and isinstance(doc.get("containerId"), str) and isinstance(doc.get("ifName"), str)):
            problems.append(f"{name}: not a {CACHE_KIND} record")
            continue
        found.append(doc)
    detail = f"{len(problems)} file(s) of {cache_dir} not read: {'; '.join(problems[:5])}" if problems else ""
    return found, not problems, detail


def _cni_args(value: Any) -> dict[str, str]:
    args: dict[str, str] = {}
    for pair in value if isinstance(value, list) else []:
        if isinstance(pair, list) and len(pair) == 2 and all(isinstance(p, str) for p in pair):
            args[pair[0]] = pair[1]
    return args


def attachment_event(doc: dict[str, Any], inventory: str) -> dict[str, Any]:
    """One cached attachment, shaped like an ADD's event (container, pod, network, addresses, result)."""
    network, container_id, ifname = doc["networkName"], doc["containerId"], doc["ifName"]
    args = _cni_args(doc.get("cniArgs"))
    result = doc.get("result")
    summary = events.summarize_result(result) if isinstance(result, dict) else {}
    addresses = events.result_addresses(summary)
    pod = f" (pod {args['K8S_POD_NAMESPACE']}/{args['K8S_POD_NAME']})" if \
        args.get("K8S_POD_NAMESPACE") and args.get("K8S_POD_NAME") else ""
    held = f" holds {', '.join(addresses)}" if addresses else " is attached"
    event = events.coverage_event(
        "cni-attachment", f"{ifname} of container {container_id}{pod} on network {network}{held} (inventory)",
        "listed in libcni's result cache", {}, network=network)
    if container_id:
        event["container"] = {"id": container_id}
    orchestrator = events.kubernetes_fields(args, addresses)
    if orchestrator:
        event["orchestrator"] = orchestrator
    if addresses:
        event["related"] = {"ip": addresses}
    cni: dict[str, Any] = {"container_id": container_id, "ifname": ifname, "args": args}
    if summary:
        cni["prev_result"] = summary
    cni["coverage"] = {"inventory": inventory}
    event["cni"] = cni
    return event


def write_inventory(conf: Settings, networks: list[str], cache_dir: str, trigger: str) -> list[str]:
    """A checkpoint in the trail of ``conf``: a ``cni-attachment`` per cached attachment on ``networks``,
    then the ``logger-inventory`` summary. Returns the problems met."""
    return _write_inventory(conf, networks, cache_dir, trigger)[0]


def _write_inventory(conf: Settings, networks: list[str], cache_dir: str, trigger: str) -> tuple[list[str], bool]:
    try:
        docs, complete, detail = read_cache(cache_dir)
        inventory = events.new_event_id()
        wanted = set(networks)
        lines = [attachment_event(doc, inventory) for doc in docs if doc["networkName"] in wanted]
        coverage: dict[str, Any] = {"inventory": inventory, "cache_dir": cache_dir, "attachments": len(lines),
                                    "networks": sorted(wanted), "trigger": trigger, "complete": complete}
        if detail:
            coverage["detail"] = detail
        names = ", ".join(sorted(wanted))
        lines.append(events.coverage_event(
            "logger-inventory", f"{len(lines)} attachments on network(s) {names} in {cache_dir} ({trigger})"
            + ("" if complete else f"; incomplete: {detail}"),
            _TRIGGERS.get(trigger, trigger), coverage))
        return _append_all(conf, lines)
    except Exception:
        return [f"inventory not written: unexpected error:\n{traceback.format_exc().rstrip()}"], False


def write_heartbeat(conf: Settings, networks: list[str], interval: float,
                    agent: dict[str, Any] | None = None) -> list[str]:
    """``logger-heartbeat``: the watcher runs, and the logger is in these networks of this trail now.

    ``agent`` (thick mode): whether the agent serves, and its requests since the watcher started, by what became
    of them (``agent.Counts``); the invocations the shim ran in-process say so in their own events."""
    coverage: dict[str, Any] = {"networks": sorted(networks), "interval": interval}
    if agent is not None:
        coverage["agent"] = agent
    names = ", ".join(sorted(networks)) or "no network"
    return _append(conf, [events.coverage_event(
        "logger-heartbeat", f"cni-logger install --watch is running; the logger is in {names}",
        "install --watch heartbeat", coverage)])


# -- the watcher's pass --------------------------------------------------------------------------


class Keeper:
    """What ``install --watch`` writes about coverage, one ``tick`` per pass (after the install pass).

    The chains the logger is in are read from the files the state dir's journal names (its ``configs``
    keys) and their logger entries; each entry's ``logFile`` is a trail. Per trail: an inventory at start,
    after the live file was rotated (its inode changed since the last pass) and after the logger entered
    one of its networks again (or the install pass rewrote its chain); a heartbeat at start and every
    ``heartbeat`` seconds (0: never); and the events the plugin could not write, as ``logger-dropped``.
    A checkpoint that could not be written is owed and tried again at the next pass.
    """

    def __init__(self, state_dir: str, cache_dir: str = DEFAULT_RESULTS_CACHE, heartbeat: float = DEFAULT_HEARTBEAT,
                 dropped_dir: str = DROPPED_DIR, agent: Callable[[], dict[str, Any]] | None = None) -> None:
        """``agent``: thick mode's agent state for the heartbeats (``Agent.state``)."""
        self.state_dir, self.cache_dir, self.heartbeat, self.dropped_dir = state_dir, cache_dir, heartbeat, dropped_dir
        self.agent = agent
        self._trails: dict[str, Settings] = {}
        self._networks: dict[str, set[str]] = {}
        self._inodes: dict[str, tuple[int, int] | None] = {}
        self._owed: dict[str, str] = {}
        self._next_heartbeat = 0.0

    def tick(self, changed: bool = False) -> list[str]:
        """One pass; the problems met (never raises: it runs in the DaemonSet's PID 1).

        ``changed``: the install pass before it wrote something. After the first pass that means the entry
        was put back (an agent's rewrite had dropped it between two passes, unseen here) or changed: a new
        checkpoint costs little, a missed one leaves the trail without evidence, so each gets one.
        """
        try:
            return self._tick(changed)
        except Exception:
            return [f"coverage: unexpected error:\n{traceback.format_exc().rstrip()}"]

    def current(self) -> tuple[dict[str, tuple[Settings, set[str]]], list[str]]:
        """The trails the logger writes to now, with their networks; the problems (the journal unreadable)."""
        try:
            paths = list(load_journal(self.state_dir)["configs"])
        except Refusal as exc:
            return {}, [f"coverage: {exc}"]
        now: dict[str, tuple[Settings, set[str]]] = {}
        for path in paths:
            try:
                with open(path, "rb") as f:
                    data = f.read()
            except OSError:
                continue  # no file: no chain (a file that cannot be read is the install pass's to report)
            for network, _, entry in logger_entries(data):
                conf = trail_settings(entry)
                assert conf.log_file is not None
                now.setdefault(conf.log_file, (conf, set()))[1].add(network)
        return now, []

    @staticmethod
    def _inode(path: str) -> tuple[int, int] | None:
        try:
            st = os.lstat(path)
        except OSError:
            return None
        return st.st_dev, st.st_ino

    def _tick(self, changed: bool) -> list[str]:
        now, problems = self.current()
        if problems:  # the journal cannot be read: keep what was known
            now = {path: (conf, self._networks.get(path, set())) for path, conf in self._trails.items()}
        clock = time.monotonic()
        beat = self.heartbeat > 0 and clock >= self._next_heartbeat and bool(now or self._trails)
        for path, (conf, _) in now.items():
            self._trails[path] = conf
        for path, conf in self._trails.items():
            networks = now[path][1] if path in now else set()
            before = self._networks.get(path)
            inode = self._inode(path)
            if networks:
                if path not in self._inodes:
                    self._owed.setdefault(path, "start")
                elif before is not None and (networks - before or changed):
                    self._owed[path] = "restored"
                elif self._inodes[path] is not None and inode != self._inodes[path]:
                    self._owed.setdefault(path, "rotation")
            trouble: list[str] = []
            if beat:
                trouble += write_heartbeat(conf, sorted(networks), self.heartbeat,
                                           self.agent() if self.agent is not None else None)
            if networks and path in self._owed:
                reported, written = _write_inventory(conf, sorted(networks), self.cache_dir, self._owed[path])
                if written:
                    del self._owed[path]
                trouble += reported
            claims = dropped.pending(path, self.dropped_dir)
            if claims:
                trouble += dropped.flush(_sink(conf), conf.extra_redact_keys, self.dropped_dir, claims)
            problems += [f"coverage ({path}): {p}" for p in trouble]
            self._networks[path] = networks
            self._inodes[path] = self._inode(path)
        if beat:
            self._next_heartbeat = clock + self.heartbeat
        return problems
