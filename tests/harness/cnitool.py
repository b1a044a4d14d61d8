"""Helpers for driving CNI chains through real runtimes (cnitool, Podman) in throw-away network namespaces.

Everything a test creates is registered with a :class:`CniSandbox` *before* it is created, and
:meth:`CniSandbox.cleanup` removes exactly those things (never anything else): container and "host"
network namespaces, the bridges the chains made, the host-local ``dataDir`` and the
``/var/lib/cni/results/<network>-*`` cache entries of the networks the test defined.

The bridge plugin creates its bridge in the network namespace the runtime runs in, so cnitool always runs
inside a throw-away "host" namespace (``ip netns exec <host> cnitool ...``): nothing appears on the real host.
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import itertools
import json
import os
import shutil
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
TOOLS_DIR = Path(os.environ.get("CNI_LOGGER_TOOLS", "/opt/cni-logger-tools"))
CNITOOL = TOOLS_DIR / "bin" / "cnitool"
DEBUG_PLUGIN = TOOLS_DIR / "bin" / "debug"
SYSTEM_PLUGIN_DIR = Path("/usr/lib/cni")
RESULTS_DIR = Path("/var/lib/cni/results")
NETNS_DIR = Path("/run/netns")
CONFIG_EXAMPLES = REPO_ROOT / "config"

CNITOOL_TIMEOUT = 30.0
"""Seconds for one cnitool call (add/check/del take ~0.2 s here; libcni retries 'text file busy' 5 x 1 s)."""
COMMAND_TIMEOUT = 15.0
"""Seconds for one ip/iptables call."""


def install_logger(logger: Path, target: Path) -> None:
    """Put the plugin into a CNI bin dir the way operators do: ``cni-logger launcher <dir>/logger`` writes
    a launcher that runs that install's interpreter with ``-I -S``. Any other executable given with
    CNI_LOGGER_BIN (a wrapper, another build) is linked as it is."""
    if logger.name == "cni-logger":
        run([str(logger), "launcher", str(target)], check=True)
    else:
        target.symlink_to(logger)


def runtime_plugin(cli: Path) -> Path:
    """What the runtime tests put into the bin dir: ``cli`` (the session's ``cni_logger_cli``: the
    bundle's ``cni-logger``), whose launcher is written there, unless CNI_LOGGER_BIN names an executable."""
    override = os.environ.get("CNI_LOGGER_BIN")
    if not override:
        return cli
    path = Path(override).absolute()
    if not (path.is_file() and os.access(path, os.X_OK)):
        pytest.fail(f"CNI_LOGGER_BIN={override} is not an executable file", pytrace=False)
    return path


def environment_problem() -> str | None:
    """Why cnitool-driven integration tests cannot run here, or None when they can."""
    if os.geteuid() != 0:
        return "integration tests need root (network namespaces, /var/lib/cni); run them with sudo"
    if not (CNITOOL.is_file() and os.access(CNITOOL, os.X_OK)):
        return f"{CNITOOL} is not built; run: sudo bash scripts/setup-system.sh"
    if not (SYSTEM_PLUGIN_DIR / "bridge").is_file():
        return f"{SYSTEM_PLUGIN_DIR}/bridge missing; install containernetworking-plugins"
    if shutil.which("ip") is None:
        return "iproute2 ('ip') is not installed"
    return None


# ---------------------------------------------------------------------------------------------------------
# Processes


@dataclass(frozen=True)
class Proc:
    argv: list[str]
    rc: int
    stdout: str
    stderr: str

    def describe(self) -> str:
        return f"$ {' '.join(self.argv)}\nrc={self.rc}\n--- stdout\n{self.stdout}\n--- stderr\n{self.stderr}"


class CommandTimeout(AssertionError):
    """A command did not finish within its bounded timeout (its whole process group was killed)."""


def run(argv: list[str], *, env: dict[str, str] | None = None, timeout: float = COMMAND_TIMEOUT,
        check: bool = False) -> Proc:
    """Run argv in its own process group; on timeout kill the group (plugins included) and raise."""
    with subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, start_new_session=True) as child:
        try:
            out, err = child.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.pid, signal.SIGKILL)
            out, err = child.communicate()
            raise CommandTimeout(f"timed out after {timeout:.0f}s: {' '.join(argv)}\nstdout={out!r}\n"
                                 f"stderr={err!r}") from None
    proc = Proc(argv, child.returncode, out, err)
    if check and proc.rc != 0:
        raise AssertionError(f"command failed:\n{proc.describe()}")
    return proc


def ip_json(netns: str | None, *args: str) -> list[dict[str, Any]]:
    """``ip -j [-n NS] ARGS`` parsed; [] when the device does not exist."""
    argv = ["ip", "-j", *(["-n", netns] if netns else []), *args]
    proc = run(argv)
    if proc.rc != 0:
        if "does not exist" in proc.stderr or "Cannot find device" in proc.stderr:
            return []
        raise AssertionError(f"ip failed:\n{proc.describe()}")
    parsed: list[dict[str, Any]] = json.loads(proc.stdout or "[]")
    return parsed


def ipv4_cidrs(netns: str, ifname: str) -> list[str]:
    """The IPv4 addresses on ifname inside netns, as ``ip -4 addr`` shows them (``a.b.c.d/len``)."""
    return [f"{a['local']}/{a['prefixlen']}"
            for link in ip_json(netns, "-4", "addr", "show", "dev", ifname)
            for a in link.get("addr_info", []) if a.get("family") == "inet"]


def netns_exists(name: str) -> bool:
    return (NETNS_DIR / name).exists()


def cnitool_container_id(netns_path: str) -> str:
    """cnitool's container id: ``cnitool-`` + hex of the first 10 bytes of sha512(netns path)."""
    return "cnitool-" + hashlib.sha512(netns_path.encode()).digest()[:10].hex()


# ---------------------------------------------------------------------------------------------------------
# Results and events


def read_events(path: Path, coverage: bool = False) -> list[dict[str, Any]]:
    """The JSON lines the logger appended to path (each must parse); [] if the file does not exist.

    Only the invocation events, unless ``coverage``: ``install --watch`` adds coverage events
    (docs/coverage-events.md: heartbeats, inventories...) to the same trail."""
    if not path.exists():
        return []
    events = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            events.append(json.loads(line))
        except json.JSONDecodeError as exc:
            raise AssertionError(f"{path}:{number} is not a JSON line: {line!r} ({exc})") from None
    return [e for e in events if coverage or dig(e, "event.dataset") != "cni.coverage"]


def stderr_events(text: str) -> list[dict[str, Any]]:
    """JSON objects found one per line in a runtime's stderr (the logger's logToStderr copy)."""
    found = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("{"):
            with contextlib.suppress(json.JSONDecodeError):
                doc = json.loads(line)
                if isinstance(doc, dict) and "event" in doc:
                    found.append(doc)
    return found


def dig(doc: Any, dotted: str, default: Any = None) -> Any:
    """``dig(ev, "cni.prev_result.ips")``: nested lookup that returns default on any missing step."""
    cur = doc
    for part in dotted.split("."):
        if not isinstance(cur, dict) or part not in cur:
            return default
        cur = cur[part]
    return cur


def canonical(result: dict[str, Any] | None) -> dict[str, Any]:
    """A comparable projection of a CNI result, or of the logger's recorded ``prev_result`` (which may spell
    ``cni_version`` and omit empty lists): version, interfaces, ips (address/gateway/interface), routes."""
    if result is None:
        return {}
    ips = [{k: ip[k] for k in ("address", "gateway", "interface") if ip.get(k) is not None}
           for ip in result.get("ips") or []]
    return {
        "cniVersion": result.get("cniVersion", result.get("cni_version")),
        "interfaces": [{k: i[k] for k in ("name", "mac", "sandbox") if i.get(k)}
                       for i in result.get("interfaces") or []],
        "ips": ips,
        "routes": [{k: r[k] for k in ("dst", "gw") if r.get(k)} for r in result.get("routes") or []],
    }


def result_mismatches(actual: Any, expected: Any, where: str = "result") -> list[str]:
    """Every difference between two JSON values, one readable line each; [] means equal.

    This is the chain check: ``result_mismatches(printed_by_runtime, bridge_result)`` must be empty when the
    logger passes the bridge's result through untouched.
    """
    if isinstance(expected, dict) and isinstance(actual, dict):
        problems = []
        for key in expected:
            if key not in actual:
                problems.append(f"{where}.{key}: missing (expected {json.dumps(expected[key])})")
            else:
                problems += result_mismatches(actual[key], expected[key], f"{where}.{key}")
        problems += [f"{where}.{key}: unexpected {json.dumps(actual[key])}" for key in actual
                     if key not in expected]
        return problems
    if isinstance(expected, list) and isinstance(actual, list):
        if len(expected) != len(actual):
            return [f"{where}: {len(actual)} items, expected {len(expected)}: {json.dumps(actual)} != "
                    f"{json.dumps(expected)}"]
        return [p for i, (a, e) in enumerate(zip(actual, expected, strict=True))
                for p in result_mismatches(a, e, f"{where}[{i}]")]
    if type(actual) is not type(expected) or actual != expected:
        return [f"{where}: {json.dumps(actual)} != expected {json.dumps(expected)}"]
    return []


# ---------------------------------------------------------------------------------------------------------
# Names


_counter = itertools.count(1)


@dataclass(frozen=True)
class Names:
    """Unique names for one test: ``cnil-<pid>-<n>``; bridges ``cnl<pid>-<n>`` (<= 15 chars)."""
    n: int
    pid: int = field(default_factory=os.getpid)

    @classmethod
    def allocate(cls) -> Names:
        return cls(next(_counter))

    @property
    def prefix(self) -> str:
        return f"cnil-{self.pid}-{self.n}"

    def bridge(self, index: int) -> str:
        name = f"cnl{self.pid}-{self.n}{chr(ord('a') + index)}"
        assert len(name) <= 15, name
        return name

    def subnet(self, index: int) -> ipaddress.IPv4Network:
        # 10.250.x.0/24, x unique within the session (and spread by pid across sessions). The subnets only
        # ever exist inside this test's own namespaces, so overlap with other runs could not collide anyway.
        third = (self.pid * 31 + self.n * 4 + index) % 254 + 1
        return ipaddress.IPv4Network(f"10.250.{third}.0/24")


@dataclass
class Network:
    """One CNI network a test defined: its unique name, bridge, subnet, host-local dataDir and audit log."""
    name: str
    bridge: str
    subnet: ipaddress.IPv4Network
    ipam_dir: Path
    log_file: Path

    @property
    def gateway(self) -> str:
        return str(self.subnet.network_address + 1)

    def host(self, offset: int) -> str:
        return str(self.subnet.network_address + offset)

    def bridge_plugin(self, **ipam_extra: Any) -> dict[str, Any]:
        """The bridge + host-local entry (ipMasq off, so no iptables state is needed)."""
        ipam: dict[str, Any] = {"type": "host-local", "ranges": [[{"subnet": str(self.subnet)}]],
                                "dataDir": str(self.ipam_dir)}
        ipam.update(ipam_extra)
        return {"type": "bridge", "bridge": self.bridge, "isGateway": True, "ipMasq": False, "ipam": ipam}

    def logger_plugin(self, **extra: Any) -> dict[str, Any]:
        return {"type": "logger", "logFile": str(self.log_file), **extra}

    def events(self) -> list[dict[str, Any]]:
        return read_events(self.log_file)

    def cache_file(self, container_id: str, ifname: str = "eth0") -> Path:
        return RESULTS_DIR / f"{self.name}-{container_id}-{ifname}"


# ---------------------------------------------------------------------------------------------------------
# The sandbox


class CniSandbox:
    """Throw-away namespaces + CNI bin/config dirs for one test. Use as a fixture; always call cleanup()."""

    def __init__(self, tmp: Path, names: Names | None = None) -> None:
        self.tmp = tmp
        self.names = names or Names.allocate()
        self.bin_dir = tmp / "cni-bin"
        self.netconf_dir = tmp / "net.d"
        self.host_ns = f"{self.names.prefix}-host"
        self.netns: list[str] = []              # every namespace we created (host first)
        self.networks: list[Network] = []
        self.extra_cleanup: list[tuple[str, Any]] = []
        self._ctr = 0

    # -- setup -------------------------------------------------------------------------------------------
    def setup(self, logger: Path | None) -> None:
        self.bin_dir.mkdir(parents=True)
        self.netconf_dir.mkdir(parents=True)
        for plugin in sorted(SYSTEM_PLUGIN_DIR.iterdir()):
            (self.bin_dir / plugin.name).symlink_to(plugin)
        if DEBUG_PLUGIN.exists():
            (self.bin_dir / "debug").symlink_to(DEBUG_PLUGIN)
        if logger is not None:
            install_logger(logger, self.bin_dir / "logger")
        self._add_netns(self.host_ns)
        run(["ip", "-n", self.host_ns, "link", "set", "lo", "up"], check=True)

    def _add_netns(self, name: str) -> None:
        self.netns.append(name)          # registered first: cleanup removes it even if 'add' half-failed
        run(["ip", "netns", "add", name], check=True)

    def new_container(self) -> str:
        """A fresh, empty container namespace; returns its name (path: /run/netns/<name>)."""
        self._ctr += 1
        name = f"{self.names.prefix}-ctr{self._ctr if self._ctr > 1 else ''}"
        self._add_netns(name)
        return name

    @staticmethod
    def netns_path(name: str) -> str:
        return str(NETNS_DIR / name)

    def new_network(self, label: str = "") -> Network:
        index = len(self.networks)
        name = f"{self.names.prefix}{'-' + label if label else ''}-n{index}"
        net = Network(name=name, bridge=self.names.bridge(index), subnet=self.names.subnet(index),
                      ipam_dir=self.tmp / f"ipam-{index}", log_file=self.tmp / f"audit-{index}.log")
        self.networks.append(net)
        return net

    def write_conflist(self, net: Network, cni_version: str, plugins: list[dict[str, Any]]) -> Path:
        doc = {"cniVersion": cni_version, "name": net.name, "plugins": plugins}
        path = self.netconf_dir / f"{net.name}.conflist"
        path.write_text(json.dumps(doc, indent=2) + "\n")
        return path

    def write_conf(self, net: Network, conf: dict[str, Any]) -> Path:
        """A single-plugin ``.conf`` (rkt style); its "name" must be net.name."""
        assert conf["name"] == net.name
        path = self.netconf_dir / f"{net.name}.conf"
        path.write_text(json.dumps(conf, indent=2) + "\n")
        return path

    def write_plugin_script(self, type_name: str, script: str) -> Path:
        """An executable plugin (e.g. a wrapper around the logger) named after its CNI type."""
        path = self.bin_dir / type_name
        path.write_text(script)
        path.chmod(0o755)
        return path

    # -- running -----------------------------------------------------------------------------------------
    def cnitool_env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith("CNI_") and k not in ("CAP_ARGS", "NETCONFPATH")}
        env.update(NETCONFPATH=str(self.netconf_dir), CNI_PATH=str(self.bin_dir))
        env.update(extra or {})
        return env

    def cnitool(self, command: str, net: Network, container_ns: str, *, env: dict[str, str] | None = None,
                timeout: float = CNITOOL_TIMEOUT) -> Proc:
        """``ip netns exec <host> cnitool add|check|del <net> /run/netns/<container>``."""
        assert command in ("add", "check", "del"), command
        argv = ["ip", "netns", "exec", self.host_ns, str(CNITOOL), command, net.name,
                self.netns_path(container_ns)]
        return run(argv, env=self.cnitool_env(env), timeout=timeout)

    def bridge_result(self, net: Network, container_ns: str, cni_version: str, ifname: str = "eth0",
                      routes: list[dict[str, str]] | None = None) -> dict[str, Any]:
        """The result the bridge plugin must have returned, rebuilt from kernel state (the oracle):
        [bridge, host veth, container if], the container's IPv4 address, gateway = the bridge's address."""
        bridge = ip_json(self.host_ns, "link", "show", "dev", net.bridge)
        container_if = ip_json(container_ns, "link", "show", "dev", ifname)
        assert bridge and container_if, f"{net.bridge} in {self.host_ns} / {ifname} in {container_ns} missing"
        peer = [link for link in ip_json(self.host_ns, "link", "show")
                if link["ifindex"] == container_if[0].get("link_index")]
        assert len(peer) == 1, f"no host-side veth for {container_ns}/{ifname}: {peer}"
        addresses = ipv4_cidrs(container_ns, ifname)
        assert len(addresses) == 1, f"{container_ns}/{ifname} has IPv4 {addresses}"
        gateways = [c.split("/")[0] for c in ipv4_cidrs(self.host_ns, net.bridge)]
        assert len(gateways) == 1, f"bridge {net.bridge} has IPv4 {gateways}"
        ip: dict[str, Any] = {"interface": 2, "address": addresses[0], "gateway": gateways[0]}
        if cni_version != "1.0.0":
            ip["version"] = "4"
        result: dict[str, Any] = {
            "cniVersion": cni_version,
            "interfaces": [
                {"name": net.bridge, "mac": bridge[0]["address"]},
                {"name": peer[0]["ifname"], "mac": peer[0]["address"]},
                {"name": ifname, "mac": container_if[0]["address"], "sandbox": self.netns_path(container_ns)},
            ],
            "ips": [ip],
            "dns": {},
        }
        if routes:
            result["routes"] = routes
        return result

    # -- teardown ----------------------------------------------------------------------------------------
    def cleanup(self) -> list[str]:
        """Remove everything this sandbox made; returns the problems met (every step is attempted)."""
        problems: list[str] = []

        def attempt(what: str, fn: Any, *args: Any) -> None:
            try:
                fn(*args)
            except Exception as exc:
                problems.append(f"{what}: {exc}")

        for what, fn in reversed(self.extra_cleanup):
            attempt(what, fn)
        host_alive = netns_exists(self.host_ns)
        for net in self.networks:
            if host_alive:
                attempt(f"delete bridge {net.bridge}", _delete_link, self.host_ns, net.bridge)
            # The bridge must never reach the real host; if it did, it is ours (unique name): remove it.
            if ip_json(None, "link", "show", "dev", net.bridge):
                problems.append(f"bridge {net.bridge} appeared in the root namespace (removed)")
                attempt(f"delete root-ns bridge {net.bridge}", _delete_link, None, net.bridge)
            attempt(f"remove {net.ipam_dir}", shutil.rmtree, net.ipam_dir, True)
            for cached in sorted(RESULTS_DIR.glob(f"{net.name}-*")):
                attempt(f"remove {cached}", cached.unlink)
        for name in reversed(self.netns):
            if netns_exists(name):
                proc = run(["ip", "netns", "del", name])
                if proc.rc != 0:
                    problems.append(f"ip netns del {name}: {proc.stderr.strip()}")
        return problems


S = TypeVar("S", bound=CniSandbox)


def opened_sandbox(tmp: Path, logger: Path | None) -> contextlib.AbstractContextManager[CniSandbox]:
    """A set-up sandbox that is always cleaned up; anything left behind fails the test that made it."""
    return opened(CniSandbox(tmp), logger)


@contextlib.contextmanager
def opened(sandbox: S, logger: Path | None) -> Iterator[S]:
    """``sandbox`` (a ``CniSandbox`` or a subclass of it) set up, and always cleaned up, as ``opened_sandbox``."""
    try:
        sandbox.setup(logger=logger)
        yield sandbox
    finally:
        problems = sandbox.cleanup()
        if problems:
            pytest.fail("cleanup problems:\n" + "\n".join(problems), pytrace=False)


def _delete_link(netns: str | None, name: str) -> None:
    proc = run(["ip", *(["-n", netns] if netns else []), "link", "del", "dev", name])
    if proc.rc != 0 and "Cannot find device" not in proc.stderr:
        raise RuntimeError(proc.stderr.strip())


# ---------------------------------------------------------------------------------------------------------
# Example configs


def load_example(relative: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((CONFIG_EXAMPLES / relative).read_text())
    return doc


def retarget_example(doc: dict[str, Any], net: Network) -> dict[str, Any]:
    """An example config made safe to run in a test: unique name, bridge, subnet, dataDir and logFile."""
    doc = json.loads(json.dumps(doc))
    doc["name"] = net.name
    plugins = doc.get("plugins", [doc])
    for plugin in plugins:
        if plugin.get("type") == "bridge":
            plugin["bridge"] = net.bridge
            ipam = plugin.setdefault("ipam", {})
            ipam["dataDir"] = str(net.ipam_dir)
            ipam["ranges"] = [[{"subnet": str(net.subnet), "gateway": net.gateway}]]
        if plugin.get("type") == "logger":
            plugin["logFile"] = str(net.log_file)
    return doc
