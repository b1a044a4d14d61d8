"""The audit subcommands' command lines: ``events``, ``timeline``, ``who-had``, ``leaks``, ``stats``, ``follow``,
``report``.

``cni_logger.cli.tool`` imports this module (it is in ``COMMAND_MODULES``) to register the parsers;
the work itself lives in ``cni_logger.audit.run`` and is imported only when a command runs.
"""

from __future__ import annotations

import argparse
from typing import Any

from cni_logger.audit import FORMATS, TIME_HELP
from cni_logger.filesink import DEFAULT_LOG_FILE
from cni_logger.skel import COMMANDS

COMMAND_NAMES = ", ".join(COMMANDS[:-1]) + " or " + COMMANDS[-1]


def _time(text: str) -> str:
    from cni_logger.audit.timeparse import parse_time

    try:
        return parse_time(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _duration(text: str) -> float:
    from cni_logger.audit.timeparse import parse_duration

    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _address(text: str) -> str:
    import ipaddress

    try:
        return ipaddress.ip_address(text.split("/", 1)[0].strip()).compressed
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid IP address {text!r}") from None


def _address_or_subnet(text: str) -> str:
    """An address (an interface address's ``/prefix`` is ignored, as before), or a subnet: a ``/prefix``
    with no host bits set (``10.244.1.0/24``, ``fd00::/64``) asks about every address in it."""
    import ipaddress

    if "/" in text:
        try:
            network = ipaddress.ip_network(text.strip(), strict=True)
        except ValueError:
            pass
        else:
            if network.num_addresses > 1:
                return network.compressed
    return _address(text)


def _command(text: str) -> str:
    command = text.upper()
    if command not in COMMANDS:
        raise argparse.ArgumentTypeError(f"invalid command {text!r}: expected {COMMAND_NAMES}")
    return command


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, not {text!r}")
    return value


def _files_parent() -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False)
    group = parent.add_argument_group("input")
    group.add_argument("--log-file", action="append", metavar="FILE",
                       help=f"the audit log: the live file, a backup of it or a glob; repeatable (default: "
                            f"{DEFAULT_LOG_FILE}). Rotated and gzipped backups of each file are found and read "
                            "too, oldest first; several trails are merged by time")
    group.add_argument("--strict", action="store_true",
                       help="exit 3 when anything in the input was damaged, skipped or possibly missing (each "
                            "stretch is reported on stderr either way)")
    return parent


def _output_parent() -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False)
    group = parent.add_argument_group("output")
    group.add_argument("--format", choices=FORMATS, default="table",
                       help="table for people (default; control characters shown escaped), JSON lines, or CSV "
                            "(RFC 4180) / TSV with a header and one row per answer (cells that a spreadsheet "
                            "would take for a formula get a leading ')")
    group.add_argument("--json", action="store_const", const="json", dest="format", help="the same as --format json")
    return parent


def _filters_parent() -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False)
    group = parent.add_argument_group("filters (all must match)")
    group.add_argument("--container", "-c", default="", metavar="PREFIX", help="container id (or a prefix of it)")
    group.add_argument("--pod", default="", metavar="NAME",
                       help="pod (orchestrator.resource.name / K8S_POD_NAME); * ? [ ] globs")
    group.add_argument("--namespace", "-n", default="", metavar="NAME", help="Kubernetes namespace; globs")
    group.add_argument("--network", default="", metavar="NAME", help="CNI network name; globs")
    group.add_argument("--command", dest="commands", action="append", type=_command, default=[],
                       metavar="CMD", help=f"{COMMAND_NAMES}; repeatable")
    group.add_argument("--outcome", choices=("success", "failure"), help="what the plugin answered")
    group.add_argument("--ip", type=_address, metavar="ADDR", help="an address the event names")
    group.add_argument("--since", type=_time, metavar="TIME", help=f"events at or after: {TIME_HELP}")
    group.add_argument("--until", type=_time, metavar="TIME", help="events before TIME")
    group.add_argument("--no-prefilter", action="store_true",
                       help="decode every line instead of skipping those that lack the values sought "
                            "(slower; for values spelled unusually in the log)")
    return parent


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the audit subcommands to ``cni-logger``."""
    files, output, filters = _files_parent(), _output_parent(), _filters_parent()
    no_trunc: dict[str, Any] = {"action": "store_true", "help": "show full container ids"}

    parser = commands.add_parser(
        "events", parents=[files, output, filters], help="list events, filtered",
        description="List audit events, oldest first. --format json prints the original lines. "
                    "Exit status 0 when events matched, 1 when none did, 2 on errors.")
    parser.add_argument("--no-trunc", **no_trunc)
    parser.set_defaults(run=_runner("events"))

    parser = commands.add_parser(
        "timeline", parents=[files, output], help="one container's (or pod's) attachments: ADD, CHECK, DEL",
        description="Every ADD, CHECK and DEL of the containers whose id starts with CONTAINER, or of every "
                    "sandbox of a pod (--pod), per network and interface, with addresses, interfaces, "
                    "outcomes and durations; times also as epoch seconds.")
    parser.add_argument("container", metavar="CONTAINER", nargs="?", default="",
                        help="container id or a prefix of it")
    parser.add_argument("--pod", default="", metavar="NAMESPACE/NAME",
                        help="a pod's sandboxes over time: NAMESPACE/NAME, or NAME alone (Podman); * ? [ ] globs")
    parser.set_defaults(run=_timeline_runner(parser))

    parser = commands.add_parser(
        "who-had", parents=[files, output], help="which container held an address or subnet (at a time)",
        description="Which container, pod and network held IP, from ADD-to-DEL intervals: all holders, or "
                    "with --at the one(s) holding it at that time. With a subnet (10.244.1.0/24) every "
                    "address in it, each holder once, as its holding ends (still held last; with --at: by "
                    "address), marking conflicts (a superseded holder seen holding the address again); the same "
                    "notes and exit statuses as for one address. "
                    "Exit status 0: held by X; 1: nobody (the trail covers that time); 3: possibly X (its start "
                    "or end is not in the trail; see NOTE); 4: no evidence (before the trail, or in a damaged "
                    "stretch or a possible gap).")
    parser.add_argument("ip", type=_address_or_subnet, metavar="IP|CIDR",
                        help="the address (an interface address's /prefix is ignored), or a subnet with no host "
                             "bits set")
    parser.add_argument("--at", type=_time, metavar="TIME", help=f"only who held it then: {TIME_HELP}")
    parser.add_argument("--no-prefilter", action="store_true",
                        help="decode every line (for an IPAM that spells addresses unusually)")
    parser.add_argument("--no-trunc", **no_trunc)
    parser.set_defaults(run=_runner("who_had"))

    parser = commands.add_parser(
        "leaks", parents=[files, output], help="attachments never deleted, and DELs without ADD",
        description="Attachments the trail shows added and never deleted (still running containers "
                    "included: use --older-than), and DELs for which the trail has no ADD. Listed apart, not as "
                    "leaks: clean-up DELs of failed ADDs (no ADD, no cached result) and attachments superseded by "
                    "a later holder of their address (their DEL was lost).")
    parser.add_argument("--older-than", type=_duration, default=0.0, metavar="DURATION",
                        help="only attachments added at least this long ago (90s, 30m, 2h, 7d; default 0)")
    parser.add_argument("--no-trunc", **no_trunc)
    parser.set_defaults(run=_runner("leaks"))

    parser = commands.add_parser(
        "stats", parents=[files, output, filters], help="counts and plugin latency percentiles",
        description="Events per command, outcome and network, and the plugin's latency (event.duration) "
                    "percentiles in milliseconds, overall and per command.")
    parser.set_defaults(run=_runner("stats"))

    parser = commands.add_parser(
        "follow", parents=[files, output, filters], help="print new events as they arrive",
        description="Print events as they are appended, across rotation, until interrupted (SIGINT and "
                    "SIGTERM end it with status 0). --since/--until apply to the events' timestamps.")
    parser.add_argument("--from-start", action="store_true", help="print the live file's events first")
    parser.add_argument("--max-events", type=_count, metavar="N", help="stop after N events")
    parser.add_argument("--timeout", type=_duration, metavar="DURATION",
                        help="stop after this long (status 1 if nothing was printed)")
    parser.add_argument("--interval", type=_duration, default=0.25, metavar="DURATION",
                        help="how often to look for new lines (default 0.25s; at most 5s)")
    parser.add_argument("--no-trunc", **no_trunc)
    parser.set_defaults(run=_runner("follow"))

    _register_report(commands, files)


def _timeline_runner(parser: argparse.ArgumentParser) -> Any:
    run = _runner("timeline")

    def check(args: argparse.Namespace) -> int:
        if not args.container and not args.pod:
            parser.error("give a CONTAINER (id or prefix) or --pod NAMESPACE/NAME")
        return run(args)  # type: ignore[no-any-return]

    return check


def _register_report(commands: argparse._SubParsersAction[argparse.ArgumentParser],
                     files: argparse.ArgumentParser) -> None:
    parser = commands.add_parser(
        "report", parents=[files], help="what the trail covers, occupancy, conflicts, leaks, failures, latency",
        description="One pass over the trail: the files and span it covers, damaged stretches and possible gaps "
                    "(as every command reports them), quiet periods (--gap), per-network address occupancy, "
                    "conflicts (a superseded holder seen holding its address again), leaks (superseded attachments "
                    "and clean-up DELs listed apart), failed invocations and latency percentiles, for the window "
                    "--since/--until (the whole trail is read: what is still held at its end decides the leaks). "
                    "Text for a terminal, --json for machines, and --html FILE: one self-contained page with a "
                    "picture of address occupancy. Exit status 0: events in the window; 1: none; 3: --strict and "
                    "the input was damaged.")
    parser.add_argument("--since", type=_time, metavar="TIME", help=f"window start: {TIME_HELP}")
    parser.add_argument("--until", type=_time, metavar="TIME", help="window end")
    parser.add_argument("--json", action="store_true", help="the report as one JSON object")
    parser.add_argument("--html", metavar="FILE", help="also write the report as one self-contained HTML page")
    parser.add_argument("--gap", type=_duration, default=3600.0, metavar="DURATION",
                        help="report quiet periods, without any event, at least this long (default 1h; not "
                             "evidence of loss, unlike a possible gap)")
    parser.add_argument("--max-bars", type=_count, default=5000, metavar="N",
                        help="the picture draws at most N holdings, those that ended last (default 5000)")
    parser.add_argument("--max-addresses", type=_count, default=512, metavar="N",
                        help="the picture has at most N address rows, the lowest addresses (default 512)")
    parser.set_defaults(run=_runner("report"))


def _runner(name: str) -> Any:
    """``args.run``: imports the implementation only when the command runs."""

    def run(args: argparse.Namespace) -> int:
        from cni_logger.audit import run as implementation

        status: int = getattr(implementation, name)(args)
        return status

    return run
