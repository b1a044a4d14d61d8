"""Many real plugin processes appending to one rotating file at once: nothing lost, torn or duplicated,
and retention holds (the issue's acceptance test: 200 concurrent ADDs at ``maxSize`` 0.02)."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

from cni_logger import filesink
from tests.harness.plugin import CNITOOL_RESULT_100, plugin_executable


def is_backup(path: Path) -> bool:
    """A rotated backup of ``cni.log`` by the sink's own naming scheme (plain or gzipped)."""
    parsed = filesink.parse_backup_name(str(path))
    return parsed is not None and parsed[0].endswith("/cni.log")


PROCESSES = 200
CNITOOL_PREV_RESULT = copy.deepcopy(CNITOOL_RESULT_100)


def run_concurrent_adds(tmp_path: Path, log_options: dict[str, Any]) -> tuple[Path, list[str]]:
    """Start PROCESSES plugin ADDs at once into one log file; return the log directory and container ids."""
    log_dir = tmp_path / "log"
    work = tmp_path / "work"
    work.mkdir()
    config = {"cniVersion": "1.0.0", "name": "rcnet100", "type": "logger",
              "logFile": str(log_dir / "cni.log"), "logOptions": log_options,
              "prevResult": CNITOOL_PREV_RESULT}
    config_file = work / "config.json"
    config_file.write_text(json.dumps(config))
    ids = [f"ctr-{i:03d}-{os.getpid()}" for i in range(PROCESSES)]
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for container_id in ids:
            env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "CNI_COMMAND": "ADD",
                   "CNI_CONTAINERID": container_id, "CNI_NETNS": f"/run/netns/{container_id}",
                   "CNI_IFNAME": "eth0", "CNI_PATH": "/opt/cni/bin",
                   "CNI_ARGS": f"K8S_POD_NAMESPACE=load;K8S_POD_NAME={container_id}"}
            fds = (os.open(config_file, os.O_RDONLY),
                   os.open(work / f"{container_id}.out", os.O_WRONLY | os.O_CREAT, 0o600),
                   os.open(work / f"{container_id}.err", os.O_WRONLY | os.O_CREAT, 0o600))
            try:
                procs.append(subprocess.Popen([plugin_executable()], stdin=fds[0], stdout=fds[1], stderr=fds[2],
                                              env=env))
            finally:
                for fd in fds:
                    os.close(fd)
        deadline = time.monotonic() + 120
        for proc in procs:
            proc.wait(timeout=max(deadline - time.monotonic(), 1))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    for container_id, proc in zip(ids, procs, strict=True):
        stderr = (work / f"{container_id}.err").read_text(errors="replace")
        assert proc.returncode == 0, (container_id, stderr)
        assert json.loads((work / f"{container_id}.out").read_bytes()) == CNITOOL_PREV_RESULT
        assert "not written" not in stderr and "Traceback" not in stderr, stderr
    return log_dir, ids


def test_200_concurrent_plugin_adds_lose_tear_or_duplicate_nothing(tmp_path: Path) -> None:
    log_dir, ids = run_concurrent_adds(tmp_path, {"maxSize": 0.02, "maxBackups": 0})
    files = sorted(log_dir.iterdir())
    assert all(p.name == "cni.log" or is_backup(p) for p in files), [p.name for p in files]
    assert len(files) >= 3, "the test must make the plugins rotate several times"
    events = []
    for path in files:
        data = path.read_bytes()
        assert data.endswith(b"\n"), f"{path.name}: last line incomplete"
        for raw in data.split(b"\n")[:-1]:
            events.append(json.loads(raw))  # a torn or merged line would not parse
    assert len(events) == PROCESSES
    assert len({e["event"]["id"] for e in events}) == PROCESSES
    assert sorted(e["container"]["id"] for e in events) == sorted(ids)
    assert all(e["event"]["outcome"] == "success" for e in events)
    for path in files:
        if path.name != "cni.log":
            assert path.stat().st_size >= int(0.02 * 1024 * 1024), f"{path.name} rotated below maxSize"


def test_200_concurrent_plugin_adds_keep_at_most_max_backups(tmp_path: Path) -> None:
    log_dir, _ = run_concurrent_adds(tmp_path, {"maxSize": 0.02, "maxBackups": 3})
    names = sorted(p.name for p in log_dir.iterdir())
    assert len(names) <= 4, names
    assert any(is_backup(log_dir / n) for n in names), names
    for name in names:
        data = (log_dir / name).read_bytes()
        assert data.endswith(b"\n")
        for raw in data.split(b"\n")[:-1]:
            assert json.loads(raw)["event"]["action"] == "cni-add"
