"""A trail with known answers, written by the real plugin: rotated, partly gzipped, with damage added.

The story (network ``audit-net`` unless said otherwise), with named moments between the steps:

    t0  ADD   ctr-a eth0 10.1.0.5   shop/web-a
    t1  CHECK ctr-a                          (ctr-a holds 10.1.0.5)
        ADD   ctr-c eth0 10.1.0.7   shop/db-c   never deleted: the leak
        ADD   ctr-m eth0 10.1.0.20  shop/multi, and ADD ctr-m net1 10.2.0.20 on storage-net
        DEL   ctr-a                           (with the cached result)
    t2  ADD   ctr-b eth0 10.1.0.5   shop/web-b  the address reused
    t3  DEL   ctr-orphan            shop/ghost  a DEL without ADD (no cached result)
        ADD   ctr-e eth0 10.1.0.8   job-e (Podman style: K8S_POD_NAME only)
        DEL   ctr-e                 without cached result: closes by container id
    t5  ADD   ctr-f                 fails (unsupported version); DEL ctr-f after it
        ADD   ctr-g eth0 10.1.0.9   batch/job-g;  GC audit-net keeping ctr-c, ctr-b and ctr-m only
        DEL   ctr-m net1 (storage-net), DEL ctr-m eth0
        DEL   ctr-b                          (with the cached result)
    t4  DEL   ctr-b again           a repeated DEL (no cached result)
    t6

Then damage by hand: five bad lines at the end of the live file (not JSON, JSON without ``event``,
a JSON array, a cut-short event glued to a copy of a real one, and a cut-short last line without
newline, plus a blank line that is not counted) and two inside a gzipped backup (an extra gzip
member): ``DAMAGED`` = 7.
"""

from __future__ import annotations

import gzip
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from cni_logger.audit.timeparse import from_datetime
from cni_logger.filesink import parse_backup_name
from tests.harness.plugin import cni_env, run_plugin

DAMAGED = 7
NET = "audit-net"
STORAGE = "storage-net"


def prev_result(address: str, ifname: str = "eth0", sandbox: str = "/run/netns/x") -> dict[str, Any]:
    gateway = address.rsplit(".", 1)[0] + ".1"
    return {"cniVersion": "1.0.0",
            "interfaces": [{"name": "br0", "mac": "c6:60:67:4b:5d:76"},
                           {"name": "veth" + address.replace(".", "")[-6:], "mac": "62:dc:de:d3:77:14"},
                           {"name": ifname, "mac": "ca:4d:f4:32:50:b1", "sandbox": sandbox}],
            "ips": [{"interface": 2, "address": f"{address}/24", "gateway": gateway}], "dns": {}}


@dataclass
class Trail:
    directory: Path
    log: Path
    marks: dict[str, str] = field(default_factory=dict)
    ids: list[str] = field(default_factory=list)
    """event.id of every recorded invocation, in the order they ran."""
    events: list[dict[str, Any]] = field(default_factory=list)

    def args(self) -> list[str]:
        return ["--log-file", str(self.log)]

    def by_container(self, cid: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["cni"]["container_id"] == cid]


class Writer:
    """Runs the plugin with a rotating, compressing file sink and notes each event's id."""

    def __init__(self, trail: Trail) -> None:
        self.trail = trail

    def config(self, network: str = NET, version: str = "1.0.0", **extra: Any) -> dict[str, Any]:
        return {"cniVersion": version, "name": network, "type": "logger", "logFile": str(self.trail.log),
                "logOptions": {"maxSize": 0.004, "maxBackups": 0, "compress": True}, **extra}

    def run(self, command: str, cid: str = "", *, address: str = "", ifname: str = "eth0", network: str = NET,
            pod: str = "", namespace: str = "shop", version: str = "1.0.0",
            extra: dict[str, Any] | None = None) -> dict[str, Any]:
        args = ";".join(f"{k}={v}" for k, v in (("K8S_POD_NAMESPACE", namespace if pod else ""),
                                                ("K8S_POD_NAME", pod)) if v)
        config = self.config(network, version, **(extra or {}))
        if address:
            config["prevResult"] = prev_result(address, ifname, f"/run/netns/{cid}")
        env = cni_env(command, CNI_CONTAINERID=cid, CNI_IFNAME=ifname, CNI_ARGS=args, CNI_NETNS=f"/run/netns/{cid}")
        if not cid:
            for key in ("CNI_CONTAINERID", "CNI_IFNAME", "CNI_NETNS"):
                env.pop(key)
        result = run_plugin(command, config, env=env)
        assert len(result.stderr_events) == 1, (command, cid, result.stderr)  # logToStderr: the same event
        event = result.stderr_events[0]
        self.trail.ids.append(event["event"]["id"])
        self.trail.events.append(event)
        return event

    def mark(self, name: str) -> None:
        time.sleep(0.002)
        self.trail.marks[name] = from_datetime(datetime.now(UTC))
        time.sleep(0.002)


def wait_for_compression(directory: Path, timeout: float = 15.0) -> None:
    """Bounded poll: the plugin gzips every backup but the newest in a detached child (backups told by
    ``filesink``'s own naming; until no compressor's ``.gz.tmp.<pid>`` is left)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        paths = [str(p) for p in directory.iterdir()]
        plain = [p for p in paths if (parsed := parse_backup_name(p)) is not None and not parsed[2]]
        if len(plain) <= 1 and not any(".tmp." in p for p in paths):
            return
        time.sleep(0.05)
    raise AssertionError(f"backups not compressed within {timeout}s: {sorted(directory.iterdir())}")


def build(directory: Path) -> Trail:
    trail = Trail(directory, directory / "cni.log")
    w = Writer(trail)
    w.mark("t0")
    w.run("ADD", "ctr-a", address="10.1.0.5", pod="web-a")
    w.mark("t1")
    w.run("CHECK", "ctr-a", address="10.1.0.5", pod="web-a")
    w.run("ADD", "ctr-c", address="10.1.0.7", pod="db-c")
    w.run("ADD", "ctr-m", address="10.1.0.20", pod="multi")
    w.run("ADD", "ctr-m", address="10.2.0.20", ifname="net1", network=STORAGE, pod="multi")
    w.run("DEL", "ctr-a", address="10.1.0.5", pod="web-a")
    w.mark("t2")
    w.run("ADD", "ctr-b", address="10.1.0.5", pod="web-b")
    w.mark("t3")
    w.run("DEL", "ctr-orphan", pod="ghost")
    w.run("ADD", "ctr-e", address="10.1.0.8", pod="job-e", namespace="")
    w.run("DEL", "ctr-e", pod="job-e", namespace="")
    w.mark("t5")
    failed = w.run("ADD", "ctr-f", address="10.1.0.6", pod="web-f", version="9.9.9")
    assert failed["event"]["outcome"] == "failure"
    w.run("DEL", "ctr-f", pod="web-f")
    w.run("ADD", "ctr-g", address="10.1.0.9", pod="job-g", namespace="batch")
    valid = [{"containerID": cid, "ifname": "eth0"} for cid in ("ctr-c", "ctr-b", "ctr-m")]
    w.run("GC", version="1.1.0", extra={"cni.dev/valid-attachments": valid})
    w.run("DEL", "ctr-m", address="10.2.0.20", ifname="net1", network=STORAGE, pod="multi")
    w.run("DEL", "ctr-m", address="10.1.0.20", pod="multi")
    w.run("DEL", "ctr-b", address="10.1.0.5", pod="web-b")
    w.mark("t4")
    w.run("DEL", "ctr-b", pod="web-b")
    w.mark("t6")
    wait_for_compression(directory)
    damage(trail)
    return trail


def damage(trail: Trail) -> None:
    gzipped = sorted(trail.directory.glob("cni.log.*.gz"))
    assert len(gzipped) >= 2, sorted(trail.directory.iterdir())
    with open(gzipped[1], "ab") as out:  # a second gzip member: still valid gzip, two bad lines in it
        out.write(gzip.compress(b'garbage in a backup\n{"event": "not an object"}\n'))
    real = json.dumps(trail.events[3], separators=(",", ":")).encode()
    with open(trail.log, "ab") as out:
        out.write(b"this is not json\n")
        out.write(b'{"foo": 1}\n')
        out.write(b"[1, 2, 3]\n")
        out.write(b"\n")
        out.write(real[:300] + real + b"\n")  # a cut-short write with the next event glued on
        out.write(real[:500])  # cut short at the very end: no newline


@pytest.fixture(scope="session")
def trail(tmp_path_factory: pytest.TempPathFactory) -> Trail:
    return build(tmp_path_factory.mktemp("audit-trail"))


@pytest.fixture
def copy_of_trail(trail: Trail, tmp_path: Path) -> Iterator[Trail]:
    """A private copy, for tests that change the files."""
    import shutil

    target = tmp_path / "trail"
    shutil.copytree(trail.directory, target)
    yield Trail(target, target / "cni.log", dict(trail.marks), list(trail.ids), list(trail.events))
