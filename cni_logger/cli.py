"""The ``cni-logger`` command: the CNI plugin when ``CNI_COMMAND`` is set, otherwise a short description.

This is the process entry point, so it imports nothing beyond what the invocation needs: the plugin
path loads the protocol layer, and the event pipeline only once there is an event to record.
"""

from __future__ import annotations

import os
import sys


def main() -> None:
    """Run one CNI invocation, or describe the plugin; never returns (exits without finalisation)."""
    from cni_logger import protocol

    if "CNI_COMMAND" in os.environ:
        import gc

        gc.disable()  # one short-lived invocation allocates little; collection only costs time
        from cni_logger import plugin

        protocol.main_exit(plugin.run())
    if len(sys.argv) > 1 and sys.argv[1] in ("-h", "--help", "help"):
        sys.stderr.write(f"usage: cni-logger\n\n{protocol.about()}\n"
                         "Run by a CNI runtime with CNI_COMMAND set; see the README for configuration.\n")
        protocol.main_exit(0)
    if len(sys.argv) > 1:
        sys.stderr.write(f"cni-logger: unknown subcommand {sys.argv[1]!r}\n{protocol.about()}\n")
        protocol.main_exit(2)
    sys.stderr.write(protocol.about() + "\n")
    protocol.main_exit(0)
