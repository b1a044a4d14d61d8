"""The ``cni-logger`` command: the CNI plugin when ``CNI_COMMAND`` is set, otherwise a small tool.

This is the process entry point, so the plugin path imports nothing beyond what the invocation
needs: the protocol layer, and the event pipeline only once there is an event to record. Subcommands
(for operators, not runtimes) import what they need when they run.
"""

from __future__ import annotations

import os
import sys


def main() -> None:
    """Run one CNI invocation, or a subcommand; never returns (exits without finalisation)."""
    from cni_logger import skel

    if "CNI_COMMAND" in os.environ:
        import gc

        gc.disable()  # one short-lived invocation allocates little; collection only costs time
        from cni_logger import deferred, plugin

        deferred.install()
        skel.main_exit(plugin.run())
    if len(sys.argv) == 1:
        from cni_logger.plugin import LoggerPlugin

        sys.stderr.write(skel.about(LoggerPlugin()) + "\n")
        skel.main_exit(0)
    skel.main_exit(tool(sys.argv[1:]))


COMMAND_MODULES: tuple[str, ...] = ("cni_logger.install.cli", "cni_logger.audit.commands")
"""Modules that provide operator subcommands: each has ``register(subparsers)``, which adds its
parsers with ``set_defaults(run=<function taking the parsed args, returning an exit status>)``.
They are imported only here, never on the plugin path."""


def tool(argv: list[str]) -> int:
    """Operator subcommands."""
    import argparse
    import importlib

    from cni_logger import __version__, skel
    from cni_logger.plugin import LoggerPlugin

    parser = argparse.ArgumentParser(
        prog="cni-logger", description=skel.about(LoggerPlugin()) + ". Run by a CNI runtime with CNI_COMMAND set.")
    parser.add_argument("--version", action="version", version=f"cni-logger {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(commands)
    args = parser.parse_args(argv)
    if not hasattr(args, "run"):
        parser.print_help(sys.stderr)
        return 2
    status: int = args.run(args)
    return status
