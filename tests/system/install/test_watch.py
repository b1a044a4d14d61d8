"""``cni-logger install --watch``: the DaemonSet's main process, run as a real process and signalled."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.harness.nodes import shape
from tests.harness.plugin import REPO
from tests.harness.waiting import wait_for

CNI_LOGGER = REPO / ".venv" / "bin" / "cni-logger"


def has_logger(path: Path) -> bool:
    try:
        return json.loads(path.read_text())["plugins"][-1]["type"] == "logger"
    except (ValueError, KeyError, IndexError, FileNotFoundError):
        return False


@pytest.fixture
def watcher(tmp_path: Path) -> Callable[..., subprocess.Popen[str]]:
    if not CNI_LOGGER.exists():
        pytest.skip(f"{CNI_LOGGER} is not installed (scripts/setup-system.sh)")
    procs: list[subprocess.Popen[str]] = []

    def start(*args: str) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            [str(CNI_LOGGER), "install", "--watch", "--interval", "0.2", "--conf-dir", str(tmp_path / "net.d"),
             "--bin-dir", str(tmp_path / "bin"), "--state-dir", str(tmp_path / "state"),
             "--ready-file", str(tmp_path / "ready"), *args],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=10)


def test_watch_reinserts_after_a_torn_rewrite_and_uninstalls_on_sigterm(
        tmp_path: Path, watcher: Callable[..., subprocess.Popen[str]]) -> None:
    net_d, bin_dir = tmp_path / "net.d", tmp_path / "bin"
    net_d.mkdir()
    bin_dir.mkdir()
    calico = net_d / "10-calico.conflist"
    calico.write_bytes(shape("10-calico.conflist"))
    calico.chmod(0o600)
    other = net_d / "20-other.conflist"
    other.write_bytes(shape("10-flannel.conflist"))
    ready = tmp_path / "ready"

    proc = watcher()
    assert wait_for(ready.exists), proc.stderr.read() if proc.poll() is not None else "not ready"
    assert has_logger(calico)

    # calico-node restarts and rewrites its file in place (truncate, then write), without our entry.
    agent_version = shape("10-calico.conflist").replace(b'"mtu": 0', b'"mtu": 1440')
    with open(calico, "r+b") as f:
        f.truncate(0)
        f.write(agent_version[:50])
        f.flush()
        time.sleep(0.4)                         # a watcher pass sees the torn file meanwhile
        f.seek(0)
        f.write(agent_version)
    assert wait_for(lambda: has_logger(calico) and b"1440" in calico.read_bytes())
    assert b"logger" not in other.read_bytes(), "the torn primary was never skipped in favour of the next file"
    assert calico.stat().st_mode & 0o777 == 0o600

    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert calico.read_bytes() == agent_version, "the agent's own version is back, byte for byte"
    assert not ready.exists()
    assert (bin_dir / "logger").exists(), "kept: CRI-O runs DEL from the cached config, which still names it"
    assert err.count("wrote " + str(calico)) == 3, err   # install, re-insert, restore
    assert "keeps removing it" not in err, "one rewrite by the agent is not a fight"
    assert out == ""


def test_watch_waits_for_the_network_provider(tmp_path: Path, watcher: Callable[..., subprocess.Popen[str]]) -> None:
    """Cilium writes its config only once the agent is ready: until then the watcher waits, not ready."""
    (tmp_path / "net.d").mkdir()
    (tmp_path / "bin").mkdir()
    proc = watcher()
    time.sleep(1.0)
    assert proc.poll() is None and not (tmp_path / "ready").exists()
    cilium = tmp_path / "net.d" / "05-cilium.conflist"
    tmp = tmp_path / "net.d" / ".05-cilium.conflist.tmp"
    tmp.write_bytes(shape("05-cilium.conflist"))
    os.replace(tmp, cilium)
    assert wait_for((tmp_path / "ready").exists)
    assert has_logger(cilium)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert err.count("no valid network config") == 1, "a repeated report is printed once"
    assert "cni.exclusive=false" in err
    assert cilium.read_bytes() == shape("05-cilium.conflist")


def test_watch_backs_off_when_another_agent_keeps_reverting(tmp_path: Path,
                                                            watcher: Callable[..., subprocess.Popen[str]]) -> None:
    """Cilium with cni.exclusive=true re-renders its file on every change: no endless rewrite loop."""
    (tmp_path / "net.d").mkdir()
    (tmp_path / "bin").mkdir()
    cilium = tmp_path / "net.d" / "05-cilium.conflist"
    cilium.write_bytes(shape("05-cilium.conflist"))
    proc = watcher()
    assert wait_for((tmp_path / "ready").exists)
    deadline = time.monotonic() + 4
    while time.monotonic() < deadline:
        if has_logger(cilium):
            tmp = cilium.with_name(".revert")
            tmp.write_bytes(shape("05-cilium.conflist"))
            os.replace(tmp, cilium)
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=20)
    assert "keeps removing it" in err
    assert err.count("wrote " + str(cilium)) <= 8, err      # 0.2 s checks would have made ~20


def test_watch_survives_a_ready_file_it_cannot_write(tmp_path: Path,
                                                     watcher: Callable[..., subprocess.Popen[str]]) -> None:
    """The watcher is the DaemonSet's PID 1: a failing step is reported, never the end of it."""
    (tmp_path / "net.d").mkdir()
    (tmp_path / "bin").mkdir()
    flannel = tmp_path / "net.d" / "10-flannel.conflist"
    flannel.write_bytes(shape("10-flannel.conflist"))
    proc = watcher("--ready-file", str(tmp_path / "no-such-dir" / "ready"))
    assert wait_for(lambda: has_logger(flannel))
    time.sleep(1.0)                              # several more passes
    assert proc.poll() is None
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert err.count("cannot create the ready file") == 1, err
    assert flannel.read_bytes() == shape("10-flannel.conflist")
