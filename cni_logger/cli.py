"""The ``cni-logger`` command: the CNI plugin when a runtime runs it, otherwise a small tool.

A runtime executes a plugin with no arguments and ``CNI_COMMAND`` set; any argument on the command line
means the tool, even with ``CNI_COMMAND`` exported in an operator's shell. This is the process entry
point, so the plugin path imports nothing beyond what the invocation needs: the protocol layer, and the
event pipeline only once there is an event to record. Subcommands (for operators, not runtimes) import
what they need when they run.
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False  # not ``typing``'s: the plugin path must not import it (tests/system/test_rooms.py)
if TYPE_CHECKING:
    import argparse


def main() -> None:
    """Run one CNI invocation, or a subcommand; never returns (exits without finalisation)."""
    from cni_logger import skel

    if len(sys.argv) == 1:
        if "CNI_COMMAND" in os.environ:
            import gc

            gc.disable()  # one short-lived invocation allocates little; collection only costs time
            from cni_logger import deferred, plugin

            deferred.install()
            skel.main_exit(plugin.run())
        from cni_logger.plugin import LoggerPlugin

        sys.stderr.write(skel.about(LoggerPlugin()) + "\n" + SUMMARY)
        skel.main_exit(0)
    skel.main_exit(tool(sys.argv[1:]))


SUBCOMMANDS: tuple[tuple[str, str], ...] = (
    ("launcher", "write the plugin executable (e.g. /opt/cni/bin/logger)"),
    ("install", "install the plugin and add it to the node's network config"),
    ("uninstall", "undo what install recorded"),
    ("events", "list events, filtered"),
    ("timeline", "one container's (or pod's) attachments: ADD, CHECK, DEL"),
    ("who-had", "which container held an address or subnet (at a time)"),
    ("leaks", "attachments never deleted, and DELs without ADD"),
    ("stats", "counts and plugin latency percentiles"),
    ("follow", "print new events as they arrive"),
    ("report", "what the trail covers: occupancy, conflicts, leaks, failures, latency"),
    ("completion", "print a shell completion script (bash)"),
)
"""The operator subcommands, one line each, for the banner printed without arguments: listed here so that
the banner imports no parser (``tests/system/audit/test_silence.py`` checks that it matches the parsers)."""

SUMMARY = ("\nRun by a CNI runtime with CNI_COMMAND set. For operators: cni-logger COMMAND [--help]\n"
           + "".join(f"  {name:<10} {line}\n" for name, line in SUBCOMMANDS))

COMMAND_MODULES: tuple[str, ...] = ("cni_logger.install.cli", "cni_logger.audit.commands")
"""Modules that provide operator subcommands: each has ``register(subparsers)``, which adds its
parsers with ``set_defaults(run=<function taking the parsed args, returning an exit status>)``.
They are imported only here, never on the plugin path."""


BUILD_ID_FILE = "BUILD_ID"
"""The bundle's build id (``scripts/bundle/assemble.sh``): a file at the bundle folder's top, the folder whose
``lib/python3.11/site-packages`` holds this package and whose ``bin`` holds the interpreter."""


def build_id() -> str:
    """The id of the bundle this package runs from, or ``""`` (a virtualenv, a source checkout): read from the
    bundle folder's ``BUILD_ID``, found from this file's own path (not resolved: the folder may be a link's
    target anywhere) or, failing that, from the interpreter's prefix."""
    here = os.path.dirname(os.path.abspath(__file__))  # <folder>/lib/python3.X/site-packages/cni_logger
    # lexically, as the path reads: ``..`` after a symbolic link would lead out of the link's target instead
    for folder in (os.path.normpath(os.path.join(here, os.pardir, os.pardir, os.pardir, os.pardir)), sys.prefix):
        try:
            with open(os.path.join(folder, BUILD_ID_FILE), encoding="ascii", errors="replace") as found:
                text = found.read(100).strip()
        except OSError:
            continue
        if text and len(text) <= 64 and all(c in "0123456789abcdef" for c in text):
            return text
    return ""


def version() -> str:
    """``0.1.0 (build 0123456789abcdef)``, or the package version alone outside a bundle."""
    from cni_logger import __version__

    found = build_id()
    return f"{__version__} (build {found})" if found else __version__


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    """The top-level parser and each subcommand's, by name."""
    import argparse
    import importlib

    from cni_logger import skel
    from cni_logger.plugin import LoggerPlugin

    parser = argparse.ArgumentParser(
        prog="cni-logger", description=skel.about(LoggerPlugin()) + ". Run by a CNI runtime with CNI_COMMAND set.")
    parser.add_argument("--version", action="version", version=f"cni-logger {version()}",
                        help="print the version (with the bundle's build id) and exit")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(commands)
    return parser, dict(commands.choices)


def _suggest(extra: list[str], parser: argparse.ArgumentParser) -> str:
    """``; did you mean --host?`` for each unknown option that is a typo of one the subcommand has."""
    import difflib

    known = [option for option in parser._option_string_actions if option.startswith("--")]  # no public way
    hints = []
    for arg in extra:
        if arg.startswith("--"):
            close = difflib.get_close_matches(arg.split("=", 1)[0], known, n=1)
            if close:
                hints.append(f"{arg.split('=', 1)[0]}: did you mean {close[0]}?")
    return f" ({'; '.join(hints)})" if hints else ""


def tool(argv: list[str]) -> int:
    """Operator subcommands."""
    import difflib

    parser, subparsers = build_parser()
    first = next((arg for arg in argv if not arg.startswith("-")), None)
    if first is not None and first not in subparsers and argv[0] == first:
        close = difflib.get_close_matches(first, list(subparsers), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else f" (one of: {', '.join(subparsers)})"
        parser.print_usage(sys.stderr)
        sys.stderr.write(f"cni-logger: error: unknown command {first!r}{hint}\n")
        return 2
    args, extra = parser.parse_known_args(argv)
    if extra:
        # argparse hands options a subcommand does not know back to the top level, whose usage says
        # nothing about them: the subcommand's own usage does.
        sub = subparsers.get(getattr(args, "command", None) or "", parser)
        sub.error(f"unrecognized arguments: {' '.join(extra)}{_suggest(extra, sub)}")
    if not hasattr(args, "run"):
        parser.print_help(sys.stderr)
        return 2
    status: int = args.run(args)
    return status
