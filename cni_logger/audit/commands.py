"""The audit subcommands' command lines: ``events``, ``timeline``, ``who-had``, ``leaks``, ``stats``, ``follow``,
``report``, and ``completion`` (a shell's completion script for every subcommand).

``cni_logger.cli.tool`` imports this module (it is in ``COMMAND_MODULES``) to register the parsers;
the work itself lives in ``cni_logger.audit.run`` and is imported only when a command runs.
"""

from __future__ import annotations

import argparse
import re
from typing import Any

from cni_logger.audit import FORMATS, TIME_HELP
from cni_logger.filesink import DEFAULT_LOG_FILE
from cni_logger.skel import COMMANDS

COMMAND_NAMES = ", ".join(COMMANDS[:-1]) + " or " + COMMANDS[-1]


def _time(text: str) -> str:
    """A canonical timestamp (a ``timeparse.Time``: its ``note`` is said on stderr when the command runs)."""
    from cni_logger.audit.timeparse import read_time

    try:
        return read_time(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _duration(text: str) -> float:
    from cni_logger.audit.timeparse import parse_duration

    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _address(text: str) -> str:
    """An address; an interface address's ``/prefix`` is dropped, but only a valid one (``10.0.0.1/99`` or
    ``/abc`` is a mistake, not an address)."""
    import ipaddress

    bare, slash, prefix = text.strip().partition("/")
    try:
        address = ipaddress.ip_address(bare.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid IP address {text!r}") from None
    if slash:
        try:
            ipaddress.ip_interface(f"{address.compressed}/{prefix}")
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"invalid prefix {'/' + prefix!r} in {text!r}: expected /0 to /{address.max_prefixlen}") from None
    return address.compressed


def _address_or_subnet(text: str) -> str:
    """An address (an interface address's valid ``/prefix`` is ignored, as before), or a subnet: a ``/prefix``
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


_NEGATIVE = re.compile(r"^-\d+$|^-\d*\.\d+$|^-\d+(?:\.\d+)?\s*[a-z]+(?:\s*\d+(?:\.\d+)?\s*[a-z]+)*$", re.IGNORECASE)
"""What argparse takes for a value, not an option, although it starts with ``-``: its negative numbers, and the
relative times ``-5min``, ``-1h30m`` (no option of these commands starts with a digit)."""


def _takes_relative_times(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """``--since -5min`` as journalctl takes it: argparse would read ``-5min`` as an unknown option."""
    parser._negative_number_matcher = _NEGATIVE  # argparse has no public way to say it
    return parser


def _files_parent() -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False)
    group = parent.add_argument_group("input")
    group.add_argument("--log-file", action="append", metavar="FILE",
                       help=f"the audit log: the live file, a backup of it or a glob; repeatable (default: "
                            f"{DEFAULT_LOG_FILE}). Rotated and gzipped backups of each file are found and read "
                            "too, oldest first; several trails are merged by time. - is standard input. An export "
                            "of the shipped events (Elasticsearch _source NDJSON or search responses, Filebeat or "
                            "Fluent Bit file output, kubectl logs), a file or -, is recognised by its content and "
                            "read like the nodes' own files")
    group.add_argument("--strict", action="store_true",
                       help="exit 3 when anything in the input was damaged, skipped or possibly missing (each "
                            "stretch is reported on stderr either way)")
    return parent


def _output_parent() -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False)
    group = parent.add_argument_group("output")
    group.add_argument("--format", "-o", choices=FORMATS, default="table",
                       help="table for people (default; control characters shown escaped), JSON lines, or CSV "
                            "(RFC 4180) / TSV with a header and one row per answer (cells that a spreadsheet "
                            "would take for a formula get a leading ')")
    group.add_argument("--json", action="store_const", const="json", dest="format", help="the same as --format json")
    group.add_argument("--no-headers", action="store_true",
                       help="tables and CSV/TSV without their header line (as kubectl's --no-headers)")
    return parent


def _limit_parent() -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False)
    group = parent.add_argument_group("output")
    group.add_argument("--limit", type=_count, metavar="N",
                       help="print the first N answers (events, holders, rows) only; stderr says how many there were "
                            "(the exit status is the whole answer's)")
    return parent


def _filters_parent() -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False)
    group = parent.add_argument_group("filters (all must match)")
    group.add_argument("--container", "-c", default="", metavar="PREFIX", help="container id (or a prefix of it)")
    group.add_argument("--pod", default="", metavar="[NAMESPACE/]NAME",
                       help="pod, as the POD column prints it (NAMESPACE/NAME), NAME with -n NAMESPACE, or NAME "
                            "alone in any namespace (orchestrator.resource.name / K8S_POD_NAME); * ? [ ] globs")
    group.add_argument("--namespace", "-n", default="", metavar="NAMESPACE", help="Kubernetes namespace; globs")
    group.add_argument("--network", default="", metavar="NAME", help="CNI network name; globs")
    _host_option(group)
    group.add_argument("--command", dest="commands", action="append", type=_command, default=[],
                       metavar="CMD", help=f"{COMMAND_NAMES}; repeatable")
    group.add_argument("--outcome", choices=("success", "failure"), help="what the plugin answered")
    group.add_argument("--ip", type=_address, metavar="ADDR", help="an address the event names")
    group.add_argument("--since", type=_time, metavar="TIME", help=f"events at or after: {TIME_HELP}")
    group.add_argument("--until", type=_time, metavar="TIME", help="events before TIME (not before --since)")
    group.add_argument("--no-prefilter", action="store_true",
                       help="decode every line instead of skipping those that lack the values sought "
                            "(slower; for values spelled unusually in the log)")
    return parent


HOST_HELP = ("only the events of this node (host.name, as the HOST column prints it); globs. Trails of several "
             "nodes given together are told apart by it")


def _host_option(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """``--host NAME``: on every command that takes filters, and on ``timeline``, ``who-had``, ``leaks``, ``report``."""
    parser.add_argument("--host", default="", metavar="NAME", help=HOST_HELP)


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the audit subcommands to ``cni-logger``."""
    files, output, filters, limit = _files_parent(), _output_parent(), _filters_parent(), _limit_parent()
    no_trunc: dict[str, Any] = {"action": "store_true", "help": "show full container ids"}

    parser = commands.add_parser(
        "events", parents=[files, output, filters, limit], help="list events, filtered",
        description="List audit events, oldest first. --format json prints the original lines. "
                    "Exit status 0 when events matched, 1 when none did, 2 on errors.")
    parser.add_argument("--no-trunc", **no_trunc)
    parser.set_defaults(run=_checked(parser, "events"))

    parser = commands.add_parser(
        "timeline", parents=[files, output, limit], help="one container's (or pod's) attachments: ADD, CHECK, DEL",
        description="Every ADD, CHECK and DEL of the containers whose id starts with CONTAINER, or of every "
                    "sandbox of a pod (--pod), per network and interface, with addresses, interfaces, "
                    "outcomes and durations; times also as epoch seconds.")
    parser.add_argument("container", metavar="CONTAINER", nargs="?", default="",
                        help="container id or a prefix of it")
    parser.add_argument("--pod", default="", metavar="[NAMESPACE/]NAME",
                        help="a pod's sandboxes over time: NAMESPACE/NAME (as the POD column prints it), NAME "
                             "with -n NAMESPACE, or NAME alone (any namespace; Podman records none); * ? [ ] globs")
    parser.add_argument("--namespace", "-n", default="", metavar="NAMESPACE", help="the --pod's namespace; globs")
    _host_option(parser)
    parser.set_defaults(run=_checked(parser, "timeline"))

    parser = commands.add_parser(
        "who-had", parents=[files, output, limit], help="which container held an address or subnet (at a time)",
        description="Which container, pod and network held IP, from ADD-to-DEL intervals: all holders, or "
                    "with --at the one(s) holding it at that time. With a subnet (10.244.1.0/24) every "
                    "address in it, each holder once, as its holding ends (still held last; with --at: by "
                    "address), marking conflicts (a superseded holder seen holding the address again); the same "
                    "notes and exit statuses as for one address. "
                    "Exit status 0: held by X; 1: nobody (the trail covers that time); 3: possibly X (its start "
                    "or end is not in the trail; see NOTE); 4: no evidence (before the trail, or in a damaged "
                    "stretch or a possible gap, or a time in the future).")
    parser.add_argument("ip", type=_address_or_subnet, metavar="IP|CIDR",
                        help="the address (an interface address's valid /prefix is ignored), or a subnet with no "
                             "host bits set")
    parser.add_argument("--at", type=_time, metavar="TIME", help=f"only who held it then: {TIME_HELP}")
    _host_option(parser)
    parser.add_argument("--no-prefilter", action="store_true",
                        help="decode every line (for an IPAM that spells addresses unusually)")
    parser.add_argument("--no-trunc", **no_trunc)
    parser.set_defaults(run=_checked(parser, "who_had"))

    parser = commands.add_parser(
        "leaks", parents=[files, output, limit], help="attachments never deleted, and DELs without ADD",
        description="Attachments the trail shows added and never deleted, and DELs for which the trail has no ADD. "
                    "On the node that wrote the trail (host.name), STATE says whether one still open is running (its "
                    "network namespace and libcni's cached result are still there), or leaked; elsewhere it is "
                    "unknown. Listed apart, not as leaks: running attachments, clean-up DELs of failed ADDs (no ADD, "
                    "no cached result) and attachments superseded by a later holder of their address (their DEL was "
                    "lost). Exit status 0: a leak; 1: none (running ones are none); 3: only attachments this node "
                    "cannot tell running from leaked; 4: no evidence (the trail has no events).")
    _results_cache(parser)
    parser.add_argument("--older-than", type=_duration, default=0.0, metavar="DURATION",
                        help="only attachments added at least this long ago (90s, 30m, 2h, 7d; default 0)")
    _host_option(parser)
    parser.add_argument("--no-trunc", **no_trunc)
    parser.set_defaults(run=_checked(parser, "leaks"))

    parser = commands.add_parser(
        "stats", parents=[files, output, filters, limit], help="counts and plugin latency percentiles",
        description="Events per command, outcome and network, and the plugin's latency (event.duration) "
                    "percentiles in milliseconds, overall and per command. --limit N: the N largest counts of "
                    "each table (command, outcome, network).")
    parser.set_defaults(run=_checked(parser, "stats"))

    parser = commands.add_parser(
        "follow", parents=[files, output, filters, limit], help="print new events as they arrive",
        description="Print events as they are appended, across rotation, until interrupted (SIGINT and "
                    "SIGTERM end it with status 0). --since/--until apply to the events' timestamps.")
    parser.add_argument("--from-start", action="store_true", help="print the live file's events first")
    parser.add_argument("--max-events", type=_count, metavar="N", help="stop after N events (the same as --limit N)")
    parser.add_argument("--timeout", type=_duration, metavar="DURATION",
                        help="stop after this long (status 1 if nothing was printed)")
    parser.add_argument("--interval", type=_duration, default=0.25, metavar="DURATION",
                        help="how often to look for new lines (default 0.25s; at most 5s)")
    parser.add_argument("--no-trunc", **no_trunc)
    parser.set_defaults(run=_checked(parser, "follow"))

    _register_report(commands, files, limit)

    parser = commands.add_parser(
        "completion", help="print a shell completion script (bash)",
        description="Print a completion script for the shell, generated from the command lines themselves: "
                    "source <(cni-logger completion bash), or save it as /etc/bash_completion.d/cni-logger.")
    parser.add_argument("shell", choices=("bash",), help="the shell (bash)")
    parser.set_defaults(run=_completion)


def _completion(args: argparse.Namespace) -> int:
    """``cni-logger completion bash``: the script, from every subcommand's parser (``cli.build_parser``)."""
    import sys

    from cni_logger.audit import completion
    from cni_logger.cli import build_parser

    parser, subparsers = build_parser()
    sys.stdout.write(completion.bash(parser, subparsers))
    return 0


def _checked(parser: argparse.ArgumentParser, name: str) -> Any:
    """``args.run`` after the checks that concern several arguments at once (usage errors, exit 2, before any
    file is read): the pod and its namespace agree, ``--since`` is before ``--until``; and each time read as
    UTC for want of an offset is said on stderr, so that nobody answers for another instant than they meant."""
    run = _runner(name)
    command = name.replace("_", "-")
    _takes_relative_times(parser)

    def check(args: argparse.Namespace) -> int:
        from cni_logger.audit import output
        from cni_logger.audit.query import pod_spec
        from cni_logger.audit.timeparse import spoken

        pod, namespace = getattr(args, "pod", ""), getattr(args, "namespace", "")
        if name == "timeline" and not args.container and not pod:
            parser.error("give a CONTAINER (id or prefix) or --pod [NAMESPACE/]NAME")
        if name == "timeline" and namespace and not pod:
            parser.error("--namespace goes with --pod: give --pod NAME -n NAMESPACE, or --pod NAMESPACE/NAME")
        try:
            pod_spec(pod or "", namespace or "")
        except ValueError as exc:
            parser.error(str(exc))
        since, until = getattr(args, "since", None), getattr(args, "until", None)
        if since and until and since > until:
            parser.error(f"--since {spoken(since)} is after --until {spoken(until)}: the window is empty")
        for moment in (since, until, getattr(args, "at", None)):
            note = getattr(moment, "note", "")
            if note:
                output.error(command, note)
        return run(args)  # type: ignore[no-any-return]

    return check


def _results_cache(parser: argparse.ArgumentParser) -> None:
    """``--results-cache``: where ``leaks`` and ``report`` look for libcni's cached results (``alive``, whose
    ``RESULTS_CACHE`` is the default: not imported here, registering the commands imports no implementation)."""
    parser.add_argument("--results-cache", metavar="DIR",
                        help="libcni's result cache on this node, to tell a running attachment from a leaked one "
                             "(as install --results-cache; default: libcni's, /var/lib/cni/results)")


def _register_report(commands: argparse._SubParsersAction[argparse.ArgumentParser],
                     files: argparse.ArgumentParser, limit: argparse.ArgumentParser) -> None:
    parser = commands.add_parser(
        "report", parents=[files, limit], help="what the trail covers, occupancy, conflicts, leaks, failures, latency",
        description="One pass over the trail: the files and span it covers, damaged stretches and possible gaps "
                    "(as every command reports them), quiet periods (--gap), per-network address occupancy, "
                    "conflicts (a superseded holder seen holding its address again), leaks (superseded attachments "
                    "and clean-up DELs listed apart), failed invocations and latency percentiles, for the window "
                    "--since/--until (the whole trail is read: what is still held at its end decides the leaks). "
                    "Text for a terminal (--format table), --json for machines, CSV/TSV of the counts (one row per "
                    "section and count), and --html FILE: one self-contained page with a picture of address "
                    "occupancy. Each list shows its first 200 rows (--limit N: its first N), all of them counted. "
                    "Exit status 0: events in the window; 1: none; 3: --strict and the input was damaged.")
    parser.add_argument("--since", type=_time, metavar="TIME", help=f"window start: {TIME_HELP}")
    parser.add_argument("--until", type=_time, metavar="TIME", help="window end (not before --since)")
    _host_option(parser)
    parser.add_argument("--format", "-o", choices=FORMATS, default="table",
                        help="table: text for people (default); json: the report as one JSON object; csv, tsv: its "
                             "counts, one row per section and count (section,name,count)")
    parser.add_argument("--json", action="store_const", const="json", dest="format", help="the same as --format json")
    parser.add_argument("--no-headers", action="store_true", help="tables and CSV/TSV without their header line")
    parser.add_argument("--html", metavar="FILE", help="also write the report as one self-contained HTML page")
    parser.add_argument("--gap", type=_duration, default=3600.0, metavar="DURATION",
                        help="report quiet periods, without any event, at least this long (default 1h; not "
                             "evidence of loss, unlike a possible gap)")
    parser.add_argument("--max-bars", type=_count, default=5000, metavar="N",
                        help="the picture draws at most N holdings, those that ended last (default 5000)")
    parser.add_argument("--max-addresses", type=_count, default=512, metavar="N",
                        help="the picture has at most N address rows, the lowest addresses (default 512)")
    _results_cache(parser)
    parser.set_defaults(run=_checked(parser, "report"))


def _runner(name: str) -> Any:
    """``args.run``: imports the implementation only when the command runs."""

    def run(args: argparse.Namespace) -> int:
        from cni_logger.audit import run as implementation

        status: int = getattr(implementation, name)(args)
        return status

    return run
