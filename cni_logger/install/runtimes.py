"""The runtimes the installer knows and the names it shares; ``Options``: what one install is asked to do.

``install.cli`` imports this module to build its parsers (the runtime choices, the defaults in the help),
and ``cni_logger.cli.tool`` imports ``install.cli`` for every subcommand: so this module imports nothing.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

LOGGER_TYPE = "logger"
"""The CNI ``type`` of the plugin, and so the executable's name in the bin dir."""
DEFAULT_STATE_DIR = "/var/lib/cni-logger"
DEFAULT_CHECK_TIMEOUT = 10.0
"""Seconds for each call of install's self-check (VERSION, then ADD): the plugin answers in well under a
second; ten leave room for a loaded node's cold start without letting a hung plugin go unnoticed."""
DEFAULT_RESULTS_CACHE = "/var/lib/cni/results"
"""libcni's result cache, read for ``--watch``'s inventories (containerd, CRI-O, Podman and cnitool use the default)."""
DEFAULT_HEARTBEAT = 300.0
DEFAULT_AGENT_SOCKET = "/run/cni-logger/agent/agent.sock"
DEFAULT_AGENT_TIMEOUT = 3.0
"""``--agent``: thick mode's socket, on tmpfs (a node's reboot leaves no stale one), in a root-only directory."""
"""Seconds between ``--watch``'s ``logger-heartbeat`` events."""
DEFAULT_CNI_VERSION = "0.4.0"
"""cniVersion for a wrapped ``.conf`` that had none, and for rkt's logger network (what Podman writes)."""
RKT_NETWORK = "cni-logger"
RKT_FILE = "zz-cni-logger.conf"
"""rkt sets up networks in file-name order and names interfaces eth0, eth1... by position: sorting last
keeps the user's own networks' interface names unchanged under ``--net=all``."""
CILIUM_FILE = "05-cilium.conflist"
CILIUM_TYPE = "cilium-cni"


CONFIG_EXTENSIONS = (".conf", ".conflist", ".json")
"""The names a runtime loads as network configs (each runtime loads some of them: ``Runtime.extensions``)."""


class Runtime:
    """A runtime's rules: which files it loads, its default dirs, and whether it chains plugins.

    (Plain classes here, not dataclasses: ``cni_logger.cli.tool`` imports this module, through
    ``install.cli``, for every subcommand, and dataclasses costs more start-up time than the rest of the module.)
    """

    __slots__ = ("bin_dir", "chaining", "conf_dir", "extensions", "name")

    def __init__(self, name: str, extensions: tuple[str, ...], conf_dir: str, bin_dir: str, chaining: bool) -> None:
        self.name, self.extensions, self.chaining = name, extensions, chaining
        self.conf_dir, self.bin_dir = conf_dir, bin_dir


RUNTIMES: dict[str, Runtime] = {
    "containerd": Runtime("containerd", (".conf", ".conflist", ".json"), "/etc/cni/net.d", "/opt/cni/bin", True),
    "crio": Runtime("crio", (".conf", ".conflist", ".json"), "/etc/cni/net.d", "/opt/cni/bin", True),
    "podman": Runtime("podman", (".conflist",), "/etc/cni/net.d", "/opt/cni/bin", True),
    "rkt": Runtime("rkt", (".conf",), "/etc/rkt/net.d", "/usr/lib/rkt/plugins/net", False),
}


class Options:
    """What to install where (the command line, resolved).

    ``entry``: the logger's entry for a network that has none. ``named``: only the options the command
    line gave, applied to an operator's own entry (which keeps everything else); None: all of ``entry``.
    ``bracket``: a logger entry first (``role: attempt``) and last (``role: outcome``), both made from the
    entry (True), or last only (False); None: the chain keeps its mode (the one recorded, else its own).
    ``check_timeout``: seconds for each call of the plugin's self-check. ``agent_socket``: thick mode (the shim
    at ``shim``, default the installation's own, written as the plugin, talking to the agent on that socket);
    None: the launcher. ``agent_timeout``: seconds the shim waits for the agent's answer.
    """

    __slots__ = ("agent_socket", "agent_timeout", "bin_dir", "bracket", "check_timeout", "conf_dir", "conf_file",
                 "dry_run", "entry", "named", "network", "runtime", "shim", "state_dir")

    def __init__(self, *, runtime: Runtime, conf_dir: str, bin_dir: str, conf_file: str | None, network: str | None,
                 entry: dict[str, Any], state_dir: str, dry_run: bool = False,
                 named: dict[str, Any] | None = None, check_timeout: float = DEFAULT_CHECK_TIMEOUT,
                 bracket: bool | None = None, agent_socket: str | None = None, shim: str | None = None,
                 agent_timeout: float = DEFAULT_AGENT_TIMEOUT) -> None:
        self.agent_socket, self.shim, self.agent_timeout = agent_socket, shim, agent_timeout
        self.runtime, self.conf_dir, self.bin_dir = runtime, conf_dir, bin_dir
        self.conf_file, self.network, self.entry = conf_file, network, entry
        self.state_dir, self.dry_run, self.check_timeout = state_dir, dry_run, check_timeout
        self.named = entry if named is None else named
        self.bracket = bracket
