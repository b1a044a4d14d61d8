"""The command lines of ``cni-logger launcher``, ``install`` and ``uninstall``.

``cni_logger.cli.tool`` imports this module (it is in ``COMMAND_MODULES``) for every subcommand, the
audit ones too, to register the parsers: so it imports only ``runtimes`` for the choices and defaults,
and each command imports the modules that do the work when it runs.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable

from cni_logger.filesink import DEFAULT_LOG_FILE
from cni_logger.install import Refusal
from cni_logger.install.runtimes import (
    DEFAULT_AGENT_SOCKET,
    DEFAULT_AGENT_TIMEOUT,
    DEFAULT_CHECK_TIMEOUT,
    DEFAULT_HEARTBEAT,
    DEFAULT_RESULTS_CACHE,
    DEFAULT_STATE_DIR,
    RKT_FILE,
    RUNTIMES,
    Options,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from cni_logger.install.transaction import Recorder

INCOMPLETE = 3
"""Exit status of install/uninstall when a change failed halfway and could not be undone: some files were
changed (the message says which), the journal records the rest, and the next pass completes or undoes it.
0: done (or nothing to do); 1: refused, nothing was changed."""
UNINSTALL_LAUNCHER_KEPT = 3
"""``uninstall``'s exit status when it took this install's entries out but kept the launcher, because a config
in a known conf dir still names it (the message lists them): not a refusal (the entries are out), and not
"all removed" either (an environment the launcher runs must stay)."""


def _number(text: str) -> float:
    value = float(text)
    return int(value) if value.is_integer() and "." not in text and "e" not in text.lower() else value


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``cni-logger launcher PATH``, ``cni-logger install ...`` and ``cni-logger uninstall ...``."""
    launcher = commands.add_parser("launcher", help="write the plugin executable (e.g. /opt/cni/bin/logger)")
    launcher.add_argument("path", help="where to write it; the file name is the CNI type, normally 'logger'")
    launcher.set_defaults(run=_run_launcher)

    install = commands.add_parser(
        "install", help="install the plugin and add it to the node's network config",
        description="Write the launcher into the CNI bin dir and append the logger to the primary network's "
                    "plugin list (the first valid config in the runtime's order), atomically and idempotently.")
    install.add_argument("--runtime", choices=sorted(RUNTIMES), default="containerd",
                         help="whose rules pick the file: containerd, crio (first valid .conf/.conflist/.json), "
                              "podman (a named .conflist), rkt (a separate logger network) [containerd]")
    install.add_argument("--conf-dir", help="CNI config dir [/etc/cni/net.d; rkt: /etc/rkt/net.d]")
    install.add_argument("--bin-dir", help="CNI plugin dir [/opt/cni/bin; rkt: /usr/lib/rkt/plugins/net]")
    install.add_argument("--conf-file", help="insert into this file (name in --conf-dir, or a path) instead of "
                                             f"the primary one; rkt: the logger network's file [{RKT_FILE}]")
    install.add_argument("--network", help="insert into the network of this name (CRI-O's cni_default_network)")
    install.add_argument("--log-file", help=f"audit log path [{DEFAULT_LOG_FILE}; an existing logger entry: its own]")
    install.add_argument("--fail-on-log-error", action="store_true", help="strict audit: failOnLogError true")
    install.add_argument("--max-size", type=_number, metavar="MB", help="logOptions.maxSize")
    install.add_argument("--max-backups", type=int, metavar="N", help="logOptions.maxBackups")
    install.add_argument("--max-age", type=_number, metavar="DAYS", help="logOptions.maxAge")
    install.add_argument("--compress", action="store_true", help="logOptions.compress true")
    install.add_argument("--rotation", choices=("size", "external"), help="logOptions.rotation")
    install.add_argument("--capabilities", metavar="LIST",
                         help="comma-separated capabilities to receive, e.g. portMappings,bandwidth")
    install.add_argument("--bracket", action="store_true", default=None,
                         help="a logger entry first (records each attempt) and last (its outcome), so ADDs that "
                              "fail earlier in the chain are in the trail too; not for rkt [without --bracket or "
                              "--no-bracket: the chain keeps the mode it has]")
    install.add_argument("--no-bracket", action="store_false", dest="bracket",
                         help="the logger last only (turns a bracketed chain back into one entry)")
    install.add_argument("--state-dir", default=DEFAULT_STATE_DIR,
                         help=f"where the install journal is kept [{DEFAULT_STATE_DIR}]")
    install.add_argument("--dry-run", action="store_true", help="print a unified diff, write nothing")
    install.add_argument("--check-timeout", type=float, default=DEFAULT_CHECK_TIMEOUT, metavar="SECONDS",
                         help="seconds for each call of the self-check (the plugin run with VERSION, then ADD) "
                              f"[{DEFAULT_CHECK_TIMEOUT:g}]")
    install.add_argument("--watch", action="store_true",
                         help="keep running: re-insert when the file is rewritten; take the entry out while "
                              "the plugin fails its self-check; uninstall on SIGTERM")
    install.add_argument("--interval", type=float, default=5.0, metavar="SECONDS",
                         help="--watch: seconds between checks (and self-checks) [5]")
    install.add_argument("--heartbeat", type=float, default=DEFAULT_HEARTBEAT, metavar="SECONDS",
                         help="--watch: write a logger-heartbeat event into the trail every SECONDS (0: never) "
                              f"[{DEFAULT_HEARTBEAT:g}]")
    install.add_argument("--results-cache", default=DEFAULT_RESULTS_CACHE, metavar="DIR",
                         help="--watch: libcni's result cache, read for the inventories of current attachments "
                              f"written into the trail [{DEFAULT_RESULTS_CACHE}]")
    install.add_argument("--ready-file", help="--watch: exists while the logger is in place and passes its "
                                              "self-check (readiness probe)")
    install.add_argument("--agent", action="store_true",
                         help="--watch: thick mode: write the shim as the plugin and serve its requests from this "
                              "process (a root-only unix socket); without the agent the shim runs the plugin "
                              "in-process")
    install.add_argument("--agent-socket", metavar="PATH", default=None,
                         help=f"--agent: the agent's socket, in a root-only directory [{DEFAULT_AGENT_SOCKET}]")
    install.add_argument("--agent-timeout", type=float, default=DEFAULT_AGENT_TIMEOUT, metavar="SECONDS",
                         help="--agent: how long the shim waits for the agent's answer before it runs the plugin "
                              f"in-process [{DEFAULT_AGENT_TIMEOUT:g}]")
    install.add_argument("--shim", metavar="PATH",
                         help="--agent: the shim binary to install [<this installation>/libexec/cni-logger-shim]")
    install.add_argument("--metrics-address", metavar="HOST:PORT",
                         help="--watch: serve Prometheus metrics on http://HOST:PORT/metrics and the liveness check "
                              "on /healthz (:PORT: every address; e.g. :9740) [off]")
    install.set_defaults(run=_run_install)

    uninstall = commands.add_parser(
        "uninstall", help="undo what install recorded",
        description="Remove what install added, as recorded in its journal: restore each file byte for byte "
                    "if nobody changed it since, else remove only the logger entries; then the launcher.")
    uninstall.add_argument("--state-dir", default=DEFAULT_STATE_DIR, help=f"[{DEFAULT_STATE_DIR}]")
    uninstall.add_argument("--keep-launcher", action="store_true",
                           help="leave the plugin executable (pods set up with it may still need it for DEL)")
    uninstall.add_argument("--dry-run", action="store_true", help="print a unified diff, write nothing")
    uninstall.set_defaults(run=_run_uninstall)


def _emitter(command: str) -> Callable[[list[str]], None]:
    def emit(notes: list[str]) -> None:
        for note in notes:
            sys.stderr.write(f"cni-logger {command}: {note}\n")
        sys.stderr.flush()

    return emit


def _coverage_recorder(emit: Callable[[list[str]], None]) -> Recorder:
    """The recorder every install and uninstall pass tells of its config changes: the trail's coverage events
    (``coverage.record_change``), whose problems are reported and never change the outcome."""
    from cni_logger.install.coverage import record_change

    def record(path: str, old: bytes | None, new: bytes | None, reason: str, since: float | None = None,
               detail: str | None = None) -> None:
        problems = record_change(path, old, new, reason, since, detail)
        if problems:
            emit([f"warning: {problem}" for problem in problems])

    return record


def _run_launcher(args: argparse.Namespace) -> int:
    """Write the launcher; it is executed (VERSION) under its temporary name and renamed into place only once
    it ran, so a path it cannot execute from (a ``noexec`` mount, a missing ``/bin/sh``) keeps what was there."""
    from cni_logger.install import atomicfile, launcher, selfcheck
    from cni_logger.skel import SUPPORTED_VERSIONS

    target = os.path.abspath(args.path)

    def runs() -> None:
        selfcheck.check_version(atomicfile.temporary_path(target), SUPPORTED_VERSIONS[-1], DEFAULT_CHECK_TIMEOUT,
                                f"the new {target} (run as {atomicfile.temporary_path(target)})")

    try:
        launcher.write(target, before_replace=runs)
    except selfcheck.CheckFailed as exc:
        sys.stderr.write(f"cni-logger: {args.path} not written: it does not execute: {exc}\n")
        return 1
    except (OSError, launcher.LauncherError, ValueError) as exc:
        sys.stderr.write(f"cni-logger: cannot write {args.path}: {exc}\n")
        return 1
    sys.stderr.write(f"cni-logger: wrote {args.path} (executed: it answers VERSION)\n")
    return 0


def _run_install(args: argparse.Namespace, recorder: Recorder | None = None) -> int:
    """``recorder``: see ``apply.apply`` (default: the coverage events' writer, ``_coverage_recorder``)."""
    from cni_logger.install.apply import install_once
    from cni_logger.install.content import logger_entry
    from cni_logger.install.selfcheck import CheckFailed
    from cni_logger.install.transaction import Incomplete
    from cni_logger.install.watch import watch

    if args.watch:  # the DaemonSet's log: JSON lines for kubectl logs and the shippers
        from cni_logger.install.watchlog import emitter

        emit = emitter()
    else:
        emit = _emitter("install")
    recorder = recorder if recorder is not None else _coverage_recorder(emit)
    runtime = RUNTIMES[args.runtime]
    try:
        if args.watch and args.dry_run:
            raise Refusal("--watch and --dry-run exclude each other")
        if args.interval <= 0:
            raise Refusal("--interval must be > 0")
        if args.check_timeout <= 0:
            raise Refusal("--check-timeout must be > 0")
        if not args.heartbeat >= 0:
            raise Refusal("--heartbeat must be >= 0 (0: no heartbeat)")
        if args.metrics_address is not None and not args.watch:
            raise Refusal("--metrics-address needs --watch (only the watcher keeps running to be scraped)")
        if (args.agent or args.agent_socket or args.shim) and not args.watch:
            raise Refusal("--agent needs --watch (the agent lives in the watcher's process)")
        if (args.agent_socket or args.shim or args.agent_timeout != DEFAULT_AGENT_TIMEOUT) and not args.agent:
            raise Refusal("--agent-socket, --agent-timeout and --shim are options of --agent")
        if not 0 < args.agent_timeout <= 3600:
            raise Refusal("--agent-timeout must be > 0 (and at most 3600)")
        if args.agent_socket is not None and not os.path.isabs(args.agent_socket):
            raise Refusal(f"--agent-socket must be an absolute path: {args.agent_socket}")
        capabilities = [c.strip() for c in (args.capabilities or "").split(",") if c.strip()]
        named = logger_entry(args.log_file, fail_on_log_error=args.fail_on_log_error, max_size=args.max_size,
                             max_backups=args.max_backups, max_age=args.max_age, compress=args.compress,
                             rotation=args.rotation, capabilities=capabilities)
        entry = logger_entry(args.log_file or DEFAULT_LOG_FILE, fail_on_log_error=args.fail_on_log_error,
                             max_size=args.max_size, max_backups=args.max_backups, max_age=args.max_age,
                             compress=args.compress, rotation=args.rotation, capabilities=capabilities)
    except Refusal as exc:
        emit([f"refused: {exc}"])
        return 1
    opts = Options(runtime=runtime, conf_dir=os.path.abspath(args.conf_dir or runtime.conf_dir),
                   bin_dir=os.path.abspath(args.bin_dir or runtime.bin_dir), conf_file=args.conf_file,
                   network=args.network, entry=entry, state_dir=os.path.abspath(args.state_dir),
                   dry_run=args.dry_run, named=named, check_timeout=args.check_timeout, bracket=args.bracket,
                   agent_socket=(args.agent_socket or DEFAULT_AGENT_SOCKET) if args.agent else None,
                   shim=os.path.abspath(args.shim) if args.shim else None, agent_timeout=args.agent_timeout)
    if args.watch:
        from cni_logger.install.coverage import Keeper

        metrics = None
        if args.metrics_address is not None:  # prometheus_client is imported here only
            from cni_logger.install.metrics import Metrics

            try:
                metrics = Metrics(args.metrics_address, opts.state_dir, args.interval, args.check_timeout)
            except Refusal as exc:
                emit([f"refused: {exc}"])
                return 1
            recorder = metrics.recorder(recorder)
        agent = None
        if opts.agent_socket is not None:
            from cni_logger.install.agent import Agent

            agent = Agent(opts.agent_socket, on_error=lambda text: emit([f"warning: {text}"]))
        keeper = Keeper(opts.state_dir, os.path.abspath(args.results_cache), args.heartbeat,
                        agent=agent.state if agent is not None else None)
        if metrics is not None and agent is not None:
            metrics.watch_agent(agent)
        return watch(opts, args.interval, args.ready_file, emit, recorder, keeper.tick, metrics, agent)
    notes: list[str] = []
    try:
        install_once(opts, notes, recorder=recorder)
    except Incomplete as exc:
        emit([*notes, f"partly changed: {exc}"])
        return INCOMPLETE
    except CheckFailed as exc:
        emit([*notes, f"refused: the plugin fails its self-check (run as a runtime runs it): {exc}",
              f"{_unchanged(notes)} Repair or replace the installation the launcher runs (e.g. unpack the "
              "bundle again) and install again; if an earlier install already put the logger into a chain, "
              "pods on that network cannot start until then (`cni-logger uninstall --keep-launcher` takes "
              "the entry out)"])
        return 1
    except Refusal as exc:
        emit([*notes, f"refused: {exc}"])
        return 1
    emit(notes)
    return 0


def _unchanged(notes: list[str]) -> str:
    """"nothing was changed", unless the pass first settled an interrupted one's change (its note says what)."""
    if any(note.startswith(("completed an interrupted change", "undid an interrupted change")) for note in notes):
        return "nothing else was changed (only the interrupted change above was settled)."
    return "nothing was changed."


def _run_uninstall(args: argparse.Namespace, recorder: Recorder | None = None) -> int:
    """``recorder``: see ``apply.apply`` (default: the coverage events' writer, ``_coverage_recorder``)."""
    from cni_logger.install.apply import uninstall_once
    from cni_logger.install.transaction import Incomplete

    emit = _emitter("uninstall")
    recorder = recorder if recorder is not None else _coverage_recorder(emit)
    notes: list[str] = []
    try:
        kept = uninstall_once(os.path.abspath(args.state_dir), args.keep_launcher, args.dry_run, notes,
                              recorder=recorder)
    except Incomplete as exc:
        emit([*notes, f"partly changed: {exc}"])
        return INCOMPLETE
    except Refusal as exc:
        emit([*notes, f"refused: {exc}"])
        return 1
    emit(notes)
    return UNINSTALL_LAUNCHER_KEPT if kept else 0
