"""Running the installed plugin as a real process, the way a CNI runtime does, and reading what it wrote."""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
CNITOOL_RESULT_100: dict[str, Any] = {
    "cniVersion": "1.0.0",
    "interfaces": [{"name": "rcbr0", "mac": "c6:60:67:4b:5d:76"},
                   {"name": "veth24e0f2cc", "mac": "62:dc:de:d3:77:14"},
                   {"name": "eth0", "mac": "ca:4d:f4:32:50:b1", "sandbox": "/run/netns/rc-ctr"}],
    "ips": [{"interface": 2, "address": "10.250.77.2/24", "gateway": "10.250.77.1"}],
    "dns": {},
}
"""The final result cnitool printed for bridge + host-local + logger at 1.0.0 (real-clients.md §3)."""
SUPPORTED_VERSIONS = ("0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0")


_LAUNCHER: list[str] = []
PUBLIC_DIRS: list[Path] = []
"""Directories outside pytest's temporary tree made for the plugin (the session removes them at its end)."""


def plugin_executable() -> str:
    """The plugin as a runtime runs it, for the tests that run it as a process (plugin room, protocol, ecs,
    reliability, audit): a launcher written by ``cni-logger launcher`` for the project's virtualenv, or
    for the relocatable bundle with ``--plugin-from=bundle``; CNI_LOGGER_BIN names any other executable.

    The launcher's directory is world-traversable, so the reliability tests can run it as ``nobody``."""
    if os.environ.get("CNI_LOGGER_BIN"):
        return os.environ["CNI_LOGGER_BIN"]
    if not _LAUNCHER:
        _LAUNCHER.append(write_launcher(REPO / ".venv" / "bin" / "cni-logger"))
    return _LAUNCHER[0]


def use_launcher_of(cli: Path) -> None:
    """From now on ``plugin_executable()`` is a launcher written by ``cli`` (e.g. the bundle's)."""
    _LAUNCHER[:] = [write_launcher(cli)]


def use_executable(path: Path) -> None:
    """From now on ``plugin_executable()`` is ``path`` (e.g. thick mode's shim, installed by a watcher)."""
    _LAUNCHER[:] = [str(path)]


def write_launcher(cli: Path) -> str:
    """``cli launcher <new public temporary dir>/logger``; returns the launcher's path."""
    import tempfile

    directory = Path(tempfile.mkdtemp(prefix="cni-logger-test-bin-", dir="/tmp"))
    PUBLIC_DIRS.append(directory)
    directory.chmod(0o755)
    target = directory / "logger"
    subprocess.run([str(cli), "launcher", str(target)], check=True, capture_output=True, timeout=60)
    return str(target)


@dataclass
class Run:
    """One finished plugin process."""

    rc: int
    stdout: bytes
    stderr: bytes
    env: dict[str, str] = field(default_factory=dict)

    @property
    def doc(self) -> Any:
        """stdout parsed as exactly one JSON document (fails the test otherwise)."""
        return parse_single_json(self.stdout)

    @property
    def stderr_events(self) -> list[dict[str, Any]]:
        """Audit events the plugin wrote to stderr (lines with an ``event`` object)."""
        found = []
        for line in self.stderr.decode("utf-8", "replace").split("\n"):  # not splitlines(): U+2028 is data
            try:
                doc = json.loads(line)
            except ValueError:
                continue
            if isinstance(doc, dict) and isinstance(doc.get("event"), dict):
                found.append(doc)
        return found


def parse_single_json(data: bytes) -> Any:
    """Decode ``data`` as one JSON document and nothing else (whitespace aside)."""
    text = data.decode("utf-8")
    decoder = json.JSONDecoder()
    stripped = text.strip()
    doc, end = decoder.raw_decode(stripped)
    assert end == len(stripped), f"more than one JSON document on stdout: {text!r}"
    return doc


def cni_env(command: str, **overrides: str) -> dict[str, str]:
    env = {
        "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
        "CNI_COMMAND": command,
        "CNI_CONTAINERID": "ctr-0123456789abcdef",
        "CNI_NETNS": "/run/netns/test-ns",
        "CNI_IFNAME": "eth0",
        "CNI_PATH": "/opt/cni/bin:/usr/lib/cni",
        "CNI_ARGS": "",
    }
    env.update(overrides)
    return env


def run_plugin(command: str | None, config: Any = None, *, stdin: bytes | None = None,
               env: dict[str, str] | None = None, timeout: float = 30) -> Run:
    """Execute the plugin once: ``config`` is JSON-encoded onto stdin unless raw ``stdin`` is given."""
    if env is None:
        env = cni_env(command) if command is not None else {"PATH": "/usr/bin:/bin"}
    data = stdin if stdin is not None else (b"" if config is None else json.dumps(config).encode())
    proc = subprocess.run([plugin_executable()], input=data, env=env, capture_output=True, timeout=timeout,
                          check=False)
    return Run(proc.returncode, proc.stdout, proc.stderr, env)


def read_events(path: Path, coverage: bool = False) -> list[dict[str, Any]]:
    """Every event line in ``path`` (which must hold only complete JSON lines): the invocation events, unless
    ``coverage`` (``install --watch`` adds coverage events to the same trail: docs/coverage-events.md)."""
    if not path.exists():
        return []
    lines = path.read_bytes().split(b"\n")
    assert lines[-1] == b"", "log file does not end with a newline"
    events = [json.loads(line) for line in lines[:-1]]
    return [e for e in events if coverage or (e.get("event") or {}).get("dataset") != "cni.coverage"]
