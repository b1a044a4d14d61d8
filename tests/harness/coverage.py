"""Coverage events (docs/coverage-events.md) for the tests: written by a separate process, through the real
sink, and read back; plus a libcni result cache record shaped as libcni writes it."""

from __future__ import annotations

import base64
import json
import subprocess
from pathlib import Path
from typing import Any

from tests.harness.plugin import REPO

PYTHON = str(REPO / ".venv" / "bin" / "python")


def cache_record(network: str, container_id: str, ifname: str, result: dict[str, Any],
                 args: list[list[str]] | None = None) -> dict[str, Any]:
    """One ``cniCacheV1`` file's content, as libcni (cnitool 1.1.2, containerd, CRI-O) writes it."""
    config = {"cniVersion": result.get("cniVersion", "1.0.0"), "name": network, "plugins": [{"type": "bridge"}]}
    return {"kind": "cniCacheV1", "containerId": container_id,
            "config": base64.b64encode(json.dumps(config).encode()).decode(), "ifName": ifname,
            "networkName": network, "cniArgs": args or [], "result": result}


def run_python(code: str, timeout: float = 60) -> str:
    """``code`` in a fresh interpreter of the project's virtualenv (cwd: the repository); its stdout."""
    proc = subprocess.run([PYTHON, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=timeout,
                          check=False)
    assert proc.returncode == 0, f"{proc.stdout}\n{proc.stderr}"
    return proc.stdout


SCENARIOS = """
import json
from cni_logger import dropped
from cni_logger.install import coverage
from cni_logger.plugin import file_sink
log, cache, drops = {log!r}, {cache!r}, {drops!r}
without = json.dumps({{"cniVersion": "1.0.0", "name": "k8s-pod-network", "plugins": [{{"type": "bridge"}}]}}).encode()
entry = {{"type": "logger", "logFile": log, "redactKeys": ["tenantPin"]}}
single = json.dumps({{"cniVersion": "1.0.0", "name": "k8s-pod-network",
                     "plugins": [{{"type": "bridge"}}, entry]}}).encode()
bracket = json.dumps({{"cniVersion": "1.0.0", "name": "k8s-pod-network",
                      "plugins": [dict(entry, role="attempt"), {{"type": "bridge"}},
                                  dict(entry, role="outcome")]}}).encode()
path = "/etc/cni/net.d/10-calico.conflist"
problems = coverage.record_change(path, without, single, "install")
problems += coverage.record_change(path, single, without, "failsafe", detail="ADD exited 1: boom")
problems += coverage.record_change(path, without, bracket, "agent-rewrite", since=1764989100.25)
problems += coverage.record_change(path, bracket, None, "uninstall")
conf = coverage.trail_settings(entry)
problems += coverage.write_heartbeat(conf, ["k8s-pod-network"], 300.0)
problems += coverage.write_inventory(conf, ["k8s-pod-network"], cache, "start")
for n, command in enumerate(("ADD", "ADD", "DEL")):
    assert dropped.record(log, command, f"ctr-{{n}}", directory=drops) == ""
problems += dropped.flush(file_sink(conf), conf.extra_redact_keys, drops)
print(json.dumps(problems))
"""


def write_scenarios(log: Path, cache: Path, drops: Path) -> list[str]:
    """Every kind of coverage event, written into ``log`` by another process: entered and left (install,
    failsafe with a detail, an agent's rewrite with its time, uninstall; single and bracket entries), a
    heartbeat, an inventory of ``cache`` and a dropped-events flush. Returns the problems reported."""
    out = run_python(SCENARIOS.format(log=str(log), cache=str(cache), drops=str(drops)))
    problems: list[str] = json.loads(out.strip().splitlines()[-1])
    return problems


def events_of(path: Path, dataset: str | None = "cni.coverage") -> list[dict[str, Any]]:
    """The events in one file of a trail (all, or those of ``dataset``)."""
    if not path.exists():
        return []
    found = [json.loads(line) for line in path.read_bytes().splitlines() if line.strip()]
    return [e for e in found if dataset is None or e["event"]["dataset"] == dataset]
