"""Thick mode on a test node: a real ``cni-logger install --watch --agent`` process in directories of its own,
the shim it installed, and a plain launcher of the same installation to compare answers with."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path
from typing import Any

from tests.harness.plugin import REPO, Run, cni_env
from tests.harness.waiting import wait_for

CNI_LOGGER = REPO / ".venv" / "bin" / "cni-logger"
NETWORK = "thicknet"
PRIMARY = {"cniVersion": "1.0.0", "name": NETWORK,
           "plugins": [{"type": "bridge", "bridge": "thk0", "ipam": {"type": "host-local", "subnet": "10.251.0.0/24"}}]}


class ThickNode:
    """One node's thick mode under ``root``: ``start`` the watcher (with the agent), run the installed shim."""

    def __init__(self, root: Path, shim: Path, *, interval: float = 0.3, agent_timeout: float | None = None,
                 cli: Path = CNI_LOGGER) -> None:
        """``cli``: the installation's ``cni-logger`` (the venv's, or an unpacked bundle's)."""
        self.root, self.shim, self.interval, self.agent_timeout = root, shim, interval, agent_timeout
        self.cli = cli
        self.net_d, self.bin_dir, self.state = root / "net.d", root / "bin", root / "state"
        self.socket = root / "run" / "agent" / "agent.sock"
        self.log = root / "log" / "cni.log"
        self.ready = root / "ready"
        self.output = root / "watch.log"
        self.proc: subprocess.Popen[bytes] | None = None
        for directory in (self.net_d, self.bin_dir, self.log.parent):
            directory.mkdir(parents=True, exist_ok=True)
        (self.net_d / "10-thick.conflist").write_text(json.dumps(PRIMARY))
        self.plain = root / "plain" / "logger"
        subprocess.run([str(cli), "launcher", str(self.plain)], check=True, capture_output=True, timeout=60)

    @property
    def plugin(self) -> Path:
        return self.bin_dir / "logger"

    def start(self, *extra: str) -> subprocess.Popen[bytes]:
        """Start the watcher and wait until it is ready and its agent listens."""
        args = [str(self.cli), "install", "--watch", "--agent", "--agent-socket", str(self.socket),
                "--shim", str(self.shim), "--interval", str(self.interval), "--heartbeat", "0",
                "--conf-dir", str(self.net_d), "--bin-dir", str(self.bin_dir), "--state-dir", str(self.state),
                "--results-cache", str(self.root / "results"), "--ready-file", str(self.ready),
                "--log-file", str(self.log), *extra]
        if self.agent_timeout is not None:
            args += ["--agent-timeout", str(self.agent_timeout)]
        self.ready.unlink(missing_ok=True)  # a killed watcher's: this one makes its own
        before = self._socket_inode()
        with open(self.output, "ab") as out:
            self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
        if not wait_for(lambda: self.ready.exists() and self._socket_inode() not in (None, before), 60):
            self.proc.kill()
            self.proc.wait(timeout=10)
            raise AssertionError(f"the watcher did not get ready with its agent:\n{self.said()[-3000:]}")
        return self.proc

    def said(self) -> str:
        """Everything the watchers started here printed (JSON lines), in order."""
        return self.output.read_text(errors="replace") if self.output.exists() else ""

    def _socket_inode(self) -> int | None:
        try:
            return self.socket.lstat().st_ino
        except FileNotFoundError:
            return None

    def signal(self, signum: int) -> None:
        assert self.proc is not None
        pid = self.proc.pid
        os.kill(pid, signum)
        if signum == signal.SIGSTOP:  # delivered asynchronously: wait until every thread is stopped
            tasks = Path(f"/proc/{pid}/task")
            assert wait_for(lambda: all(self._state(task) == "T" for task in tasks.iterdir()), 30)

    @staticmethod
    def _state(task: Path) -> str:
        try:
            return (task / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            return "T"  # gone

    def kill(self) -> None:
        """SIGKILL, as an OOM kill or a node's crash would: nothing cleaned up (the socket file stays)."""
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(timeout=10)
        self.proc = None

    def stop(self) -> str:
        """SIGCONT (in case it was stopped) then SIGTERM; what the watchers printed."""
        if self.proc is not None:
            if self.proc.poll() is None:
                os.kill(self.proc.pid, signal.SIGCONT)
                self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
            self.proc = None
        return self.said()

    def cpu_ticks(self) -> int:
        """The watcher's own CPU time (user + system, clock ticks): grows while the agent serves a request."""
        assert self.proc is not None
        fields = (Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1]).split()
        return int(fields[11]) + int(fields[12])

    def config(self, version: str = "1.0.0", **extra: Any) -> dict[str, Any]:
        return {"cniVersion": version, "name": NETWORK, "type": "logger", "logFile": str(self.log), **extra}

    def run(self, command: str, config: Any = None, *, stdin: bytes | None = None, env: dict[str, str] | None = None,
            executable: Path | None = None, timeout: float = 60, wrapper: list[str] | None = None) -> Run:
        """Execute the shim (or ``executable``) once, as a runtime does."""
        env = env if env is not None else cni_env(command)
        data = stdin if stdin is not None else (b"" if config is None else json.dumps(config).encode())
        proc = subprocess.run([*(wrapper or []), str(executable or self.plugin)], input=data, env=env,
                              capture_output=True, timeout=timeout, check=False)
        return Run(proc.returncode, proc.stdout, proc.stderr, env)

    def events(self) -> list[dict[str, Any]]:
        """The invocation events in the trail (coverage events left out)."""
        if not self.log.exists():
            return []
        found = []
        for line in self.log.read_bytes().splitlines():
            doc = json.loads(line)
            if doc.get("event", {}).get("dataset") == "cni.audit":
                found.append(doc)
        return found


def served(run: Run) -> tuple[str, str]:
    """(served_by, fallback_reason) of the one event a run wrote on stderr."""
    events = run.stderr_events
    assert len(events) == 1, run
    cni = events[0]["cni"]
    return cni.get("served_by", ""), cni.get("fallback_reason", "")
