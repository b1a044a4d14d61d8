"""Many nodes: trails of several nodes merged, each answer naming its host.

Two nodes run the same network (``pod-net``) with the same host-local range, as every node of a cluster
does: the same address is held on both at once, and a CNI GC on one node says nothing about the other's
attachments. Their trails are real files given together (``--log-file`` twice), read by the real CLI.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cni_logger.audit.timeparse import from_epoch, to_epoch
from tests.harness.audit import Result, cli
from tests.harness.node_lines import invocation, line
from tests.harness.plugin import cni_env, run_plugin

NET = "pod-net"
T0 = "2026-01-02T10:00:00.000000Z"


def at(seconds: float) -> str:
    return from_epoch(to_epoch(T0) + seconds)


def write(path: Path, docs: list[dict[str, object]]) -> Path:
    path.write_bytes(b"".join(line(d) + b"\n" for d in docs))
    return path


@pytest.fixture
def nodes(tmp_path: Path) -> list[str]:
    """Node A holds 10.88.0.5 (a1) then is garbage-collected down to nothing; node B holds 10.88.0.5 (b1) and
    10.88.0.9 (b2) throughout. The GC on A comes while B's attachments are open."""
    a = write(tmp_path / "node-a.log", [
        invocation("ADD", at(0), "node-a", network=NET, cid="ctr-a1", address="10.88.0.5", pod="a1", namespace="shop"),
        invocation("GC", at(30), "node-a", network=NET, valid=[]),
        invocation("ADD", at(40), "node-a", network=NET, cid="ctr-a2", address="10.88.0.6", pod="a2",
                   namespace="shop"),
        invocation("DEL", at(50), "node-a", network=NET, cid="ctr-a2", address="10.88.0.6", pod="a2",
                   namespace="shop"),
    ])
    b = write(tmp_path / "node-b.log", [
        invocation("ADD", at(10), "node-b", network=NET, cid="ctr-b1", address="10.88.0.5", pod="b1", namespace="shop"),
        invocation("ADD", at(20), "node-b", network=NET, cid="ctr-b2", address="10.88.0.9", pod="b2", namespace="web"),
        invocation("CHECK", at(60), "node-b", network=NET, cid="ctr-b2", address="10.88.0.9", pod="b2",
                   namespace="web"),
    ])
    return ["--log-file", str(a), "--log-file", str(b)]


def test_node_lines_are_laid_out_as_the_plugin_lays_them_out(tmp_path: Path) -> None:
    """The harness's lines have the real plugin's keys, in its order (the audit's fast paths rely on it)."""
    config = {"cniVersion": "1.0.0", "name": NET, "type": "logger", "logFile": str(tmp_path / "x.log"),
              "prevResult": {"cniVersion": "1.0.0", "ips": [{"address": "10.88.0.5/24"}]}}
    env = cni_env("ADD", CNI_CONTAINERID="ctr-x", CNI_ARGS="K8S_POD_NAMESPACE=shop;K8S_POD_NAME=x")
    assert run_plugin("ADD", config, env=env).rc == 0
    real = json.loads((tmp_path / "x.log").read_bytes().splitlines()[0])
    ours = invocation("ADD", T0, "node-a", network=NET, cid="ctr-x", address="10.88.0.5", pod="x", namespace="shop")

    def shape(doc: object) -> object:
        if isinstance(doc, dict):
            return [(k, shape(v)) for k, v in doc.items() if k not in ("config", "prev_result", "error")]
        return None

    assert shape(ours) == shape(real)


def test_a_gc_on_one_node_leaves_the_other_nodes_attachments_open(nodes: list[str]) -> None:
    answer = cli("who-had", "10.88.0.5", "--at", at(45), "--json", *nodes)
    assert answer.rc == 0, answer
    assert [(r["container_id"], r["pod"]) for r in answer.json] == [("ctr-b1", "b1")]
    answer = cli("who-had", "10.88.0.5", "--json", *nodes)
    rows = {r["container_id"]: r for r in answer.json}
    assert rows["ctr-a1"]["ended_by"] == "GC" and rows["ctr-b1"]["until"] is None, answer
    leaks = cli("leaks", "--json", *nodes)
    assert leaks.rc == 0, leaks
    assert sorted(r["container_id"] for r in leaks.json if r["kind"] == "never-deleted") == ["ctr-b1", "ctr-b2"]


def test_a_gc_on_one_node_leaves_the_other_nodes_holdings_in_the_subnet_form(nodes: list[str]) -> None:
    answer = cli("who-had", "10.88.0.0/24", "--at", at(45), "--json", *nodes)
    assert answer.rc == 0, answer
    assert sorted(r["container_id"] for r in answer.json) == ["ctr-a2", "ctr-b1", "ctr-b2"]


def _status(result: Result) -> str:
    return f"rc={result.rc}\n{result.stdout}\n{result.stderr}"


def test_every_answer_names_its_host(nodes: list[str]) -> None:
    """JSON and CSV rows carry ``host``; the tables a HOST column, whatever the number of hosts."""
    who = cli("who-had", "10.88.0.5", "--json", *nodes)
    assert [(r["host"], r["container_id"]) for r in who.json] == [("node-a", "ctr-a1"), ("node-b", "ctr-b1")]
    table = cli("who-had", "10.88.0.5", *nodes)
    assert table.stdout.splitlines()[0].split()[:4] == ["FROM", "UNTIL", "HOST", "NETWORK"]
    assert [r[2] for r in table.rows] == ["node-a", "node-b"]
    subnet = cli("who-had", "10.88.0.0/24", "--format", "csv", *nodes)
    header, *rows = subnet.stdout.splitlines()
    assert header.split(",")[:3] == ["address", "host", "network"]
    assert {row.split(",")[1] for row in rows} == {"node-a", "node-b"}
    leaks = cli("leaks", "--json", *nodes)
    assert {(r["host"], r["container_id"]) for r in leaks.json} == {("node-b", "ctr-b1"), ("node-b", "ctr-b2")}
    assert [r[3] for r in cli("leaks", *nodes).rows] == ["node-b", "node-b"]
    events = cli("events", "--format", "csv", "--container", "ctr-a1", *nodes)
    assert [dict(zip(events.stdout.splitlines()[0].split(","), row.split(",")))["host"]
            for row in events.stdout.splitlines()[1:]] == ["node-a"]
    assert cli("events", "--container", "ctr-b2", *nodes).rows[0][4] == "node-b"
    timeline = cli("timeline", "ctr-b1", "--json", *nodes)
    assert [a["host"] for a in timeline.json] == ["node-b"]
    assert "host node-b" in cli("timeline", "ctr-b1", *nodes).stdout
    report = json.loads(cli("report", "--json", *nodes).stdout)
    assert {(h["host"], h["container_id"]) for h in report["leaks"]["never_deleted"]["listed"]} == {
        ("node-b", "ctr-b1"), ("node-b", "ctr-b2")}
    text = cli("report", *nodes).stdout
    assert any(line.split()[2:4] == ["node-b", NET] for line in text.splitlines() if "ctr-b2" in line), text


@pytest.mark.parametrize("host, expected", [("node-b", ["ctr-b1"]), ("node-?", ["ctr-a1", "ctr-b1"]),
                                            ("node-a", ["ctr-a1"]), ("other", [])])
def test_host_filters_who_had(nodes: list[str], host: str, expected: list[str]) -> None:
    answer = cli("who-had", "10.88.0.5", "--host", host, "--json", *nodes)
    assert [r["container_id"] for r in answer.json] == expected
    assert answer.rc == (0 if expected else 1), answer


def test_host_filters_every_command(nodes: list[str]) -> None:
    events = cli("events", "--host", "node-a", "--json", *nodes)
    assert {r["host"]["name"] for r in events.json} == {"node-a"} and len(events.json) == 4
    assert cli("events", "--host", "node-b", "--command", "ADD", "--json", *nodes).rc == 0
    stats = json.loads(cli("stats", "--host", "node-b", "--json", *nodes).stdout)
    assert stats["events"] == 3
    leaks = cli("leaks", "--host", "node-b", "--json", *nodes)
    assert sorted(r["container_id"] for r in leaks.json) == ["ctr-b1", "ctr-b2"]
    assert cli("leaks", "--host", "node-a", *nodes).rc == 1
    at45 = cli("who-had", "10.88.0.0/24", "--at", at(45), "--host", "node-a", "--json", *nodes)
    assert [r["container_id"] for r in at45.json] == ["ctr-a2"] and at45.rc == 0, at45
    timeline = cli("timeline", "--pod", "shop/b1", "--host", "node-a", *nodes)
    assert timeline.rc == 1
    report = json.loads(cli("report", "--json", "--host", "node-a", *nodes).stdout)
    assert report["leaks"]["never_deleted"]["count"] == 0 and report["stats"]["events"] == 4
