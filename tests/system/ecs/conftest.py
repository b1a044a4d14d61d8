"""Real events for the ECS tests: the installed plugin run as a process for every command and outcome."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.harness.coverage import cache_record, write_scenarios
from tests.harness.plugin import Run, cni_env, run_plugin

K8S_ARGS = ("IgnoreUnknown=1;K8S_POD_NAMESPACE=shop;K8S_POD_NAME=web-7d4b9c-x2kq;"
            "K8S_POD_INFRA_CONTAINER_ID=5f1a8c0d2b7e;K8S_POD_UID=0d9a2c1e-7b5f-4e3a-9c8d-1f2e3a4b5c6d")
TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def prev_result(version: str = "1.0.0") -> dict[str, Any]:
    """A bridge + host-local result with an IPv4 and an IPv6 address (1.x / 0.4.0 shape)."""
    ips: list[dict[str, Any]] = [{"interface": 2, "address": "10.244.1.17/24", "gateway": "10.244.1.1"},
                                 {"interface": 2, "address": "fd00:10:244:1::11/64", "gateway": "fd00:10:244:1::1"}]
    if version < "1.0.0":
        ips[0]["version"], ips[1]["version"] = "4", "6"
    return {"cniVersion": version,
            "interfaces": [{"name": "cni0", "mac": "c6:60:67:4b:5d:76"},
                           {"name": "veth24e0f2cc", "mac": "62:dc:de:d3:77:14"},
                           {"name": "eth0", "mac": "ca:4d:f4:32:50:b1", "sandbox": "/var/run/netns/cni-1c4b"}],
            "ips": ips,
            "routes": [{"dst": "0.0.0.0/0", "gw": "10.244.1.1"}],
            "dns": {"nameservers": ["10.96.0.10"], "search": ["shop.svc.cluster.local"]}}


@dataclass
class Recorded:
    """One audit event as the plugin wrote it."""

    scenario: str
    line: bytes
    event: dict[str, Any]


@dataclass
class Scenario:
    name: str
    command: str
    config: dict[str, Any] | None
    env: dict[str, str]
    stdin: bytes | None = None
    expect_rc: int = 0


def _config(log: Path, version: str = "1.0.0", **extra: Any) -> dict[str, Any]:
    return {"cniVersion": version, "name": "k8s-pod-network", "type": "logger", "logFile": str(log), **extra}


def scenarios(log: Path) -> list[Scenario]:
    """Every command, both outcomes, and the optional parts of the schema (trace, truncation, warnings)."""
    nested: dict[str, Any] = {"leaf": "x"}
    for level in range(40):
        nested = {f"level{level}": nested}
    big = {f"annotation{i}": "v" * 1500 for i in range(20)}
    return [
        Scenario("add-k8s", "ADD",
                 _config(log, capabilities={"portMappings": True},
                         runtimeConfig={"portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}]},
                         prevResult=prev_result()),
                 cni_env("ADD", CNI_ARGS=K8S_ARGS, TRACEPARENT=TRACEPARENT)),
        Scenario("add-0.4.0-with-invalid-setting", "ADD",
                 _config(log, "0.4.0", recordStatus="sometimes", prevResult=prev_result("0.4.0")),
                 cni_env("ADD", CNI_ARGS=K8S_ARGS)),
        Scenario("add-bracket-attempt", "ADD", _config(log, role="attempt"), cni_env("ADD", CNI_ARGS=K8S_ARGS)),
        Scenario("add-podman-name-only", "ADD", _config(log, prevResult=prev_result()),
                 cni_env("ADD", CNI_ARGS="IgnoreUnknown=1;K8S_POD_NAME=nginx")),
        Scenario("add-truncated", "ADD", _config(log, bulk=big, prevResult=prev_result()), cni_env("ADD")),
        Scenario("add-deeply-nested", "ADD", _config(log, deep=nested), cni_env("ADD")),
        Scenario("add-missing-variables", "ADD", _config(log), {"CNI_COMMAND": "ADD", "PATH": "/usr/bin:/bin"},
                 expect_rc=1),
        Scenario("del", "DEL", _config(log, prevResult=prev_result()), cni_env("DEL", CNI_ARGS=K8S_ARGS)),
        Scenario("del-bad-input", "DEL", None, cni_env("DEL"), stdin=b"{not json"),
        Scenario("check", "CHECK", _config(log, prevResult=prev_result()), cni_env("CHECK", CNI_ARGS=K8S_ARGS)),
        Scenario("check-at-0.3.1-refused", "CHECK", _config(log, "0.3.1"), cni_env("CHECK"), expect_rc=1),
        Scenario("gc", "GC",
                 _config(log, "1.1.0",
                         **{"cni.dev/valid-attachments": [{"containerID": "5f1a8c0d", "ifname": "eth0"}]}),
                 cni_env("GC", CNI_CONTAINERID="", CNI_NETNS="", CNI_IFNAME="")),
        Scenario("status", "STATUS", _config(log, "1.1.0", recordStatus=True),
                 cni_env("STATUS", CNI_CONTAINERID="", CNI_NETNS="", CNI_IFNAME="")),
        Scenario("version", "VERSION", None, {**cni_env("VERSION"), "CNI_LOGGER_RECORD_VERSION": "1"},
                 stdin=b'{"cniVersion":"1.0.0"}'),
    ]


def collect(name: str, run: Run, log: Path, seen: set[str]) -> list[Recorded]:
    """Events of one run: new lines of the log file, and event lines on stderr (VERSION, bad input)."""
    found: list[Recorded] = []
    lines = log.read_bytes().splitlines() if log.exists() else []
    lines += [line for line in run.stderr.splitlines() if line.startswith(b"{")]
    for line in lines:
        doc = json.loads(line)
        if not isinstance(doc.get("event"), dict) or doc["event"]["id"] in seen:
            continue
        seen.add(doc["event"]["id"])
        found.append(Recorded(name, line, doc))
    return found


@pytest.fixture(scope="session")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> list[Recorded]:
    """One or more events per scenario, in order; fails if a scenario left none."""
    log = tmp_path_factory.mktemp("ecs-events") / "cni-logger.log"
    seen: set[str] = set()
    out: list[Recorded] = []
    for scenario in scenarios(log):
        run = run_plugin(scenario.command, scenario.config, stdin=scenario.stdin, env=scenario.env)
        assert run.rc == scenario.expect_rc, (scenario.name, run.stdout, run.stderr)
        events = collect(scenario.name, run, log, seen)
        assert events, f"scenario {scenario.name} recorded no event: {run.stderr!r}"
        out.extend(events)
    out.extend(coverage_events(log, tmp_path_factory.mktemp("ecs-coverage")))
    return out


def coverage_events(log: Path, work: Path) -> list[Recorded]:
    """The coverage events (docs/coverage-events.md) as install and --watch write them into the same trail:
    every action, an inventory of a libcni cache with a Kubernetes attachment (and a file being written,
    so the inventory is incomplete), dropped events."""
    cache, drops = work / "results", work / "dropped"
    cache.mkdir()
    drops.mkdir(mode=0o700)
    record = cache_record("k8s-pod-network", "5f1a8c0d2b7e", "eth0", prev_result(),
                          [["K8S_POD_NAMESPACE", "shop"], ["K8S_POD_NAME", "web-7d4b9c-x2kq"],
                           ["K8S_POD_UID", "0d9a2c1e-7b5f-4e3a-9c8d-1f2e3a4b5c6d"]])
    (cache / "k8s-pod-network-5f1a8c0d2b7e-eth0").write_text(json.dumps(record))
    (cache / "k8s-pod-network-0b9d-eth0").write_text(json.dumps(record)[:100])
    before = {json.loads(line)["event"]["id"] for line in log.read_bytes().splitlines()}
    assert write_scenarios(log, cache, drops) == []
    found = []
    for line in log.read_bytes().splitlines():
        doc = json.loads(line)
        if doc["event"]["id"] not in before:
            assert doc["event"]["dataset"] == "cni.coverage", doc
            found.append(Recorded(f"coverage-{doc['event']['action']}", line, doc))
    assert {r.scenario for r in found} == {f"coverage-{a}" for a in (
        "logger-entered", "logger-left", "logger-heartbeat", "cni-attachment", "logger-inventory", "logger-dropped")}
    return found


@pytest.fixture(scope="session")
def events(recorded: list[Recorded]) -> list[dict[str, Any]]:
    return [r.event for r in recorded]


@pytest.fixture(scope="session")
def by_scenario(recorded: list[Recorded]) -> Callable[[str], dict[str, Any]]:
    def lookup(name: str) -> dict[str, Any]:
        [event] = [r.event for r in recorded if r.scenario == name]
        return event

    return lookup
